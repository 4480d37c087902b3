// Private to mp: the robust mutexes that <mp/interprocess.hpp> gives Boost.Interprocess's
// segment manager, kept free of Boost so that libmp itself needs no Boost headers.
//
// A segment mutex is mp::Lock's robust lock (a dead owner is taken over) plus a sticky
// `poisoned` flag: once a process has died holding it, the structure it guarded (the
// allocator's free tree, or the index of named objects) may be half-updated, so every
// later lock() throws mp::SegmentPoisoned instead of letting anyone walk that structure.
#pragma once

#include <mp/detail/export.hpp>

#include <atomic>
#include <cstdint>

#include <mp/detail/lock_state.hpp>
#include <mp/errors.hpp>

namespace mp {

// A managed segment's allocator or index of named objects was being changed by a
// process that died (its internal lock was taken over): the structure may be
// inconsistent, so the operation that needed it is refused. See <mp/interprocess.hpp>.
class MP_API SegmentPoisoned : public ProcessError {
 public:
  using ProcessError::ProcessError;
};

namespace detail {

// Marks a segment mutex in the segment, so that a handle can find it and check it.
inline constexpr std::uint64_t kSegmentMutexMagic = 0x78746d2d70692d6dULL;  // "m-ip-mtx"

struct segment_mutex_state {
  std::uint64_t magic = kSegmentMutexMagic;
  LockState lock{};
  std::atomic<std::uint32_t> poisoned{0};   // 1 once a dead owner's lock was taken over
  std::atomic<std::uint32_t> takeovers{0};  // how many times that happened
  // 1 while the holder only reads the structure (a lookup by name): a holder that dies
  // then leaves nothing half-changed, and its lock is taken over without poisoning.
  std::atomic<std::uint32_t> reading{0};
};

// Takes the lock (recursive: again in the thread that holds it, counted). `reading`: the
// caller only reads the guarded structure (set by the outermost acquisition). Throws
// mp::SegmentPoisoned, the lock released, if the mutex is (or has just become) poisoned:
// taking over from a dead holder poisons it unless that holder was only reading.
MP_API void segment_mutex_lock(segment_mutex_state& mutex, bool recursive, bool reading);
// One attempt; a dead owner is not taken over. Throws as segment_mutex_lock.
MP_API bool segment_mutex_try_lock(segment_mutex_state& mutex, bool recursive, bool reading);
MP_API void segment_mutex_unlock(segment_mutex_state& mutex, bool recursive) noexcept;

}  // namespace detail
}  // namespace mp
