// Private to mp: the shared-memory state of Lock and RLock and the calling process's
// owner id, visible to the header only so that an uncontended acquire/release pair
// runs inline (one compare-and-swap, one exchange) instead of through two calls.
#pragma once

#include <mp/detail/export.hpp>

#include <atomic>
#include <cstdint>

namespace mp::detail {

// Names a process among all that ran on this machine since boot: its pid in the low
// 32 bits, the low 32 bits of its start time (clock ticks since boot, /proc/<pid>/stat)
// in the high 32 bits, so a later process that reuses the pid has another id (unless it
// starts exactly 2^32 ticks, 497 days at 100 Hz, later). Never 0.
using owner_id = std::uint64_t;

inline int owner_pid(owner_id id) noexcept { return static_cast<int>(id & 0x3fffff); }

// Set in a lock word while a process sleeps on it (bits 22-31 of an owner id are
// always 0: pids are below 2^22).
inline constexpr std::uint64_t kLockWaitersBit = std::uint64_t{1} << 31;

struct LockState {
  std::atomic<std::uint64_t> word;       // 0: free; else owner id | kLockWaitersBit
  std::atomic<std::uint32_t> recovered;  // 1: taken over from a dead owner, until release
  // RLock only: the owning thread and its recursion level (meaningful while `word`
  // names this process).
  std::atomic<std::int32_t> owner_tid;
  std::atomic<std::uint32_t> count;
};
static_assert(std::atomic<std::uint64_t>::is_always_lock_free);

// This process's owner id once known (0 before the first use and after fork).
extern MP_API std::atomic<owner_id> cached_owner_id;
MP_API owner_id current_owner_id_slow() noexcept;

// The calling process's owner id (read from /proc once per process).
inline owner_id current_owner_id() noexcept {
  const owner_id id = cached_owner_id.load(std::memory_order_relaxed);
  return id != 0 ? id : current_owner_id_slow();
}

}  // namespace mp::detail
