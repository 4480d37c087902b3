// RAII file descriptors and small fd helpers. OS calls live in lib/src/posix and
// report failures as std::error_code; the public API turns them into exceptions.
#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>

#include <mp/detail/export.hpp>

namespace mp::posix {

// Owns one file descriptor; closes it on destruction. Move-only. Exported (MP_API), as
// last_error() and above_stdio() below, for libmp_listener and libmp_mpi, which are
// linked against a shared libmp.
class MP_API unique_fd {
 public:
  unique_fd() noexcept = default;
  explicit unique_fd(int fd) noexcept : fd_(fd) {}
  unique_fd(unique_fd&& other) noexcept : fd_(other.release()) {}
  unique_fd& operator=(unique_fd&& other) noexcept {
    if (this != &other) reset(other.release());
    return *this;
  }
  unique_fd(const unique_fd&) = delete;
  unique_fd& operator=(const unique_fd&) = delete;
  ~unique_fd() { reset(); }

  int get() const noexcept { return fd_; }
  explicit operator bool() const noexcept { return fd_ >= 0; }
  int release() noexcept { return std::exchange(fd_, -1); }
  void reset(int fd = -1) noexcept;

 private:
  int fd_ = -1;
};

// The last errno as an error_code.
MP_API std::error_code last_error() noexcept;

// Every fd the library creates goes through one of these two right away, so that it is
// never 0, 1 or 2: a program started with stdin, stdout or stderr closed would otherwise
// get a library fd under a stdio number, and then printf writes into the shared heap, a
// redirect of stdin to /dev/null closes a socket, and so on.
//
// Returns `fd` itself when it is above 2 (or negative: an error to pass on). Otherwise
// moves it to the lowest free number >= 3, close-on-exec, closes the original and
// returns the new number; -1 with errno set (and the original closed) if that fails.
// Raw system calls only, so a forked child may call it.
MP_API int above_stdio(int fd) noexcept;

// The same for an owned fd: `fd` afterwards holds a number >= 3 (close-on-exec if it
// had to move), or is empty and the error returned.
[[nodiscard]] std::error_code keep_above_stdio(unique_fd& fd) noexcept;

// Waits until `fd` is readable (or hung up), at most `timeout` (nullopt: forever).
// Sets `ready`. Retries on EINTR with the remaining time, so it never returns early.
[[nodiscard]] std::error_code wait_readable(int fd, std::optional<std::chrono::nanoseconds> timeout,
                                            bool& ready) noexcept;

// Writes all of `data` (retrying on EINTR and short writes); MSG_NOSIGNAL on sockets.
[[nodiscard]] std::error_code write_all(int fd, std::string_view data) noexcept;

// Reads exactly `size` bytes into `out`; std::errc::connection_aborted on early EOF.
[[nodiscard]] std::error_code read_exact(int fd, void* out, std::size_t size) noexcept;

// Creates a connected AF_UNIX stream (or, with `seqpacket`, SOCK_SEQPACKET) socket pair,
// both ends close-on-exec and >= 3.
[[nodiscard]] std::error_code socket_pair(unique_fd& first, unique_fd& second,
                                          bool seqpacket = false) noexcept;

// Sends `data` in one sendmsg (one record on a SOCK_SEQPACKET socket), carrying a copy
// of `fd` (SCM_RIGHTS) unless it is -1. std::errc::message_size if it went out short.
[[nodiscard]] std::error_code send_with_fd(int socket, std::string_view data, int fd) noexcept;

// Receives with one recvmsg at most `size` bytes into `data` (`got`: 0 at end of file)
// and the fd that came with them, if any, in `out` (close-on-exec, >= 3).
// std::errc::protocol_error if more than one fd came or a record was cut short.
[[nodiscard]] std::error_code recv_with_fd(int socket, char* data, std::size_t size,
                                           std::size_t& got, unique_fd& out) noexcept;

// Sends one byte `tag` carrying a copy of `fd` (SCM_RIGHTS) over the AF_UNIX socket
// `socket`.
[[nodiscard]] std::error_code send_fd(int socket, char tag, int fd) noexcept;

// Receives what send_fd sent: the tag byte and the fd (close-on-exec, >= 3) in `out`.
// std::errc::connection_aborted on EOF, std::errc::protocol_error if no fd came with
// the byte.
[[nodiscard]] std::error_code recv_fd(int socket, char& tag, unique_fd& out) noexcept;

// Reads the whole of the (small) file `path` into `out`, through an fd that is never
// 0, 1 or 2 (std::ifstream could take one of those for a moment).
[[nodiscard]] std::error_code read_small_file(const char* path, std::string& out) noexcept;

}  // namespace mp::posix
