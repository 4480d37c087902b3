// The synchronization primitives: Python's multiprocessing/synchronize.py, built on
// futexes in the shared heap instead of POSIX named semaphores.
//
// Every state change is one atomic operation on one word, so a process killed at any
// point leaves a consistent state behind (at worst a stale "someone waits" hint, which
// only costs a spare wake-up). Owners are named by owner ids (pid + start time, see
// identity.hpp) so that a waiter can tell that an owner died and take over.
//
// Waiting: spin briefly (spin.hpp: a hand-off between running processes then costs no
// system call), then sleep on a futex with an absolute CLOCK_MONOTONIC deadline. Waits
// that depend on another process's progress (Lock, RLock, Barrier) sleep in bounded
// slices and check after each slice whether that process still lives.
#include <mp/synchronize.hpp>

#include <mp/logging.hpp>

#include <stdlib.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <climits>
#include <cstddef>
#include <cstdint>
#include <new>
#include <stdexcept>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

#include "identity.hpp"
#include "lock_core.hpp"
#include "posix/futex.hpp"
#include "spin.hpp"

namespace mp {
namespace {

using namespace std::chrono_literals;
using posix::Deadline;

// How long a Lock waiter sleeps before it checks whether the owner still lives.
constexpr auto kOwnerCheckSlice = 25ms;
// The same for Barrier parties (each check reads /proc once per waiting party).
constexpr auto kPartyCheckSlice = 40ms;

bool timed_out(const std::error_code& ec) { return ec == std::errc::timed_out; }

Deadline deadline_for(std::optional<std::chrono::nanoseconds> timeout) {
  return timeout ? Deadline::after(*timeout) : Deadline::never();
}

// What this thread's waits for a Semaphore, an Event or a Barrier learned from their
// spins: on a busy machine they sleep at once (spin.hpp).
thread_local detail::SpinHistory wake_spin_history = 0;

bool wake_spin(const auto& done) {
  return detail::adaptive_spin_until(done, detail::kWakeSpin, wake_spin_history);
}

// ---- Lock / RLock state ----------------------------------------------------------------

using detail::LockState;
constexpr std::uint64_t kWaitersBit = detail::kLockWaitersBit;

std::uint32_t low_half(std::uint64_t word) { return static_cast<std::uint32_t>(word); }

// The slow path of taking the lock: spin, then sleep in slices, checking after each
// whether the owner died. Returns whether the lock was taken.
bool acquire_slow(LockState& state, detail::owner_id me, const Deadline& deadline) {
  auto taken = [&] {
    std::uint64_t expected = 0;
    return state.word.load(std::memory_order_relaxed) == 0 &&
           state.word.compare_exchange_weak(expected, me, std::memory_order_acquire,
                                            std::memory_order_relaxed);
  };
  if (detail::spin_until(taken, detail::kLockSpin)) return true;
  for (;;) {
    std::uint64_t word = state.word.load(std::memory_order_relaxed);
    if (word == 0) {
      // Others may sleep too (we cannot know): keep the waiters bit so that our release
      // wakes one of them.
      if (state.word.compare_exchange_weak(word, me | kWaitersBit, std::memory_order_acquire,
                                           std::memory_order_relaxed))
        return true;
      continue;
    }
    if (!(word & kWaitersBit)) {
      if (!state.word.compare_exchange_weak(word, word | kWaitersBit, std::memory_order_relaxed))
        continue;
      word |= kWaitersBit;
    }
    const auto ec =
        posix::futex_wait_low(state.word, low_half(word), deadline.capped(kOwnerCheckSlice));
    if (!timed_out(ec)) continue;  // woken, changed, or a signal: look again
    // A slice (or the whole timeout) passed without the lock changing hands.
    word = state.word.load(std::memory_order_relaxed);
    if (word != 0 && !detail::owner_alive(word & ~kWaitersBit)) {
      // Only from exactly the dead owner's word: if another waiter took over first,
      // this CAS fails and we wait for that one.
      if (state.word.compare_exchange_strong(word, me | kWaitersBit, std::memory_order_acquire,
                                             std::memory_order_relaxed)) {
        state.recovered.store(1, std::memory_order_relaxed);
        get_logger().warning("a lock's owner died holding it; the lock was taken over");
        return true;
      }
      continue;
    }
    if (deadline.passed()) return false;
  }
}

bool lock_acquire(LockState& state, bool block, std::optional<std::chrono::nanoseconds> timeout) {
  const detail::owner_id me = detail::current_owner_id();
  std::uint64_t expected = 0;
  if (state.word.compare_exchange_strong(expected, me, std::memory_order_acquire,
                                         std::memory_order_relaxed))
    return true;
  if (!block) return false;
  return acquire_slow(state, me, deadline_for(timeout));
}

// Releases the lock; returns false (changing nothing) if it was not held. One atomic
// exchange is the whole fast path: its old value says both whether the lock was held
// and whether anyone sleeps on it.
bool lock_release(LockState& state) {
  if (state.recovered.load(std::memory_order_relaxed) != 0)
    state.recovered.store(0, std::memory_order_relaxed);
  const std::uint64_t old = state.word.exchange(0, std::memory_order_release);
  if (old == 0) return false;
  if (old & kWaitersBit) posix::futex_wake_low(state.word, 1);
  return true;
}

bool lock_locked(const LockState& state) {
  return (state.word.load(std::memory_order_acquire) & ~kWaitersBit) != 0;
}

bool lock_held_by_this_process(const LockState& state) {
  return (state.word.load(std::memory_order_relaxed) & ~kWaitersBit) == detail::current_owner_id();
}

bool rlock_held_by_this_thread(const LockState& state) {
  return lock_held_by_this_process(state) &&
         state.owner_tid.load(std::memory_order_relaxed) == detail::current_tid();
}

bool rlock_acquire(LockState& state, bool block, std::optional<std::chrono::nanoseconds> timeout,
                   std::uint32_t levels = 1) {
  if (rlock_held_by_this_thread(state)) {
    state.count.store(state.count.load(std::memory_order_relaxed) + levels,
                      std::memory_order_relaxed);
    return true;
  }
  if (!lock_acquire(state, block, timeout)) return false;
  // A dead owner's thread and level are overwritten here.
  state.owner_tid.store(detail::current_tid(), std::memory_order_relaxed);
  state.count.store(levels, std::memory_order_relaxed);
  return true;
}

void rlock_check_owner(const LockState& state) {
  if (!rlock_held_by_this_thread(state))
    throw std::logic_error("mp::RLock::release: cannot release un-acquired lock");
}

// Releases every level; returns how many there were.
std::uint32_t rlock_release_all(LockState& state) {
  const std::uint32_t levels = state.count.load(std::memory_order_relaxed);
  state.count.store(0, std::memory_order_relaxed);
  state.owner_tid.store(0, std::memory_order_relaxed);
  lock_release(state);
  return levels;
}

}  // namespace

bool detail::robust_lock_acquire(LockState& state, bool block,
                                 std::optional<std::chrono::nanoseconds> timeout) {
  return lock_acquire(state, block, timeout);
}
bool detail::robust_lock_release(LockState& state) { return lock_release(state); }

// ---- Lock ----------------------------------------------------------------------------

Lock::Lock() : shared_handle(sizeof(LockState)) {}

bool Lock::acquire_contended(bool block, std::optional<std::chrono::nanoseconds> timeout) {
  return lock_acquire(lock_state(), block, timeout);
}

void Lock::release_after_exchange(std::uint64_t old) {
  if (old == 0)
    throw std::invalid_argument("mp::Lock::release: semaphore or lock released too many times");
  if (old & kWaitersBit) posix::futex_wake_low(lock_state().word, 1);
}

void Lock::release_recovered() {
  if (!lock_release(lock_state()))
    throw std::invalid_argument("mp::Lock::release: semaphore or lock released too many times");
}

bool Lock::recovered() const noexcept {
  return static_cast<LockState*>(state())->recovered.load(std::memory_order_relaxed) != 0;
}

bool Lock::locked() const noexcept { return lock_locked(*static_cast<LockState*>(state())); }

bool Lock::held_by_this_process() const noexcept {
  return lock_held_by_this_process(*static_cast<LockState*>(state()));
}

// ---- RLock ---------------------------------------------------------------------------

RLock::RLock() : shared_handle(sizeof(LockState)) {}

bool RLock::acquire(bool block, std::optional<std::chrono::nanoseconds> timeout) {
  return rlock_acquire(*static_cast<LockState*>(state()), block, timeout);
}

void RLock::release() {
  auto& state = *static_cast<LockState*>(this->state());
  rlock_check_owner(state);
  const std::uint32_t count = state.count.load(std::memory_order_relaxed);
  if (count > 1) {
    state.count.store(count - 1, std::memory_order_relaxed);
    return;
  }
  (void)rlock_release_all(state);
}

bool RLock::recovered() const noexcept {
  return static_cast<LockState*>(state())->recovered.load(std::memory_order_relaxed) != 0;
}

bool RLock::locked() const noexcept { return lock_locked(*static_cast<LockState*>(state())); }

bool RLock::held_by_this_thread() const noexcept {
  return rlock_held_by_this_thread(*static_cast<LockState*>(state()));
}

// ---- Semaphore -----------------------------------------------------------------------

namespace {

struct SemaphoreState {
  std::atomic<std::uint32_t> value;
  std::atomic<std::uint32_t> sleepers;  // may overcount after a sleeper died: harmless
  std::uint32_t maximum;                // BoundedSemaphore: the initial value; else 0
};

bool semaphore_try(SemaphoreState& state) {
  std::uint32_t value = state.value.load(std::memory_order_relaxed);
  while (value > 0) {
    if (state.value.compare_exchange_weak(value, value - 1, std::memory_order_acquire,
                                          std::memory_order_relaxed))
      return true;
  }
  return false;
}

SemaphoreState& init_semaphore(void* state, int value, bool bounded) {
  if (value < 0) throw std::invalid_argument("mp::Semaphore: initial value must be >= 0");
  auto& sem = *static_cast<SemaphoreState*>(state);
  sem.value.store(static_cast<std::uint32_t>(value), std::memory_order_relaxed);
  sem.maximum = bounded ? static_cast<std::uint32_t>(value) : 0;
  return sem;
}

}  // namespace

Semaphore::Semaphore(int value) : shared_handle(sizeof(SemaphoreState)) {
  init_semaphore(state(), value, false);
}

Semaphore::Semaphore(int value, bounded_tag) : shared_handle(sizeof(SemaphoreState)) {
  init_semaphore(state(), value, true);
}

bool Semaphore::acquire(bool block, std::optional<std::chrono::nanoseconds> timeout) {
  auto& sem = *static_cast<SemaphoreState*>(state());
  if (semaphore_try(sem)) return true;
  if (!block) return false;
  const Deadline deadline = deadline_for(timeout);
  if (wake_spin([&] { return semaphore_try(sem); })) return true;
  for (;;) {
    // Announce the sleep before the last look at the value: release() increments the
    // value before it reads `sleepers` (both sequentially consistent), so either it sees
    // us or we see its increment.
    sem.sleepers.fetch_add(1, std::memory_order_seq_cst);
    std::error_code ec;
    if (sem.value.load(std::memory_order_seq_cst) == 0)
      ec = posix::futex_wait(sem.value, 0, deadline);
    sem.sleepers.fetch_sub(1, std::memory_order_relaxed);
    if (semaphore_try(sem)) return true;
    if (timed_out(ec) || deadline.passed()) return false;
  }
}

void Semaphore::release() {
  auto& sem = *static_cast<SemaphoreState*>(state());
  std::uint32_t value = sem.value.load(std::memory_order_relaxed);
  for (;;) {
    if (sem.maximum != 0 && value >= sem.maximum)
      throw std::invalid_argument(
          "mp::BoundedSemaphore::release: semaphore released too many times");
    if (value >= static_cast<std::uint32_t>(INT_MAX))
      throw std::overflow_error("mp::Semaphore::release: value would exceed INT_MAX");
    if (sem.value.compare_exchange_weak(value, value + 1, std::memory_order_seq_cst,
                                        std::memory_order_relaxed))
      break;
  }
  if (sem.sleepers.load(std::memory_order_seq_cst) != 0) posix::futex_wake(sem.value, 1);
}

int Semaphore::get_value() const noexcept {
  return static_cast<int>(
      static_cast<SemaphoreState*>(state())->value.load(std::memory_order_relaxed));
}

// ---- Condition -----------------------------------------------------------------------

namespace {

struct ConditionState {
  std::atomic<std::uint32_t> sequence;  // bumped by every notify
  std::atomic<std::uint32_t> sleepers;  // may overcount after a sleeper died: harmless
};

}  // namespace

Condition::Condition() : Condition(RLock()) {}

Condition::Condition(Lock lock) : shared_handle(sizeof(ConditionState)), lock_(std::move(lock)) {}

Condition::Condition(RLock lock) : shared_handle(sizeof(ConditionState)), lock_(std::move(lock)) {}

bool Condition::acquire(bool block, std::optional<std::chrono::nanoseconds> timeout) {
  return std::visit([&](auto& lock) { return lock.acquire(block, timeout); }, lock_);
}

void Condition::release() {
  std::visit([](auto& lock) { lock.release(); }, lock_);
}

bool Condition::recovered() const noexcept {
  return std::visit([](const auto& lock) { return lock.recovered(); }, lock_);
}

void Condition::check_owned(const char* what) const {
  const bool owned = std::holds_alternative<RLock>(lock_)
                         ? std::get<RLock>(lock_).held_by_this_thread()
                         : std::get<Lock>(lock_).held_by_this_process();
  if (!owned)
    throw std::logic_error(std::string("mp::Condition::") + what + ": cannot " + what +
                           " on un-acquired lock");
}

bool Condition::wait(std::optional<std::chrono::nanoseconds> timeout) {
  check_owned("wait");
  auto& cond = *static_cast<ConditionState*>(state());
  const Deadline deadline = deadline_for(timeout);
  // Read under the lock: a notify after our release bumps it, so the futex wait below
  // returns at once instead of missing it.
  const std::uint32_t sequence = cond.sequence.load(std::memory_order_acquire);
  cond.sleepers.fetch_add(1, std::memory_order_seq_cst);
  std::uint32_t levels = 0;
  if (auto* rlock = std::get_if<RLock>(&lock_))
    levels = rlock_release_all(*static_cast<LockState*>(rlock->state()));
  else
    std::get<Lock>(lock_).release();

  bool notified = false;
  for (;;) {
    if (cond.sequence.load(std::memory_order_acquire) != sequence) {
      notified = true;
      break;
    }
    const auto ec = posix::futex_wait(cond.sequence, sequence, deadline);
    if (timed_out(ec)) {
      notified = cond.sequence.load(std::memory_order_acquire) != sequence;
      break;
    }
  }
  cond.sleepers.fetch_sub(1, std::memory_order_relaxed);

  // Take the lock back however long it takes, as Python (the caller holds it on return).
  if (auto* rlock = std::get_if<RLock>(&lock_))
    (void)rlock_acquire(*static_cast<LockState*>(rlock->state()), true, std::nullopt, levels);
  else
    (void)std::get<Lock>(lock_).acquire();
  return notified;
}

void Condition::notify(int n) {
  check_owned("notify");
  if (n <= 0) return;
  auto& cond = *static_cast<ConditionState*>(state());
  cond.sequence.fetch_add(1, std::memory_order_seq_cst);
  if (cond.sleepers.load(std::memory_order_seq_cst) != 0) posix::futex_wake(cond.sequence, n);
}

void Condition::notify_all() {
  check_owned("notify_all");
  auto& cond = *static_cast<ConditionState*>(state());
  cond.sequence.fetch_add(1, std::memory_order_seq_cst);
  if (cond.sleepers.load(std::memory_order_seq_cst) != 0) posix::futex_wake(cond.sequence, INT_MAX);
}

// ---- Event ---------------------------------------------------------------------------

namespace {

// Bit 0: the flag. Bits 1-31: how many times set() raised it (so a waiter learns that a
// set() happened even if clear() followed before it looked).
struct EventState {
  std::atomic<std::uint32_t> word;
  std::atomic<std::uint32_t> sleepers;
};

}  // namespace

Event::Event() : shared_handle(sizeof(EventState)) {}

bool Event::is_set() const noexcept {
  return static_cast<EventState*>(state())->word.load(std::memory_order_acquire) & 1;
}

void Event::set() {
  auto& event = *static_cast<EventState*>(state());
  std::uint32_t word = event.word.load(std::memory_order_relaxed);
  do {
    if (word & 1) return;
  } while (!event.word.compare_exchange_weak(word, (word + 2) | 1, std::memory_order_seq_cst,
                                             std::memory_order_relaxed));
  if (event.sleepers.load(std::memory_order_seq_cst) != 0) posix::futex_wake(event.word, INT_MAX);
}

void Event::clear() {
  static_cast<EventState*>(state())->word.fetch_and(~std::uint32_t{1}, std::memory_order_release);
}

bool Event::wait(std::optional<std::chrono::nanoseconds> timeout) {
  auto& event = *static_cast<EventState*>(state());
  const std::uint32_t start = event.word.load(std::memory_order_acquire);
  if (start & 1) return true;
  // Any change from `start` (whose flag is clear) is a set(): clear() cannot change it.
  auto changed = [&] { return event.word.load(std::memory_order_acquire) != start; };
  if (timeout && *timeout <= std::chrono::nanoseconds::zero()) return changed();
  const Deadline deadline = deadline_for(timeout);
  if (wake_spin(changed)) return true;
  event.sleepers.fetch_add(1, std::memory_order_seq_cst);
  bool result = false;
  for (;;) {
    if (changed()) {
      result = true;
      break;
    }
    if (timed_out(posix::futex_wait(event.word, start, deadline))) {
      result = changed();
      break;
    }
  }
  event.sleepers.fetch_sub(1, std::memory_order_relaxed);
  return result;
}

// ---- Barrier -------------------------------------------------------------------------

namespace {

// The barrier word. Low half (the futex): bit 0 broken, bits 2-31 the generation.
// High half: bits 32-47 the parties that arrived in this generation, bits 48-63 how the
// last 16 generations ended (bit 48 + i: generation (current - 1 - i) ended by reset()),
// so a waiter that wakes late still learns whether its generation passed or was reset.
constexpr std::uint64_t kBroken = 1;
constexpr unsigned kGenerationShift = 2;
constexpr std::uint64_t kGenerationMask = 0xffffffffu & ~std::uint64_t{3};
constexpr unsigned kCountShift = 32;
constexpr std::uint64_t kCountMask = std::uint64_t{0xffff} << kCountShift;
constexpr unsigned kHistoryShift = 48;
constexpr unsigned kHistoryLength = 16;
constexpr int kMaxParties = 32767;

std::uint32_t generation_of(std::uint64_t word) {
  return static_cast<std::uint32_t>((word & kGenerationMask) >> kGenerationShift);
}
int count_of(std::uint64_t word) { return static_cast<int>((word & kCountMask) >> kCountShift); }

// The first word of the next generation; `reset` records how this one ended.
std::uint64_t next_generation(std::uint64_t word, bool reset) {
  const std::uint64_t history =
      ((word >> kHistoryShift) << 1 | (reset ? 1 : 0)) & ((std::uint64_t{1} << kHistoryLength) - 1);
  const std::uint64_t generation =
      ((word & kGenerationMask) + (std::uint64_t{1} << kGenerationShift)) & kGenerationMask;
  return (history << kHistoryShift) | generation;
}

// Who arrived at index i, for a dead-party check: valid when `generation` matches.
struct BarrierSlot {
  std::atomic<std::uint64_t> owner;
  std::atomic<std::uint32_t> generation;
  std::uint32_t reserved;
};

// The members table: the processes that waited on the barrier and have not left it (a
// clean exit leaves), at most this many.
constexpr int kMaxMembers = 64;

struct BarrierState {
  std::atomic<std::uint64_t> word;
  std::atomic<std::uint32_t> sleepers;  // may overcount after a sleeper died: harmless
  std::int32_t parties;
  std::int64_t default_timeout_ns;  // < 0: none
  std::uint64_t cookie;             // tells this barrier from a later object in its memory
  BarrierSlot slots[1];             // `parties` of them, then members_of()
};

BarrierState& barrier_state(void* state) { return *static_cast<BarrierState*>(state); }

int member_count(int parties) { return std::min(parties, kMaxMembers); }

std::size_t barrier_state_size(int parties) {
  if (parties < 1 || parties > kMaxParties)
    throw std::invalid_argument("mp::Barrier: parties must be in [1, " +
                                std::to_string(kMaxParties) + "]");
  return sizeof(BarrierState) + sizeof(BarrierSlot) * static_cast<std::size_t>(parties - 1) +
         sizeof(std::atomic<std::uint64_t>) * static_cast<std::size_t>(member_count(parties));
}

// Owner ids of the members; 0: a free entry.
std::atomic<std::uint64_t>* members_of(BarrierState& barrier) {
  auto* end_of_slots = reinterpret_cast<std::byte*>(barrier.slots) +
                       sizeof(BarrierSlot) * static_cast<std::size_t>(barrier.parties);
  return std::launder(reinterpret_cast<std::atomic<std::uint64_t>*>(end_of_slots));
}

// The barriers this process is a member of, to leave at a clean exit. Leaked: the exit
// handler runs while static destructors may already have run.
// Marks `Memberships::process` while a thread of that process starts its list (bits
// 22-31 of an owner id are always 0).
constexpr detail::owner_id kMembershipsStarting = detail::owner_id{1} << 30;
struct Memberships {
  std::atomic_flag busy;
  std::atomic<detail::owner_id> process{0};  // whose list this is (a forked child starts anew)
  std::vector<std::pair<BarrierState*, std::uint64_t>> barriers;  // with their cookies
};
Memberships& memberships() {
  static auto* list = new Memberships;
  return *list;
}

class MembershipsLock {
 public:
  explicit MembershipsLock(Memberships& list) : list_(list) {
    while (list_.busy.test_and_set(std::memory_order_acquire)) posix::cpu_relax();
  }
  ~MembershipsLock() { list_.busy.clear(std::memory_order_release); }
  MembershipsLock(const MembershipsLock&) = delete;
  MembershipsLock& operator=(const MembershipsLock&) = delete;

 private:
  Memberships& list_;
};

// At exit(0) (or a return from main, or a child's target that returned), leaves every
// barrier: a process that ended cleanly is not waited for. Any other end (a signal,
// abort(), exit with another status, a target that threw) keeps it a member, so the
// barrier breaks for those who wait for it.
void leave_barriers_at_clean_exit(int status, void*) noexcept {
  if (status != 0) return;
  Memberships& list = memberships();
  const detail::owner_id me = detail::current_owner_id();
  MembershipsLock lock(list);
  for (const auto& [barrier, cookie] : list.barriers) {
    if (barrier->cookie != cookie) continue;  // freed: its memory holds another object
    auto* members = members_of(*barrier);
    for (int i = 0; i < member_count(barrier->parties); ++i) {
      std::uint64_t expected = me;
      members[i].compare_exchange_strong(expected, 0, std::memory_order_acq_rel);
    }
  }
  list.barriers.clear();
}

void remember_membership(BarrierState& barrier) {
  Memberships& list = memberships();
  const detail::owner_id me = detail::current_owner_id();
  for (detail::owner_id seen = list.process.load(std::memory_order_acquire); seen != me;
       seen = list.process.load(std::memory_order_acquire)) {
    // First membership of this process: a forked child inherits its parent's list (and
    // perhaps a lock a parent thread held) but none of its exit handlers. One thread
    // starts the list anew while the others wait for it.
    if (seen == (me | kMembershipsStarting) ||
        !list.process.compare_exchange_strong(seen, me | kMembershipsStarting)) {
      posix::cpu_relax();
      continue;
    }
    list.busy.clear(std::memory_order_release);
    list.barriers.clear();
    const bool registered = ::on_exit(&leave_barriers_at_clean_exit, nullptr) == 0;
    list.process.store(registered ? me : 0, std::memory_order_release);
    if (!registered) return;  // no clean exit to leave at: stay a member
  }
  MembershipsLock lock(list);
  list.barriers.emplace_back(&barrier, barrier.cookie);
}

// Makes the calling process a member (once). With the table full it goes unrecorded.
void become_member(BarrierState& barrier, detail::owner_id me) {
  auto* members = members_of(barrier);
  const int count = member_count(barrier.parties);
  for (int i = 0; i < count; ++i)
    if (members[i].load(std::memory_order_relaxed) == me) return;
  for (int i = 0; i < count; ++i) {
    std::uint64_t expected = 0;
    if (members[i].compare_exchange_strong(expected, me, std::memory_order_acq_rel)) {
      remember_membership(barrier);
      return;
    }
  }
}

void wake_all(BarrierState& barrier) {
  if (barrier.sleepers.load(std::memory_order_seq_cst) != 0)
    posix::futex_wake_low(barrier.word, INT_MAX);
}

// Breaks generation `generation` unless it has ended already.
void break_generation(BarrierState& barrier, std::uint32_t generation) {
  std::uint64_t word = barrier.word.load(std::memory_order_relaxed);
  while (generation_of(word) == generation && !(word & kBroken)) {
    if (barrier.word.compare_exchange_weak(word, word | kBroken, std::memory_order_seq_cst,
                                           std::memory_order_relaxed)) {
      wake_all(barrier);
      return;
    }
  }
}

// Whether a party registered in generation `generation` (among the first `count`) died,
// or a member died without leaving (it will never arrive). A dead member is struck off,
// so that reset() makes the barrier usable again.
bool a_party_died(BarrierState& barrier, std::uint32_t generation, int count) {
  bool died = false;
  for (int i = 0; i < count && i < barrier.parties; ++i) {
    auto& slot = barrier.slots[i];
    if (slot.generation.load(std::memory_order_acquire) != generation) continue;
    const detail::owner_id owner = slot.owner.load(std::memory_order_relaxed);
    if (owner != 0 && !detail::owner_alive(owner)) died = true;
  }
  auto* members = members_of(barrier);
  for (int i = 0; i < member_count(barrier.parties); ++i) {
    std::uint64_t member = members[i].load(std::memory_order_acquire);
    if (member != 0 && !detail::owner_alive(member)) {
      members[i].compare_exchange_strong(member, 0, std::memory_order_acq_rel);
      died = true;
    }
  }
  return died;
}

[[noreturn]] void throw_broken() { throw BrokenBarrierError("mp::Barrier: the barrier is broken"); }

// Sleeps until the low half of the word differs from `low` or the deadline passes
// (returns false then). Every slice, checks for dead parties of `generation`.
bool barrier_sleep(BarrierState& barrier, std::uint64_t word, const Deadline& deadline) {
  const std::uint32_t low = low_half(word);
  auto changed = [&] { return low_half(barrier.word.load(std::memory_order_acquire)) != low; };
  if (wake_spin(changed)) return true;
  barrier.sleepers.fetch_add(1, std::memory_order_seq_cst);
  bool result = true;
  for (;;) {
    if (changed()) break;
    const auto ec = posix::futex_wait_low(barrier.word, low, deadline.capped(kPartyCheckSlice));
    if (!timed_out(ec)) continue;
    if (changed()) break;
    const std::uint64_t now = barrier.word.load(std::memory_order_acquire);
    if (a_party_died(barrier, generation_of(word), count_of(now))) {
      break_generation(barrier, generation_of(word));
      break;
    }
    if (deadline.passed()) {
      result = false;
      break;
    }
  }
  barrier.sleepers.fetch_sub(1, std::memory_order_relaxed);
  return result;
}

}  // namespace

Barrier::Barrier(int parties, void (*action)(), std::optional<std::chrono::nanoseconds> timeout)
    : shared_handle(barrier_state_size(parties)), action_(action) {
  auto& barrier = barrier_state(state());
  barrier.parties = parties;
  barrier.default_timeout_ns = timeout ? std::max<std::int64_t>(timeout->count(), 0) : -1;
  barrier.cookie = serial() ^ ref().arena;
}

int Barrier::wait(std::optional<std::chrono::nanoseconds> timeout) {
  auto& barrier = barrier_state(state());
  if (!timeout && barrier.default_timeout_ns >= 0)
    timeout = std::chrono::nanoseconds(barrier.default_timeout_ns);
  const Deadline deadline = deadline_for(timeout);
  const detail::owner_id me = detail::current_owner_id();
  become_member(barrier, me);

  // Arrive: take the next index of the current generation.
  std::uint64_t word = barrier.word.load(std::memory_order_acquire);
  int index = 0;
  for (;;) {
    if (word & kBroken) throw_broken();
    index = count_of(word);
    if (index >= barrier.parties) {
      // The last party is running the action: this caller belongs to the next
      // generation. (Python's threads wait the same way while a barrier drains.)
      if (!barrier_sleep(barrier, word, deadline)) {
        break_generation(barrier, generation_of(word));
        throw_broken();
      }
      word = barrier.word.load(std::memory_order_acquire);
      continue;
    }
    if (barrier.word.compare_exchange_weak(word, word + (std::uint64_t{1} << kCountShift),
                                           std::memory_order_seq_cst, std::memory_order_acquire))
      break;
  }
  const std::uint32_t generation = generation_of(word);
  // Register for the dead-party check. (Killed between the CAS above and these stores, a
  // party goes unnoticed: the others then wait for their timeout.)
  barrier.slots[index].owner.store(me, std::memory_order_relaxed);
  barrier.slots[index].generation.store(generation, std::memory_order_release);

  if (index + 1 == barrier.parties) {
    // Last to arrive: run the action, then open the barrier.
    if (action_ || object_action_) {
      try {
        if (action_)
          action_();
        else
          object_action_();
      } catch (...) {
        break_generation(barrier, generation);
        throw;
      }
    }
    std::uint64_t full = barrier.word.load(std::memory_order_acquire);
    for (;;) {
      if (generation_of(full) != generation || (full & kBroken)) throw_broken();
      if (barrier.word.compare_exchange_weak(full, next_generation(full, false),
                                             std::memory_order_seq_cst, std::memory_order_acquire))
        break;
    }
    wake_all(barrier);
    return index;
  }

  // Wait for the generation to end: opened (return the index) or broken/reset (throw).
  word = barrier.word.load(std::memory_order_acquire);
  for (;;) {
    if (generation_of(word) != generation) {
      const std::uint32_t passed = (generation_of(word) - generation) &
                                   static_cast<std::uint32_t>(kGenerationMask >> kGenerationShift);
      if (passed <= kHistoryLength && ((word >> (kHistoryShift + passed - 1)) & 1)) throw_broken();
      return index;
    }
    if (word & kBroken) throw_broken();
    if (!barrier_sleep(barrier, word, deadline)) {
      // Python: a timeout breaks the barrier for everyone.
      break_generation(barrier, generation);
    }
    word = barrier.word.load(std::memory_order_acquire);
  }
}

void Barrier::reset() {
  auto& barrier = barrier_state(state());
  std::uint64_t word = barrier.word.load(std::memory_order_relaxed);
  while (!barrier.word.compare_exchange_weak(
      word, next_generation(word, true), std::memory_order_seq_cst, std::memory_order_relaxed)) {
  }
  wake_all(barrier);
}

void Barrier::abort() {
  auto& barrier = barrier_state(state());
  break_generation(barrier, generation_of(barrier.word.load(std::memory_order_relaxed)));
}

int Barrier::parties() const noexcept { return barrier_state(state()).parties; }

int Barrier::n_waiting() const noexcept {
  auto& barrier = barrier_state(state());
  const std::uint64_t word = barrier.word.load(std::memory_order_acquire);
  const int count = count_of(word);
  if ((word & kBroken) || count >= barrier.parties) return 0;
  return count;
}

bool Barrier::broken() const noexcept {
  return barrier_state(state()).word.load(std::memory_order_acquire) & kBroken;
}

}  // namespace mp
