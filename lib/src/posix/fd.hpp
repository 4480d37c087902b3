// RAII file descriptors and small fd helpers. OS calls live in lib/src/posix and
// report failures as std::error_code; the public API turns them into exceptions.
#pragma once

#include <chrono>
#include <optional>
#include <string_view>
#include <system_error>
#include <utility>

namespace mp::posix {

// Owns one file descriptor; closes it on destruction. Move-only.
class unique_fd {
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
std::error_code last_error() noexcept;

// Waits until `fd` is readable (or hung up), at most `timeout` (nullopt: forever).
// Sets `ready`. Retries on EINTR with the remaining time, so it never returns early.
[[nodiscard]] std::error_code wait_readable(int fd, std::optional<std::chrono::nanoseconds> timeout,
                                            bool& ready) noexcept;

// Writes all of `data` (retrying on EINTR and short writes); MSG_NOSIGNAL on sockets.
[[nodiscard]] std::error_code write_all(int fd, std::string_view data) noexcept;

// Reads exactly `size` bytes into `out`; std::errc::connection_aborted on early EOF.
[[nodiscard]] std::error_code read_exact(int fd, void* out, std::size_t size) noexcept;

// Creates a connected AF_UNIX stream socket pair, both ends close-on-exec.
[[nodiscard]] std::error_code socket_pair(unique_fd& first, unique_fd& second) noexcept;

// Sends one byte `tag` carrying a copy of `fd` (SCM_RIGHTS) over the AF_UNIX socket
// `socket`.
[[nodiscard]] std::error_code send_fd(int socket, char tag, int fd) noexcept;

// Receives what send_fd sent: the tag byte and the fd (close-on-exec) in `out`.
// std::errc::connection_aborted on EOF, std::errc::protocol_error if no fd came with
// the byte.
[[nodiscard]] std::error_code recv_fd(int socket, char& tag, unique_fd& out) noexcept;

}  // namespace mp::posix
