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

std::error_code socket_pair(unique_fd& first, unique_fd& second) noexcept {
  int fds[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) != 0) return last_error();
  unique_fd made_first(fds[0]), made_second(fds[1]);
  if (auto ec = keep_above_stdio(made_first)) return ec;
  if (auto ec = keep_above_stdio(made_second)) return ec;
  first = std::move(made_first);
  second = std::move(made_second);
  return {};
}

namespace {

// A message of one byte (`tag`) with room for one descriptor: what send_fd and recv_fd pass.
struct OneFdMessage {
  explicit OneFdMessage(char& tag) : iov{&tag, 1} {
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control;
    msg.msg_controllen = sizeof control;
  }
  OneFdMessage(const OneFdMessage&) = delete;
  OneFdMessage& operator=(const OneFdMessage&) = delete;

  struct iovec iov;
  alignas(struct cmsghdr) char control[CMSG_SPACE(sizeof(int))] = {};
  struct msghdr msg {};
};

}  // namespace

std::error_code send_fd(int socket, char tag, int fd) noexcept {
  OneFdMessage message(tag);
  struct msghdr& msg = message.msg;
  struct cmsghdr* cmsg = CMSG_FIRSTHDR(&msg);
  cmsg->cmsg_level = SOL_SOCKET;
  cmsg->cmsg_type = SCM_RIGHTS;
  cmsg->cmsg_len = CMSG_LEN(sizeof(int));
  std::memcpy(CMSG_DATA(cmsg), &fd, sizeof fd);
  for (;;) {
    ssize_t n = ::sendmsg(socket, &msg, MSG_NOSIGNAL);
    if (n == 1) return {};
    if (n < 0 && errno == EINTR) continue;
    return last_error();
  }
}

std::error_code recv_fd(int socket, char& tag, unique_fd& out) noexcept {
  OneFdMessage message(tag);
  struct msghdr& msg = message.msg;
  ssize_t n;
  do {
    n = ::recvmsg(socket, &msg, MSG_CMSG_CLOEXEC);
  } while (n < 0 && errno == EINTR);
  if (n < 0) return last_error();
  if (n == 0) return std::make_error_code(std::errc::connection_aborted);
  for (struct cmsghdr* cmsg = CMSG_FIRSTHDR(&msg); cmsg; cmsg = CMSG_NXTHDR(&msg, cmsg)) {
    if (cmsg->cmsg_level == SOL_SOCKET && cmsg->cmsg_type == SCM_RIGHTS &&
        cmsg->cmsg_len == CMSG_LEN(sizeof(int))) {
      int fd;
      std::memcpy(&fd, CMSG_DATA(cmsg), sizeof fd);
      unique_fd received(fd);
      if (auto ec = keep_above_stdio(received)) return ec;
      out = std::move(received);
      return {};
    }
  }
  return std::make_error_code(std::errc::protocol_error);
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
