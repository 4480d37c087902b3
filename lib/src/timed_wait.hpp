// Condition-variable waits with a deadline that cannot overflow: steady_clock::now() +
// nanoseconds::max() wraps around into the past, so a wait "forever" would return at
// once. posix::Deadline (the deadline of locks, events and queues) saturates instead.
#pragma once

#include <chrono>
#include <condition_variable>
#include <mutex>

#include "posix/futex.hpp"

namespace mp::detail {

// Waits on `changed` until `ready()` or `deadline`; returns ready().
template <class Ready>
bool wait_until_deadline(std::condition_variable& changed, std::unique_lock<std::mutex>& lock,
                         const posix::Deadline& deadline, Ready ready) {
  using Clock = std::chrono::steady_clock;  // CLOCK_MONOTONIC, as posix::Deadline
  while (!ready()) {
    if (!deadline.at) {
      changed.wait(lock);
      continue;
    }
    if (deadline.passed()) return ready();
    // At most a day at a time: a time point that near cannot overflow.
    const timespec slice = *deadline.capped(std::chrono::hours(24)).at;
    changed.wait_until(
        lock, Clock::time_point(std::chrono::duration_cast<Clock::duration>(
                  std::chrono::seconds(slice.tv_sec) + std::chrono::nanoseconds(slice.tv_nsec))));
  }
  return true;
}

// The same, waiting at most `timeout` (nanoseconds::max(): forever).
template <class Ready>
bool wait_for_timeout(std::condition_variable& changed, std::unique_lock<std::mutex>& lock,
                      std::chrono::nanoseconds timeout, Ready ready) {
  return wait_until_deadline(changed, lock, posix::Deadline::after(timeout), ready);
}

}  // namespace mp::detail
