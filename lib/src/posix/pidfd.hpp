// Child processes through pidfds: no SIGCHLD handler, no pid-reuse races.
#pragma once

#include <chrono>
#include <optional>
#include <system_error>

#include <sys/types.h>

#include "posix/fd.hpp"

namespace mp::posix {

// Opens a pidfd (close-on-exec) for `pid`.
[[nodiscard]] std::error_code pidfd_open(pid_t pid, unique_fd& out) noexcept;

// Sends `sig` to the process behind `pidfd`. ESRCH (already ended) is not an error.
[[nodiscard]] std::error_code pidfd_send_signal(int pidfd, int sig) noexcept;

// Reaps `pid` without blocking if it has ended. Sets `status` to Python's exitcode
// convention (N for exit(N), -N for signal N), or leaves it empty if still running.
[[nodiscard]] std::error_code try_reap(pid_t pid, std::optional<int>& status) noexcept;

// Sets the signal the calling process receives when its parent thread dies.
[[nodiscard]] std::error_code set_parent_death_signal(int sig) noexcept;

// The calls below are raw system calls on purpose: a forked child runs them first,
// and a libc wrapper called for the first time there is bound lazily in every child.

// getppid().
pid_t parent_pid() noexcept;

// Replaces stdin with /dev/null (best effort), duplicating `devnull_fd` if it is an fd
// already open on /dev/null, else opening it.
void stdin_from_devnull(int devnull_fd = -1) noexcept;

// An fd open on /dev/null (close-on-exec), opened once per process (a forked child
// inherits it already open); -1 on failure.
int devnull() noexcept;

// _exit(code).
[[noreturn]] void exit_now(int code) noexcept;

}  // namespace mp::posix
