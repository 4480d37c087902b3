#include "posix/socket.hpp"

#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>

namespace mp::posix {

std::error_code stream_pair(bool duplex, unique_fd& first, unique_fd& second) noexcept {
  if (auto ec = socket_pair(first, second)) return ec;
  if (duplex) return {};
  if (::shutdown(first.get(), SHUT_WR) != 0 || ::shutdown(second.get(), SHUT_RD) != 0) {
    auto ec = last_error();
    first.reset();
    second.reset();
    return ec;
  }
  return {};
}

std::error_code write_all(int fd, std::span<struct iovec> parts, bool& is_socket) noexcept {
  struct iovec* iov = parts.data();
  std::size_t count = parts.size();
  while (count > 0 && iov->iov_len == 0) ++iov, --count;
  while (count > 0) {
    ssize_t n;
    if (is_socket) {
      struct msghdr msg {};
      msg.msg_iov = iov;
      msg.msg_iovlen = count;
      n = ::sendmsg(fd, &msg, MSG_NOSIGNAL);
      if (n < 0 && errno == ENOTSOCK) {
        is_socket = false;
        continue;
      }
    } else {
      n = ::writev(fd, iov, static_cast<int>(count));
    }
    if (n < 0) {
      if (errno == EINTR) continue;
      return last_error();
    }
    auto done = static_cast<std::size_t>(n);
    while (count > 0 && done >= iov->iov_len) {
      done -= iov->iov_len;
      ++iov;
      --count;
    }
    if (count > 0) {
      iov->iov_base = static_cast<char*>(iov->iov_base) + done;
      iov->iov_len -= done;
    }
  }
  return {};
}

std::error_code read_some(int fd, void* out, std::size_t size, std::size_t& got) noexcept {
  for (;;) {
    const ssize_t n = ::read(fd, out, size);
    if (n >= 0) {
      got = static_cast<std::size_t>(n);
      return {};
    }
    if (errno != EINTR) return last_error();
  }
}

bool readable_now(int fd) noexcept {
  struct pollfd watch = {fd, POLLIN, 0};
  return ::poll(&watch, 1, 0) != 0;
}

std::error_code poll_until(std::span<struct pollfd> fds,
                           std::optional<std::chrono::nanoseconds> timeout, int& ready) noexcept {
  using clock = std::chrono::steady_clock;
  // A timeout too long for a time point (nanoseconds::max()) waits forever.
  if (timeout && *timeout >= clock::time_point::max() - clock::now()) timeout.reset();
  const auto deadline = timeout ? clock::now() + *timeout : clock::time_point::max();
  ready = 0;
  for (;;) {
    struct timespec left_ts {};
    struct timespec* wait = nullptr;
    if (timeout) {
      auto left = deadline - clock::now();
      if (left < std::chrono::nanoseconds::zero()) left = std::chrono::nanoseconds::zero();
      const auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(left).count();
      left_ts.tv_sec = static_cast<time_t>(ns / 1'000'000'000);
      left_ts.tv_nsec = static_cast<long>(ns % 1'000'000'000);
      wait = &left_ts;
    }
    const int n = ::ppoll(fds.data(), fds.size(), wait, nullptr);
    if (n > 0) {
      ready = n;
      return {};
    }
    if (n < 0 && errno != EINTR) return last_error();
    // A timeout (or EINTR) ends the wait only once the deadline has really passed.
    if (timeout && clock::now() >= deadline) return {};
  }
}

}  // namespace mp::posix
