#include "posix/pidfd.hpp"

#include <fcntl.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cerrno>
#include <csignal>

namespace mp::posix {

std::error_code pidfd_open(pid_t pid, unique_fd& out) noexcept {
  // pidfds are always close-on-exec.
  const int fd = above_stdio(static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)));
  if (fd < 0) return last_error();
  out.reset(fd);
  return {};
}

std::error_code pidfd_send_signal(int pidfd, int sig) noexcept {
  if (::syscall(SYS_pidfd_send_signal, pidfd, sig, nullptr, 0) != 0 && errno != ESRCH)
    return last_error();
  return {};
}

std::error_code try_reap(pid_t pid, std::optional<int>& status) noexcept {
  int raw = 0;
  for (;;) {
    pid_t r = ::waitpid(pid, &raw, WNOHANG);
    if (r == 0) return {};
    if (r < 0) {
      if (errno == EINTR) continue;
      return last_error();
    }
    break;
  }
  if (WIFEXITED(raw)) {
    status = WEXITSTATUS(raw);
  } else if (WIFSIGNALED(raw)) {
    status = -WTERMSIG(raw);
  }
  return {};
}

std::error_code set_parent_death_signal(int sig) noexcept {
  if (::syscall(SYS_prctl, PR_SET_PDEATHSIG, sig, 0, 0, 0) != 0) return last_error();
  return {};
}

pid_t parent_pid() noexcept { return static_cast<pid_t>(::syscall(SYS_getppid)); }

void stdin_from_devnull(int devnull_fd) noexcept {
  if (devnull_fd >= 0) {
    if (devnull_fd != STDIN_FILENO) ::syscall(SYS_dup3, devnull_fd, STDIN_FILENO, 0);
    return;
  }
  long fd = ::syscall(SYS_openat, AT_FDCWD, "/dev/null", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return;
  if (fd != STDIN_FILENO) {
    ::syscall(SYS_dup3, fd, STDIN_FILENO, 0);  // dup3 clears FD_CLOEXEC on the copy
    ::syscall(SYS_close, fd);
  }
}

int devnull() noexcept {
  // Above the stdio numbers: a child's stdin_from_devnull must copy it onto fd 0, and
  // a user who closes stdin must not close it.
  static const int fd = above_stdio(
      static_cast<int>(::syscall(SYS_openat, AT_FDCWD, "/dev/null", O_RDONLY | O_CLOEXEC)));
  return fd;
}

void exit_now(int code) noexcept {
  ::syscall(SYS_exit_group, code);
  __builtin_unreachable();
}

}  // namespace mp::posix
