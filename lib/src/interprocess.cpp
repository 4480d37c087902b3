// The robust mutexes of <mp/interprocess.hpp>'s managed segments (see
// <mp/detail/segment_mutex.hpp>): mp::Lock's lock core, recursion counted in the
// LockState's thread fields as RLock does, and poisoning after a takeover.
#include <mp/detail/segment_mutex.hpp>

#include <optional>

#include "identity.hpp"
#include "lock_core.hpp"

namespace mp::detail {

namespace {

bool held_by_this_thread(const segment_mutex_state& mutex) {
  const auto& state = mutex.lock;
  return (state.word.load(std::memory_order_relaxed) & ~kLockWaitersBit) == current_owner_id() &&
         state.owner_tid.load(std::memory_order_relaxed) == current_tid();
}

// After the lock was taken: poison on a takeover, refuse a poisoned mutex.
void after_acquire(segment_mutex_state& mutex, bool recursive, bool reading) {
  auto& state = mutex.lock;
  if (state.recovered.load(std::memory_order_relaxed) != 0) {
    mutex.takeovers.fetch_add(1, std::memory_order_relaxed);
    if (mutex.reading.load(std::memory_order_relaxed) == 0)
      mutex.poisoned.store(1, std::memory_order_release);
  }
  if (mutex.poisoned.load(std::memory_order_acquire) != 0) {
    (void)robust_lock_release(state);
    throw SegmentPoisoned(
        "mp::ManagedSharedMemory: a process died while changing the segment's allocator or "
        "index of names; the operation is refused (objects already made stay usable)");
  }
  mutex.reading.store(reading ? 1 : 0, std::memory_order_relaxed);
  if (recursive) {
    state.owner_tid.store(current_tid(), std::memory_order_relaxed);
    state.count.store(1, std::memory_order_relaxed);
  }
}

}  // namespace

void segment_mutex_lock(segment_mutex_state& mutex, bool recursive, bool reading) {
  if (recursive && held_by_this_thread(mutex)) {
    mutex.lock.count.fetch_add(1, std::memory_order_relaxed);
    return;
  }
  (void)robust_lock_acquire(mutex.lock, true, std::nullopt);
  after_acquire(mutex, recursive, reading);
}

bool segment_mutex_try_lock(segment_mutex_state& mutex, bool recursive, bool reading) {
  if (recursive && held_by_this_thread(mutex)) {
    mutex.lock.count.fetch_add(1, std::memory_order_relaxed);
    return true;
  }
  if (!robust_lock_acquire(mutex.lock, false, std::nullopt)) return false;
  after_acquire(mutex, recursive, reading);
  return true;
}

void segment_mutex_unlock(segment_mutex_state& mutex, bool recursive) noexcept {
  auto& state = mutex.lock;
  if (recursive) {
    const std::uint32_t count = state.count.load(std::memory_order_relaxed);
    if (count > 1) {
      state.count.store(count - 1, std::memory_order_relaxed);
      return;
    }
    state.count.store(0, std::memory_order_relaxed);
    state.owner_tid.store(0, std::memory_order_relaxed);
  }
  mutex.reading.store(0, std::memory_order_relaxed);
  (void)robust_lock_release(state);
}

}  // namespace mp::detail
