#include "posix/address.hpp"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstring>

namespace mp::posix {
namespace {

constexpr std::size_t kSunPathOffset = offsetof(struct sockaddr_un, sun_path);

std::error_code invalid(std::string& error, std::string message) {
  error = std::move(message);
  return std::make_error_code(std::errc::invalid_argument);
}

// Splits "host:port" / "[v6]:port"; false if `address` is not of that form.
bool split_host_port(std::string_view address, std::string& host, std::string& port) {
  const auto colon = address.rfind(':');
  if (colon == std::string_view::npos || colon == 0 || colon + 1 == address.size()) return false;
  const std::string_view port_part = address.substr(colon + 1);
  if (port_part.size() > 5) return false;
  for (char c : port_part)
    if (c < '0' || c > '9') return false;
  std::string_view host_part = address.substr(0, colon);
  if (host_part.find('/') != std::string_view::npos) return false;
  if (host_part.front() == '[') {
    if (host_part.size() < 3 || host_part.back() != ']') return false;
    host_part = host_part.substr(1, host_part.size() - 2);
  } else if (host_part.find(':') != std::string_view::npos) {
    return false;  // an IPv6 address must be bracketed
  }
  host.assign(host_part);
  port.assign(port_part);
  return true;
}

}  // namespace

std::error_code resolve(std::string_view address, bool passive, std::vector<SocketAddress>& out,
                        std::string& error) {
  out.clear();
  std::string host, port;
  if (!address.empty() && address.front() != '\0' && split_host_port(address, host, port)) {
    if (std::stoul(port) > 65535) return invalid(error, "port out of range");
    struct addrinfo hints {};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICSERV | (passive ? AI_PASSIVE : 0);
    struct addrinfo* found = nullptr;
    const int rc =
        ::getaddrinfo(host.empty() ? nullptr : host.c_str(), port.c_str(), &hints, &found);
    if (rc != 0) {
      error = std::string("cannot resolve '") + host + "': " + ::gai_strerror(rc);
      return std::make_error_code(std::errc::host_unreachable);
    }
    for (auto* entry = found; entry != nullptr; entry = entry->ai_next) {
      if (entry->ai_addrlen > sizeof(struct sockaddr_storage)) continue;
      SocketAddress resolved;
      std::memcpy(&resolved.storage, entry->ai_addr, entry->ai_addrlen);
      resolved.length = entry->ai_addrlen;
      out.push_back(resolved);
    }
    ::freeaddrinfo(found);
    if (out.empty()) return invalid(error, "no address for '" + host + "'");
    return {};
  }
  SocketAddress unix_address;
  auto* sun = reinterpret_cast<struct sockaddr_un*>(&unix_address.storage);
  sun->sun_family = AF_UNIX;
  if (address.empty()) {
    if (!passive) return invalid(error, "empty address");
    unix_address.length = sizeof(sa_family_t);  // autobind: the kernel picks a name
  } else {
    // A path needs its terminating NUL; an abstract name is counted exactly.
    const bool abstract = address.front() == '\0';
    if (address.size() + (abstract ? 0 : 1) > sizeof sun->sun_path)
      return invalid(error, "Unix socket address longer than " +
                                std::to_string(sizeof sun->sun_path - 1) + " bytes");
    if (!abstract && address.find('\0') != std::string_view::npos)
      return invalid(error, "Unix socket path contains a NUL byte");
    std::memcpy(sun->sun_path, address.data(), address.size());
    unix_address.length =
        static_cast<socklen_t>(kSunPathOffset + address.size() + (abstract ? 0 : 1));
  }
  out.push_back(unix_address);
  return {};
}

std::string to_string(const SocketAddress& address) {
  switch (address.family()) {
    case AF_UNIX: {
      const auto* sun = reinterpret_cast<const struct sockaddr_un*>(&address.storage);
      if (address.length <= kSunPathOffset) return {};
      const std::size_t size = address.length - kSunPathOffset;
      if (sun->sun_path[0] == '\0') return std::string(sun->sun_path, size);
      return std::string(sun->sun_path, ::strnlen(sun->sun_path, size));
    }
    case AF_INET: {
      const auto* in = reinterpret_cast<const struct sockaddr_in*>(&address.storage);
      char text[INET_ADDRSTRLEN] = {};
      ::inet_ntop(AF_INET, &in->sin_addr, text, sizeof text);
      return std::string(text) + ":" + std::to_string(ntohs(in->sin_port));
    }
    case AF_INET6: {
      const auto* in6 = reinterpret_cast<const struct sockaddr_in6*>(&address.storage);
      char text[INET6_ADDRSTRLEN] = {};
      ::inet_ntop(AF_INET6, &in6->sin6_addr, text, sizeof text);
      return "[" + std::string(text) + "]:" + std::to_string(ntohs(in6->sin6_port));
    }
    default:
      return {};
  }
}

namespace {

// A stream socket of `family`, close-on-exec, at fd 3 or above.
std::error_code open_socket(int family, unique_fd& out) noexcept {
  out.reset(::socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!out) return last_error();
  return keep_above_stdio(out);
}

// open_socket for `candidate`'s family; on failure, records the error in `last` (for the
// caller that then tries its next candidate) and returns false.
bool open_socket_for(const SocketAddress& candidate, unique_fd& out,
                     std::error_code& last) noexcept {
  if (auto ec = open_socket(candidate.family(), out)) {
    last = ec;
    return false;
  }
  return true;
}

}  // namespace

std::error_code listen_on(const std::vector<SocketAddress>& candidates, int backlog, unique_fd& out,
                          SocketAddress& bound) noexcept {
  std::error_code last = std::make_error_code(std::errc::address_not_available);
  for (const SocketAddress& candidate : candidates) {
    unique_fd socket;
    if (!open_socket_for(candidate, socket, last)) continue;
    if (candidate.family() != AF_UNIX) {
      const int on = 1;
      ::setsockopt(socket.get(), SOL_SOCKET, SO_REUSEADDR, &on, sizeof on);
    }
    if (::bind(socket.get(), reinterpret_cast<const struct sockaddr*>(&candidate.storage),
               candidate.length) != 0 ||
        ::listen(socket.get(), backlog) != 0) {
      last = last_error();
      continue;
    }
    bound = SocketAddress{};
    bound.length = sizeof bound.storage;
    if (::getsockname(socket.get(), reinterpret_cast<struct sockaddr*>(&bound.storage),
                      &bound.length) != 0)
      return last_error();
    out = std::move(socket);
    return {};
  }
  return last;
}

namespace {

void tune(int fd, int family) noexcept {
  // Messages go out whole in one sendmsg, so Nagle's algorithm only delays replies.
  if (family == AF_INET || family == AF_INET6) {
    const int on = 1;
    ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof on);
  }
}

}  // namespace

std::error_code accept_one(int listener, unique_fd& out, SocketAddress& peer) noexcept {
  for (;;) {
    peer = SocketAddress{};
    peer.length = sizeof peer.storage;
    const int fd = ::accept4(listener, reinterpret_cast<struct sockaddr*>(&peer.storage),
                             &peer.length, SOCK_CLOEXEC);
    if (fd >= 0) {
      out.reset(fd);
      if (auto ec = keep_above_stdio(out)) return ec;
      tune(out.get(), peer.family());
      return {};
    }
    // accept(2): errors of the new connection are reported by accept; try the next one.
    if (errno == EINTR || errno == ECONNABORTED || errno == EPROTO) continue;
    return last_error();
  }
}

std::error_code connect_to(const std::vector<SocketAddress>& candidates, unique_fd& out) noexcept {
  std::error_code last = std::make_error_code(std::errc::address_not_available);
  for (const SocketAddress& candidate : candidates) {
    unique_fd socket;
    if (!open_socket_for(candidate, socket, last)) continue;
    int rc = ::connect(socket.get(), reinterpret_cast<const struct sockaddr*>(&candidate.storage),
                       candidate.length);
    if (rc != 0 && errno == EINTR) {
      // The connection goes on in the background: wait for its outcome.
      struct pollfd watch = {socket.get(), POLLOUT, 0};
      while (::poll(&watch, 1, -1) < 0 && errno == EINTR) {
      }
      int error = 0;
      socklen_t size = sizeof error;
      ::getsockopt(socket.get(), SOL_SOCKET, SO_ERROR, &error, &size);
      errno = error;
      rc = error == 0 ? 0 : -1;
    }
    if (rc != 0) {
      last = last_error();
      continue;
    }
    tune(socket.get(), candidate.family());
    out = std::move(socket);
    return {};
  }
  return last;
}

}  // namespace mp::posix
