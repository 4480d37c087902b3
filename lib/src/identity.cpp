#include "identity.hpp"

#include <pthread.h>
#include <unistd.h>

#include <atomic>

#include "posix/proc.hpp"

namespace mp::detail {
namespace {

std::atomic<pid_t> cached_pid{0};
thread_local pid_t cached_tid = 0;

// A forked child is a new process with the forking thread as its only thread.
void refresh_after_fork() noexcept {
  cached_pid.store(::getpid(), std::memory_order_relaxed);
  cached_owner_id.store(0, std::memory_order_relaxed);
  cached_tid = posix::this_thread_id();
}

[[maybe_unused]] const int atfork_registered =
    ::pthread_atfork(nullptr, nullptr, &refresh_after_fork);

owner_id make_owner_id(pid_t pid, std::uint64_t start_ticks) noexcept {
  return (start_ticks << 32) | static_cast<std::uint32_t>(pid);
}

}  // namespace

pid_t current_pid() noexcept {
  pid_t pid = cached_pid.load(std::memory_order_relaxed);
  if (pid == 0) {
    pid = ::getpid();
    cached_pid.store(pid, std::memory_order_relaxed);
  }
  return pid;
}

std::atomic<owner_id> cached_owner_id{0};

owner_id current_owner_id_slow() noexcept {
  owner_id id = cached_owner_id.load(std::memory_order_relaxed);
  if (id == 0) {
    const pid_t pid = current_pid();
    posix::ProcessStatus status;
    // Without /proc the start time reads as 0: pid reuse then goes unnoticed.
    (void)posix::process_status(pid, status);
    id = make_owner_id(pid, status.start_ticks);
    cached_owner_id.store(id, std::memory_order_relaxed);
  }
  return id;
}

pid_t current_tid() noexcept {
  if (cached_tid == 0) cached_tid = posix::this_thread_id();
  return cached_tid;
}

bool owner_alive(owner_id id) noexcept {
  const pid_t pid = owner_pid(id);
  if (pid == current_pid()) return true;
  posix::ProcessStatus status;
  if (posix::process_status(pid, status)) return true;
  if (!status.running) return false;
  return static_cast<std::uint32_t>(status.start_ticks) == static_cast<std::uint32_t>(id >> 32);
}

}  // namespace mp::detail
