// mp::Listener, mp::Client and the authentication handshake: the Listener/Client half of
// Python's multiprocessing/connection.py, on the same wire (Python's frames and HMAC
// challenge). HMACs come from OpenSSL's libcrypto, which is why this file is a library
// of its own (mp::listener).
#include <mp/listener.hpp>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <stdexcept>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

#include "posix/address.hpp"
#include "posix/fd.hpp"
#include "posix/shm.hpp"  // random_bytes (getrandom)

namespace mp {
namespace {

// CPython 3.12's constants (multiprocessing/connection.py).
constexpr std::string_view kChallenge = "#CHALLENGE#";
constexpr std::string_view kWelcome = "#WELCOME#";
constexpr std::string_view kFailure = "#FAILURE#";
constexpr std::size_t kMessageLength = 40;         // random bytes in a modern challenge
constexpr std::size_t kMd5OnlyMessageLength = 20;  // Python <= 3.11's challenge
constexpr std::size_t kMd5DigestLength = 16;       // Python <= 3.11's answer
constexpr std::size_t kMaxHandshakeMessage = 256;  // Python: recv_bytes(256)
constexpr std::size_t kMaxDigestNameLength = 8;    // "sha3_256"

void check_authkey(std::string_view authkey, const char* who) {
  if (authkey.empty())
    throw std::invalid_argument(std::string(who) +
                                ": an empty authkey authenticates nothing; pass std::nullopt "
                                "for no authentication");
  if (authkey.size() > INT_MAX)
    throw std::invalid_argument(std::string(who) + ": authkey too long");
}

// The digests Python's _ALLOWED_DIGESTS names; nullptr for any other.
const EVP_MD* digest_named(std::string_view name) {
  if (name == "md5") return EVP_md5();
  if (name == "sha256") return EVP_sha256();
  if (name == "sha384") return EVP_sha384();
  if (name == "sha3_256") return EVP_sha3_256();
  if (name == "sha3_384") return EVP_sha3_384();
  return nullptr;
}

std::string hmac(const EVP_MD* digest, std::string_view key, std::string_view message) {
  unsigned char out[EVP_MAX_MD_SIZE];
  unsigned int size = 0;
  if (::HMAC(digest, key.data(), static_cast<int>(key.size()),
             reinterpret_cast<const unsigned char*>(message.data()), message.size(), out,
             &size) == nullptr)
    throw AuthenticationError("mp: HMAC-" + std::string(::EVP_MD_get0_name(digest)) +
                              " is not available (OpenSSL refused it)");
  return std::string(reinterpret_cast<const char*>(out), size);
}

// Python's _get_digest_name_and_payload: "" and the message for the legacy forms (16 or
// 20 bytes), else the "{name}" prefix (an allowed digest) and what follows it.
std::pair<std::string_view, std::string_view> digest_name_and_payload(std::string_view message) {
  if (message.size() == kMd5OnlyMessageLength || message.size() == kMd5DigestLength)
    return {{}, message};
  if (!message.empty() && message.front() == '{') {
    const auto curly = message.find('}', 1);
    if (curly != std::string_view::npos && curly <= kMaxDigestNameLength + 1) {
      const std::string_view name = message.substr(1, curly - 1);
      if (digest_named(name) != nullptr) return {name, message.substr(curly + 1)};
    }
  }
  throw AuthenticationError(
      "mp: authentication: unsupported message length, missing digest prefix, or "
      "unsupported digest");
}

// Python's _create_response: a bare HMAC-MD5 for a legacy challenge, else
// "{name}" + HMAC-name over the whole challenge (prefix included).
std::string create_response(std::string_view authkey, std::string_view message) {
  const std::string_view name = digest_name_and_payload(message).first;
  if (name.empty()) return hmac(EVP_md5(), authkey, message);
  std::string response;
  response.reserve(name.size() + 2 + EVP_MAX_MD_SIZE);
  response.append("{").append(name).append("}");
  response.append(hmac(digest_named(name), authkey, message));
  return response;
}

// Python's _verify_challenge.
void verify_challenge(std::string_view authkey, std::string_view message,
                      std::string_view response) {
  auto [name, mac] = digest_name_and_payload(response);
  const std::string expected = hmac(digest_named(name.empty() ? "md5" : name), authkey, message);
  if (expected.size() != mac.size() ||
      ::CRYPTO_memcmp(expected.data(), mac.data(), mac.size()) != 0)
    throw AuthenticationError("mp: authentication: digest received was wrong");
}

// One handshake message: any failure to receive one (end of stream, a frame over 256
// bytes or broken) is a failed authentication, as in Python where it ends the handshake.
std::string receive_handshake(Connection& connection) {
  try {
    return connection.recv_bytes(kMaxHandshakeMessage);
  } catch (const EOFError&) {
    throw AuthenticationError("mp: authentication: the peer closed the connection");
  } catch (const std::system_error& e) {
    connection.close();
    throw AuthenticationError(std::string("mp: authentication: ") + e.what());
  }
}

Connection finish(Connection connection, const std::optional<std::string>& authkey,
                  bool allow_unauthenticated_pickles) {
  connection.set_unpickling_allowed(authkey.has_value() || allow_unauthenticated_pickles);
  return connection;
}

std::vector<posix::SocketAddress> resolve_or_throw(std::string_view address, bool passive,
                                                   const char* who) {
  std::vector<posix::SocketAddress> candidates;
  std::string error;
  if (auto ec = posix::resolve(address, passive, candidates, error)) {
    if (ec == std::errc::invalid_argument)
      throw std::invalid_argument(std::string(who) + ": " + error);
    throw std::system_error(ec, std::string(who) + ": " + error);
  }
  return candidates;
}

}  // namespace

void deliver_challenge(Connection& connection, std::string_view authkey) {
  check_authkey(authkey, "mp::deliver_challenge");
  std::string message = "{sha256}";
  const std::size_t random_at = message.size();
  message.resize(random_at + kMessageLength);
  if (auto ec = posix::random_bytes(message.data() + random_at, kMessageLength))
    throw std::system_error(ec, "mp::deliver_challenge: getrandom");
  connection.send_bytes(std::string(kChallenge) + message);
  const std::string response = receive_handshake(connection);
  try {
    verify_challenge(authkey, message, response);
  } catch (const AuthenticationError&) {
    try {
      connection.send_bytes(kFailure);
    } catch (const std::system_error&) {
      // The peer is gone: it will not learn why, and need not.
    }
    connection.close();
    throw;
  }
  connection.send_bytes(kWelcome);
}

void answer_challenge(Connection& connection, std::string_view authkey) {
  check_authkey(authkey, "mp::answer_challenge");
  const std::string received = receive_handshake(connection);
  if (received.compare(0, kChallenge.size(), kChallenge) != 0 ||
      received.size() < kChallenge.size()) {
    connection.close();
    throw AuthenticationError("mp: authentication: protocol error, expected a challenge");
  }
  const std::string_view message = std::string_view(received).substr(kChallenge.size());
  if (message.size() < kMd5OnlyMessageLength) {
    connection.close();
    throw AuthenticationError("mp: authentication: challenge too short");
  }
  std::string response;
  try {
    response = create_response(authkey, message);
  } catch (const AuthenticationError&) {
    connection.close();
    throw;
  }
  connection.send_bytes(response);
  if (receive_handshake(connection) != kWelcome) {
    connection.close();
    throw AuthenticationError("mp: authentication: digest sent was rejected");
  }
}

// ---- Listener ----

Listener::Listener(std::string_view address, ListenerOptions options)
    : options_(std::move(options)) {
  if (options_.authkey) check_authkey(*options_.authkey, "mp::Listener");
  const auto candidates = resolve_or_throw(address, true, "mp::Listener");
  posix::unique_fd socket;
  posix::SocketAddress bound;
  if (auto ec = posix::listen_on(candidates, options_.backlog, socket, bound))
    throw std::system_error(ec, "mp::Listener: cannot listen on '" + std::string(address) + "'");
  address_ = posix::to_string(bound);
  if (bound.family() == AF_UNIX && !address_.empty() && address_.front() != '\0') {
    unlink_path_ = address_;
    bound_by_pid_ = static_cast<int>(::getpid());
  }
  fd_ = socket.release();
}

Listener::Listener(Listener&& other) noexcept
    : fd_(std::exchange(other.fd_, -1)),
      address_(std::move(other.address_)),
      last_accepted_(std::move(other.last_accepted_)),
      options_(std::move(other.options_)),
      unlink_path_(std::exchange(other.unlink_path_, {})),
      bound_by_pid_(other.bound_by_pid_) {}

Listener& Listener::operator=(Listener&& other) noexcept {
  if (this != &other) {
    close();
    fd_ = std::exchange(other.fd_, -1);
    address_ = std::move(other.address_);
    last_accepted_ = std::move(other.last_accepted_);
    options_ = std::move(other.options_);
    unlink_path_ = std::exchange(other.unlink_path_, {});
    bound_by_pid_ = other.bound_by_pid_;
  }
  return *this;
}

Listener::~Listener() { close(); }

void Listener::close() noexcept {
  posix::unique_fd closing(std::exchange(fd_, -1));
  if (!unlink_path_.empty() && bound_by_pid_ == static_cast<int>(::getpid()))
    ::unlink(unlink_path_.c_str());
  unlink_path_.clear();
}

int Listener::fileno() const {
  if (fd_ < 0) throw std::invalid_argument("mp::Listener: listener is closed");
  return fd_;
}

Connection Listener::accept() {
  posix::unique_fd socket;
  posix::SocketAddress peer;
  if (auto ec = posix::accept_one(fileno(), socket, peer))
    throw std::system_error(ec, "mp::Listener::accept");
  last_accepted_ = posix::to_string(peer);
  Connection connection(socket.release(), true, true, Framing::python);
  if (options_.authkey) {
    deliver_challenge(connection, *options_.authkey);
    answer_challenge(connection, *options_.authkey);
  }
  return finish(std::move(connection), options_.authkey, options_.allow_unauthenticated_pickles);
}

// ---- Client ----

Connection Client(std::string_view address, ClientOptions options) {
  if (options.authkey) check_authkey(*options.authkey, "mp::Client");
  const auto candidates = resolve_or_throw(address, false, "mp::Client");
  posix::unique_fd socket;
  if (auto ec = posix::connect_to(candidates, socket))
    throw std::system_error(ec, "mp::Client: cannot connect to '" + std::string(address) + "'");
  Connection connection(socket.release(), true, true, Framing::python);
  if (options.authkey) {
    answer_challenge(connection, *options.authkey);
    deliver_challenge(connection, *options.authkey);
  }
  return finish(std::move(connection), options.authkey, options.allow_unauthenticated_pickles);
}

}  // namespace mp
