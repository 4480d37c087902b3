#include "posix/fd.hpp"

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <cerrno>
#include <cstring>
#include <new>

namespace mp::posix {

void unique_fd::reset(int fd) noexcept {
  if (fd_ >= 0) ::close(fd_);  // close() is not retried on EINTR on Linux: the fd is gone
  fd_ = fd;
}

std::error_code last_error() noexcept { return {errno, std::system_category()}; }

int above_stdio(int fd) noexcept {
  if (fd < 0 || fd > STDERR_FILENO) return fd;
  const long moved = ::syscall(SYS_fcntl, fd, F_DUPFD_CLOEXEC, STDERR_FILENO + 1);
  const int saved = errno;
  ::syscall(SYS_close, fd);
  errno = saved;
  return static_cast<int>(moved);
}

std::error_code keep_above_stdio(unique_fd& fd) noexcept {
  if (!fd || fd.get() > STDERR_FILENO) return {};
  const int moved = above_stdio(fd.release());
  if (moved < 0) return last_error();
  fd.reset(moved);
  return {};
}

std::error_code wait_readable(int fd, std::optional<std::chrono::nanoseconds> timeout,
                              bool& ready) noexcept {
  using clock = std::chrono::steady_clock;
  // A timeout too long for a time point (nanoseconds::max()) waits forever.
  if (timeout && *timeout >= clock::time_point::max() - clock::now()) timeout.reset();
  const auto deadline = timeout ? clock::now() + *timeout : clock::time_point::max();
  ready = false;
  for (;;) {
    int wait_ms = -1;
    if (timeout) {
      auto left = deadline - clock::now();
      if (left < std::chrono::nanoseconds::zero()) left = std::chrono::nanoseconds::zero();
      // Round up so a sub-millisecond remainder does not become a busy 0 ms poll.
      auto ms = std::chrono::ceil<std::chrono::milliseconds>(left).count();
      wait_ms = ms > 1'000'000'000 ? 1'000'000'000 : static_cast<int>(ms);
    }
    struct pollfd p = {fd, POLLIN, 0};
    int n = ::poll(&p, 1, wait_ms);
    if (n > 0) {
      ready = true;
      return {};
    }
    if (n < 0 && errno != EINTR) return last_error();
    if (n == 0 && timeout && clock::now() >= deadline) return {};
  }
}

std::error_code write_all(int fd, std::string_view data) noexcept {
  while (!data.empty()) {
    ssize_t n = ::send(fd, data.data(), data.size(), MSG_NOSIGNAL);
    if (n < 0 && errno == ENOTSOCK) n = ::write(fd, data.data(), data.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return last_error();
    }
    data.remove_prefix(static_cast<std::size_t>(n));
  }
  return {};
}

std::error_code read_exact(int fd, void* out, std::size_t size) noexcept {
  auto* p = static_cast<char*>(out);
  while (size > 0) {
    ssize_t n = ::read(fd, p, size);
    if (n < 0) {
      if (errno == EINTR) continue;
      return last_error();
    }
    if (n == 0) return std::make_error_code(std::errc::connection_aborted);
    p += n;
    size -= static_cast<std::size_t>(n);
  }
  return {};
}

std::error_code socket_pair(unique_fd& first, unique_fd& second, bool seqpacket) noexcept {
  int fds[2];
  const int type = (seqpacket ? SOCK_SEQPACKET : SOCK_STREAM) | SOCK_CLOEXEC;
  if (::socketpair(AF_UNIX, type, 0, fds) != 0) return last_error();
  unique_fd made_first(fds[0]), made_second(fds[1]);
  if (auto ec = keep_above_stdio(made_first)) return ec;
  if (auto ec = keep_above_stdio(made_second)) return ec;
  first = std::move(made_first);
  second = std::move(made_second);
  return {};
}

std::error_code send_with_fd(int socket, std::string_view data, int fd) noexcept {
  struct iovec iov = {const_cast<char*>(data.data()), data.size()};
  alignas(struct cmsghdr) char control[CMSG_SPACE(sizeof(int))] = {};
  struct msghdr msg {};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  if (fd >= 0) {
    msg.msg_control = control;
    msg.msg_controllen = sizeof control;
    struct cmsghdr* cmsg = CMSG_FIRSTHDR(&msg);
    cmsg->cmsg_level = SOL_SOCKET;
    cmsg->cmsg_type = SCM_RIGHTS;
    cmsg->cmsg_len = CMSG_LEN(sizeof(int));
    std::memcpy(CMSG_DATA(cmsg), &fd, sizeof fd);
  }
  for (;;) {
    ssize_t n = ::sendmsg(socket, &msg, MSG_NOSIGNAL);
    if (n == static_cast<ssize_t>(data.size())) return {};
    if (n < 0 && errno == EINTR) continue;
    if (n >= 0) return std::make_error_code(std::errc::message_size);
    return last_error();
  }
}

std::error_code send_fd(int socket, char tag, int fd) noexcept {
  return send_with_fd(socket, std::string_view(&tag, 1), fd);
}

std::error_code recv_with_fd(int socket, char* data, std::size_t size, std::size_t& got,
                             unique_fd& out) noexcept {
  struct iovec iov = {data, size};
  alignas(struct cmsghdr) char control[CMSG_SPACE(4 * sizeof(int))] = {};
  struct msghdr msg {};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control;
  msg.msg_controllen = sizeof control;
  ssize_t n;
  do {
    n = ::recvmsg(socket, &msg, MSG_CMSG_CLOEXEC);
  } while (n < 0 && errno == EINTR);
  if (n < 0) return last_error();
  got = static_cast<std::size_t>(n);
  unique_fd first;
  bool extra = false;
  for (struct cmsghdr* cmsg = CMSG_FIRSTHDR(&msg); cmsg; cmsg = CMSG_NXTHDR(&msg, cmsg)) {
    if (cmsg->cmsg_level != SOL_SOCKET || cmsg->cmsg_type != SCM_RIGHTS) continue;
    const std::size_t count = (cmsg->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    for (std::size_t i = 0; i < count; ++i) {
      int fd;
      std::memcpy(&fd, CMSG_DATA(cmsg) + i * sizeof(int), sizeof fd);
      unique_fd received(fd);  // closed unless it is the first
      if (first) {
        extra = true;
      } else {
        first = std::move(received);
      }
    }
  }
  if (extra || (msg.msg_flags & (MSG_TRUNC | MSG_CTRUNC)))
    return std::make_error_code(std::errc::protocol_error);
  if (first)
    if (auto ec = keep_above_stdio(first)) return ec;
  out = std::move(first);
  return {};
}

std::error_code recv_fd(int socket, char& tag, unique_fd& out) noexcept {
  std::size_t got = 0;
  if (auto ec = recv_with_fd(socket, &tag, 1, got, out)) return ec;
  if (got == 0) return std::make_error_code(std::errc::connection_aborted);
  if (!out) return std::make_error_code(std::errc::protocol_error);
  return {};
}

std::error_code read_small_file(const char* path, std::string& out) noexcept {
  unique_fd fd(::open(path, O_RDONLY | O_CLOEXEC));
  if (!fd) return last_error();
  if (auto ec = keep_above_stdio(fd)) return ec;
  try {
    out.clear();
    char buffer[4096];
    for (;;) {
      const ssize_t n = ::read(fd.get(), buffer, sizeof buffer);
      if (n < 0) {
        if (errno == EINTR) continue;
        return last_error();
      }
      if (n == 0) return {};
      out.append(buffer, static_cast<std::size_t>(n));
    }
  } catch (const std::bad_alloc&) {
    return std::make_error_code(std::errc::not_enough_memory);
  }
}

}  // namespace mp::posix
