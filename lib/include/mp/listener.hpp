// mp::Listener, mp::Client, deliver_challenge and answer_challenge: connections between
// processes that did not start each other, over Unix sockets or TCP, with Python's
// authentication. Mirrors the Listener/Client half of Python's
// `multiprocessing.connection`, and speaks its wire protocol exactly: a C++ program
// and a Python program (any version from 3.6 on) exchange bytes messages through them.
//
// Link mp::listener (CMake: find_package(mp COMPONENTS listener); pkg-config: mp-listener)
// for this header: it needs OpenSSL's libcrypto for the HMACs, which users of the rest of
// mp do not.
//
// Addresses are strings (Python: a str path, a ('host', port) tuple, or '\0name'):
//   "/path/to/socket" or "name"   a Unix socket at that path (removed by close())
//   std::string("\0name", 5)      an abstract Unix socket (Linux; nothing on disk)
//   "host:port", "[::1]:port"     TCP over IPv4 or IPv6; the host may be a name
// A string is TCP when what follows its last ':' is a decimal port and what precedes it
// is non-empty without a '/' (write "./a:1" for a file named "a:1").
//
// Wire protocol (CPython's, see Framing::python in <mp/connection.hpp>): frames of a
// 4-byte big-endian length (-1 and an 8-byte length above 2 GiB); the authentication is
// Python's mutual HMAC challenge. mp sends Python 3.12's challenge
// ("#CHALLENGE#{sha256}" and 40 random bytes) and answers "{sha256}"+HMAC; it also
// answers and accepts Python 3.11's and older HMAC-MD5 without prefix, as 3.12 does.
//
// Differences from Python, on purpose:
//   - recv<T>() on a connection that was not authenticated (no authkey) throws
//     mp::AuthenticationError unless allow_unauthenticated_pickles is set: an mp pickle
//     can name a function of this binary, so an unknown peer must not send one. Python
//     unpickles anything, which lets any peer run code. send_bytes/recv_bytes always work.
//   - An empty authkey is std::invalid_argument (Python: a Listener ignores b'' while a
//     Client with b'' waits for a challenge that never comes).
//   - A failed authentication closes the connection and throws mp::AuthenticationError
//     (also for a peer that breaks the handshake's framing or hangs up during it); the
//     Listener stays usable, as in Python.
//   - The default address (Listener()) is an abstract Unix socket the kernel names, so
//     nothing is left on disk (Python: a path in a temporary directory).
//   - TCP connections set TCP_NODELAY (a message leaves in one sendmsg anyway).
//   - No family argument (the address says it), no AF_PIPE (Windows), no xmlrpc wrapper.
//
// As in Python, accept() blocks until a client connects and, with an authkey, until it
// has answered: a client that connects and says nothing holds accept() (watch fileno()
// with mp::wait first, or accept in a thread of its own). Likewise a Client with an
// authkey waits for a challenge that a Listener without one never sends.
#pragma once

#include <mp/detail/export.hpp>

#include <optional>
#include <string>
#include <string_view>

#include <mp/connection.hpp>

namespace mp {

// Python: Listener(address=None, family=None, backlog=1, authkey=None).
struct ListenerOptions {
  // listen(2)'s queue of connections not yet accepted. Python: backlog.
  int backlog = 1;
  // The shared secret each client must prove it knows (HMAC challenge both ways);
  // nullopt: no authentication. An empty key throws std::invalid_argument. Python: authkey.
  std::optional<std::string> authkey{};
  // Without an authkey, whether accepted connections still allow recv<T>() (mp pickles
  // name code of this binary, so the default refuses them). Python has no such guard.
  bool allow_unauthenticated_pickles = false;
};

// A socket bound to an address, listening. Move-only; the destructor closes it.
// Python: multiprocessing.connection.Listener.
class MP_API Listener {
 public:
  // Binds to `address` (see the header comment; empty: an abstract Unix address the
  // kernel picks) and listens. Throws std::invalid_argument for an address that cannot be
  // parsed or an empty authkey, std::system_error if the OS refuses (EADDRINUSE: the
  // address is taken, a path that exists included).
  explicit Listener(std::string_view address = {}, ListenerOptions options = {});
  // Takes over `other`'s socket; `other` is left closed.
  Listener(Listener&& other) noexcept;
  // Closes this listener (as close()), then takes over `other`'s socket; `other` is left
  // closed.
  Listener& operator=(Listener&& other) noexcept;
  Listener(const Listener&) = delete;
  Listener& operator=(const Listener&) = delete;
  ~Listener();

  // Waits for a client and returns its connection (Framing::python), after the
  // authentication if there is an authkey (deliver_challenge, then answer_challenge).
  // Throws mp::AuthenticationError if the client fails it (that connection is closed;
  // the Listener stays usable), std::invalid_argument if closed, std::system_error if
  // the OS fails. Python: accept().
  Connection accept();

  // Closes the socket and removes its path (Unix, in the process that bound it);
  // further calls are no-ops. Python: close().
  void close() noexcept;
  // Whether close() was called (or this was moved from).
  bool closed() const noexcept { return fd_ < 0; }

  // The bound address, with the port or abstract name the kernel chose. Python: address.
  const std::string& address() const noexcept { return address_; }
  // The address of the last client accepted ("" for an unnamed Unix client); nullopt
  // before the first. Python: last_accepted.
  const std::optional<std::string>& last_accepted() const noexcept { return last_accepted_; }
  // The listening socket, to watch with mp::wait (readable: a client is waiting). Throws
  // std::invalid_argument if closed.
  int fileno() const;

 private:
  int fd_ = -1;
  std::string address_;
  std::optional<std::string> last_accepted_;
  ListenerOptions options_;
  std::string unlink_path_;  // a filesystem socket to remove at close()
  int bound_by_pid_ = 0;     // only the process that bound it removes it
};

// Python: Client(address, family=None, authkey=None).
struct ClientOptions {
  // The listener's shared secret (HMAC challenge both ways); nullopt: no authentication.
  // An empty key throws std::invalid_argument. Python: authkey.
  std::optional<std::string> authkey{};
  // Without an authkey, whether the connection still allows recv<T>() (mp pickles name
  // code of this binary, so the default refuses them). Python has no such guard.
  bool allow_unauthenticated_pickles = false;
};

// Connects to the Listener at `address` (Python's or mp's) and returns the connection
// (Framing::python), after the authentication if there is an authkey (answer_challenge,
// then deliver_challenge). Blocks while connecting. Throws std::invalid_argument for a
// bad address or an empty authkey, std::system_error if the connection fails
// (ECONNREFUSED, ENOENT: nobody listens there), mp::AuthenticationError if the
// authentication fails. Python: multiprocessing.connection.Client.
MP_API Connection Client(std::string_view address, ClientOptions options = {});

// The serving half of the handshake: sends a challenge ("#CHALLENGE#{sha256}" and 40
// random bytes), checks the peer's HMAC (sha256, or any digest Python allows: md5,
// sha384, sha3_256, sha3_384; a bare 16-byte HMAC-MD5 from Python <= 3.11), and answers
// "#WELCOME#" or "#FAILURE#". Throws mp::AuthenticationError on a wrong or malformed
// answer, or if the peer breaks off; std::invalid_argument for an empty authkey.
// Python: multiprocessing.connection.deliver_challenge(connection, authkey).
MP_API void deliver_challenge(Connection& connection, std::string_view authkey);

// The answering half: receives a challenge, sends its HMAC (the digest the challenge
// names, or a bare HMAC-MD5 for a 20-byte challenge from Python <= 3.11) and expects
// "#WELCOME#". Throws mp::AuthenticationError if rejected or malformed.
// Python: multiprocessing.connection.answer_challenge(connection, authkey).
MP_API void answer_challenge(Connection& connection, std::string_view authkey);

}  // namespace mp
