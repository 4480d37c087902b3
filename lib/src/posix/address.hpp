// Socket addresses for mp::Listener and mp::Client, written as strings, and the calls
// that bind, listen, accept and connect with them. OS calls only; failures are
// std::error_code (std::errc::invalid_argument for an address that cannot be parsed).
//
// An address string is, in this order of checks:
//   ""                 Listener: an unused abstract Unix address the kernel picks
//   "\0name"           an abstract Unix socket (Linux; Python writes it the same way)
//   "host:port"        TCP, when the part after the last ':' is a decimal port and the
//   "[v6addr]:port"    part before is non-empty and has no '/' (an IPv6 address in []);
//                      host may be a name, resolved with getaddrinfo
//   anything else      a Unix socket at that path (write "./a:1" for a file named a:1)
#pragma once

#include <sys/socket.h>

#include <string>
#include <string_view>
#include <system_error>
#include <vector>

#include "posix/fd.hpp"

namespace mp::posix {

// One resolved socket address.
struct SocketAddress {
  struct sockaddr_storage storage {};
  socklen_t length = 0;
  int family() const noexcept { return storage.ss_family; }
};

// Resolves `address` into the addresses to try, in order (several for a TCP host name).
// `passive`: for binding (an empty address asks for kernel-chosen abstract Unix
// address; an empty TCP host binds to every interface).
[[nodiscard]] std::error_code resolve(std::string_view address, bool passive,
                                      std::vector<SocketAddress>& out, std::string& error);

// The string form of a socket address, as resolve() reads it ("" for an unnamed Unix
// peer, "\0name" for an abstract one, "1.2.3.4:80", "[::1]:80").
std::string to_string(const SocketAddress& address);

// A socket bound to the first of `candidates` that accepts it, listening with `backlog`
// (SO_REUSEADDR for TCP, as Python); `bound` is the address it got (getsockname).
[[nodiscard]] std::error_code listen_on(const std::vector<SocketAddress>& candidates, int backlog,
                                        unique_fd& out, SocketAddress& bound) noexcept;

// Accepts one connection (close-on-exec, blocking); `peer` is its address. Retries on
// EINTR and on the errors Linux reports for a connection that died in the queue.
[[nodiscard]] std::error_code accept_one(int listener, unique_fd& out,
                                         SocketAddress& peer) noexcept;

// A connected stream socket (close-on-exec) to the first of `candidates` that answers.
[[nodiscard]] std::error_code connect_to(const std::vector<SocketAddress>& candidates,
                                         unique_fd& out) noexcept;

}  // namespace mp::posix
