// Private: the robust lock of mp::Lock (lib/src/synchronize.cpp) on a LockState that
// lives anywhere in shared memory, for mp's own structures outside the heap (a
// ShareableList's writer lock lives in its segment). A dead owner is taken over.
#pragma once

#include <chrono>
#include <optional>

#include <mp/detail/lock_state.hpp>

namespace mp::detail {

// As Lock::acquire: returns whether the lock was taken.
bool robust_lock_acquire(LockState& state, bool block,
                         std::optional<std::chrono::nanoseconds> timeout);
// As Lock::release: returns false (changing nothing) if the lock was not held.
bool robust_lock_release(LockState& state);

}  // namespace mp::detail
