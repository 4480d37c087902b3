// Locks, semaphores, conditions, events and barriers shared between processes.
// Mirrors Python's `multiprocessing.synchronize` (Lock, RLock, Semaphore,
// BoundedSemaphore, Condition, Event, Barrier) and threading.BrokenBarrierError.
//
// Every object lives in mp's shared heap (anonymous shared memory mapped by every
// process of the tree); the classes here are handles to it. Copying a handle gives
// another reference to the same object (as assigning a Python object does); the object
// lives until the last handle in any process is gone.
//
// Differences from Python, on purpose:
//   - Nothing is created in /dev/shm and no resource tracker exists: the memory goes
//     away with the last process, even after kill -9 (Python's named semaphores can leak
//     until reboot).
//   - Handles may also travel inside pickled messages (queues, pipes, files), not only
//     as Process arguments (Python raises RuntimeError there). Only within one process
//     tree, and the sender must keep its handle alive until the message is loaded
//     (loading a handle whose object is gone throws mp::UnpicklingError).
//   - Owner death: when a process dies holding a Lock or RLock, the next acquirer takes
//     the lock over within about 25 ms and recovered() tells it so (Python's waiters hang
//     forever). A process dying while it waits in a Condition never swallows a
//     notification; a Barrier whose party dies (while it waits, or between two waits)
//     breaks, so the others get BrokenBarrierError instead of hanging (see Barrier).
//   - Lock::locked() and RLock::locked() are there (Python 3.14 added RLock's).
//   - Lock, RLock, Semaphore and BoundedSemaphore meet C++'s Lockable and TimedLockable
//     requirements (lock, unlock, try_lock, try_lock_for, try_lock_until), so
//     std::scoped_lock, std::unique_lock and std::condition_variable_any work with them.
//     Condition meets Lockable too (it locks its lock), as Python's Condition is a
//     context manager.
//   - Timeouts are std::chrono durations (std::nullopt waits forever). They never end
//     early: deadlines are absolute CLOCK_MONOTONIC times.
//   - Event::wait() returns true when a set() woke it even if clear() followed at once
//     (threading.Event's meaning; Python's multiprocessing.Event may return False then).
//   - Barrier's action is a function pointer or a picklable function object: it runs in
//     whichever process arrives last, which may be a spawned child, so it travels with
//     the handle (a function pointer as a code reference).
//   - Condition::notify(n) may wake more than n waiters (a waiter that was about to
//     sleep when notified also returns): use wait_for() with a predicate, as with any
//     condition variable.
//   - RLock remembers its owning thread; a thread that ends holding an RLock (while its
//     process lives on) is not detected, as in Python.
#pragma once

#include <mp/detail/export.hpp>

#include <atomic>
#include <cstdint>
#include <optional>
#include <type_traits>
#include <utility>
#include <variant>

#include <mp/detail/barrier_action.hpp>
#include <mp/detail/chrono.hpp>
#include <mp/detail/heap.hpp>
#include <mp/detail/lock_state.hpp>
#include <mp/errors.hpp>

namespace mp {

namespace detail {
// The timeout that try_lock_until(t) means.
template <class Clock, class Duration>
std::chrono::nanoseconds time_until(const std::chrono::time_point<Clock, Duration>& t) {
  return std::chrono::ceil<std::chrono::nanoseconds>(t - Clock::now());
}

// The C++ Lockable / TimedLockable names (lock, try_lock, unlock, try_lock_for,
// try_lock_until) over Python's acquire(block, timeout) and release(), once for every
// lock type, so std::scoped_lock, std::unique_lock and std::condition_variable_any work.
template <class Derived>
class lockable {
 public:
  void lock() { self().acquire(); }
  bool try_lock() { return self().acquire(false); }
  void unlock() { self().release(); }
  template <class Rep, class Period>
  bool try_lock_for(const std::chrono::duration<Rep, Period>& timeout) {
    return self().acquire(true, std::chrono::ceil<std::chrono::nanoseconds>(timeout));
  }
  template <class Clock, class Duration>
  bool try_lock_until(const std::chrono::time_point<Clock, Duration>& deadline) {
    return self().acquire(true, time_until(deadline));
  }

 private:
  Derived& self() { return static_cast<Derived&>(*this); }
};
}  // namespace detail

class Condition;

// A non-recursive lock that any process (or thread) may release. Python: Lock().
//
// Owner death: if the process holding the lock dies (even by SIGKILL), a process
// blocked in acquire() takes the lock over within about 25 ms, and recovered() returns
// true from then until the next release(). The data the lock protects may be
// half-updated then: check or repair it before releasing. A process that tries only
// non-blocking acquire(false) never takes a dead owner's lock over; any blocking or
// timed acquire does.
class MP_API Lock : private detail::shared_handle<detail::shared_kind::lock>,
                    public detail::lockable<Lock> {
 public:
  // A new, unlocked lock in the shared heap. Throws mp::HeapExhausted, std::system_error.
  Lock();

  // Takes the lock. block = false: one attempt, timeout ignored (as Python). Otherwise
  // waits at most `timeout` (nullopt: forever). Returns whether the lock was taken.
  // A process that acquires a lock it already holds waits (it is not recursive).
  // Python: Lock.acquire(block=True, timeout=None).
  bool acquire(bool block = true, std::optional<std::chrono::nanoseconds> timeout = std::nullopt) {
    std::uint64_t expected = 0;
    if (lock_state().word.compare_exchange_strong(expected, detail::current_owner_id(),
                                                  std::memory_order_acquire,
                                                  std::memory_order_relaxed)) [[likely]]
      return true;
    return acquire_contended(block, timeout);
  }
  // Releases the lock, whoever holds it. Throws std::invalid_argument if it is not held
  // (Python: ValueError). Never blocks.
  void release() {
    auto& state = lock_state();
    if (state.recovered.load(std::memory_order_relaxed) != 0) [[unlikely]]
      return release_recovered();
    const std::uint64_t old = state.word.exchange(0, std::memory_order_release);
    if (old == 0 || (old & detail::kLockWaitersBit)) [[unlikely]]
      release_after_exchange(old);
  }

  // True if this lock was taken over from a process that died holding it and has not
  // been released since. Never blocks.
  bool recovered() const noexcept;

  // Whether any process or thread holds the lock now (a dead owner's lock counts as held
  // until someone takes it over). A snapshot: it may change at once. Never blocks.
  // Python: Lock.locked().
  bool locked() const noexcept;

  // C++ Lockable / TimedLockable: see detail::lockable.

  // Pickles as a reference to the same lock (mp::pickle); loading throws
  // mp::UnpicklingError if the Lock no longer exists.
  using shared_handle::ref, shared_handle::save, shared_handle::load;

 private:
  friend class Condition;
  // Whether the calling process holds the lock.
  bool held_by_this_process() const noexcept;
  detail::LockState& lock_state() const noexcept {
    return *static_cast<detail::LockState*>(state());
  }
  // The out-of-line rest of acquire() and release(): waiting, waking, errors.
  bool acquire_contended(bool block, std::optional<std::chrono::nanoseconds> timeout);
  void release_after_exchange(std::uint64_t old);
  void release_recovered();
};

// A recursive lock owned by one thread of one process: only the owner may release it,
// and it must release as many times as it acquired. Python: RLock().
// Owner death as for Lock: recovered() is true until the owner's last release().
class MP_API RLock : private detail::shared_handle<detail::shared_kind::rlock>,
                     public detail::lockable<RLock> {
 public:
  // A new, unlocked lock in the shared heap. Throws mp::HeapExhausted, std::system_error.
  RLock();

  // As Lock::acquire; if the calling thread holds the lock already, counts once more
  // and returns true at once. Python: RLock.acquire(block=True, timeout=None).
  bool acquire(bool block = true, std::optional<std::chrono::nanoseconds> timeout = std::nullopt);
  // Releases one level. Throws std::logic_error if the calling thread does not hold the
  // lock (Python: AssertionError/RuntimeError). Never blocks.
  void release();

  // See Lock::recovered().
  bool recovered() const noexcept;

  // Whether any thread of any process holds the lock now (not only the caller), as
  // Lock::locked(). Never blocks. Python 3.14: RLock.locked().
  bool locked() const noexcept;

  // Pickles as a reference to the same RLock (mp::pickle); loading throws
  // mp::UnpicklingError if the RLock no longer exists.
  using shared_handle::ref, shared_handle::save, shared_handle::load;

 private:
  friend class Condition;
  bool held_by_this_thread() const noexcept;
};

// A counter that acquire() decrements, waiting while it is zero, and release()
// increments. No owner, so no owner-death handling (as Python's): a process that dies
// between acquire and release leaves the count one lower. Python: Semaphore(value=1).
class MP_API Semaphore : private detail::shared_handle<detail::shared_kind::semaphore>,
                         public detail::lockable<Semaphore> {
 public:
  // Throws std::invalid_argument if value < 0 (Python: ValueError), mp::HeapExhausted.
  explicit Semaphore(int value = 1);

  // Decrements the count, waiting while it is zero; block and timeout as Lock::acquire.
  bool acquire(bool block = true, std::optional<std::chrono::nanoseconds> timeout = std::nullopt);
  // Increments the count and wakes one waiter. Throws std::overflow_error past INT_MAX.
  void release();
  // The current count. Python: get_value().
  int get_value() const noexcept;

  // Pickles as a reference to the same Semaphore (mp::pickle); loading throws
  // mp::UnpicklingError if the Semaphore no longer exists.
  using shared_handle::ref, shared_handle::save, shared_handle::load;

 protected:
  // Selects the bounded constructor below.
  struct bounded_tag {};
  // A semaphore whose release() refuses to go past `value` (BoundedSemaphore's). Throws
  // as Semaphore(value).
  Semaphore(int value, bounded_tag);
};

// A Semaphore whose release() throws std::invalid_argument (Python: ValueError) when
// the count would exceed its initial value. Python: BoundedSemaphore(value=1).
class BoundedSemaphore : public Semaphore {
 public:
  // A count of `value`, also its upper bound. Throws as Semaphore(value).
  // Python: BoundedSemaphore(value=1).
  explicit BoundedSemaphore(int value = 1) : Semaphore(value, bounded_tag{}) {}
};

// A condition variable shared between processes, bound to a Lock or RLock (a new RLock
// by default, as Python). Python: Condition(lock=None).
class MP_API Condition : private detail::shared_handle<detail::shared_kind::condition>,
                         public detail::lockable<Condition> {
 public:
  // Throws mp::HeapExhausted, std::system_error.
  Condition();
  // Bound to `lock` (a handle to the same lock: other handles and processes share it).
  // Throws mp::HeapExhausted, std::system_error. Python: Condition(lock).
  explicit Condition(Lock lock);
  // Bound to a recursive `lock`; throws as above. Python: Condition(rlock).
  explicit Condition(RLock lock);

  // The lock: acquire/release and the Lockable names (detail::lockable) act on it, as
  // Python's Condition.acquire/release and `with cond:`.
  bool acquire(bool block = true, std::optional<std::chrono::nanoseconds> timeout = std::nullopt);
  // Releases the lock; throws as that lock's release(). Python: Condition.release().
  void release();
  // The lock's recovered() (its previous owner died holding it).
  bool recovered() const noexcept;

  // Releases the lock (fully, for an RLock), waits until notified or `timeout` passes,
  // then takes the lock again (waiting as long as that takes, as Python). Returns false
  // if the timeout passed. Throws std::logic_error if the caller does not hold the lock
  // (Python: RuntimeError). Python: Condition.wait(timeout=None).
  bool wait(std::optional<std::chrono::nanoseconds> timeout = std::nullopt);

  // Waits until pred() is true or `timeout` passes; returns pred()'s last value. Holds
  // the lock around each call of pred(). Python: Condition.wait_for(predicate, timeout).
  template <class Predicate>
  auto wait_for(Predicate pred, std::optional<std::chrono::nanoseconds> timeout = std::nullopt) {
    using clock = std::chrono::steady_clock;
    // A timeout too long for a time point (nanoseconds::max()) waits forever.
    if (timeout && *timeout >= clock::time_point::max() - clock::now()) timeout.reset();
    const auto deadline = timeout ? std::optional(clock::now() + *timeout) : std::nullopt;
    auto result = pred();
    while (!result) {
      std::optional<std::chrono::nanoseconds> left;
      if (deadline) {
        left = *deadline - clock::now();
        if (*left <= std::chrono::nanoseconds::zero()) break;
      }
      wait(left);
      result = pred();
    }
    return result;
  }

  // Wakes up to n waiters (perhaps a few more: see the top of this file). Throws
  // std::logic_error if the caller does not hold the lock. Python: notify(n=1).
  void notify(int n = 1);
  // Wakes every waiter. Python: notify_all().
  void notify_all();

  using shared_handle::ref;

  // Pickles as a reference to the same Condition and its lock (mp::pickle).
  template <class Archive>
  void save(Archive& ar) const {
    save_with(ar, lock_);  // which of the two, then the lock
  }
  // Attaches to the Condition saved. Throws mp::UnpicklingError if it no longer exists.
  template <class Archive>
  void load(Archive& ar) {
    load_with(ar, lock_);
  }

 private:
  void check_owned(const char* what) const;
  std::variant<RLock, Lock> lock_;
};

// A flag that processes can wait for. Python: Event().
class MP_API Event : private detail::shared_handle<detail::shared_kind::event> {
 public:
  // A new event, not set. Throws mp::HeapExhausted, std::system_error.
  Event();

  // Never blocks.
  bool is_set() const noexcept;
  // Sets the flag and wakes every waiter. Never blocks.
  void set();
  // Clears the flag. Never blocks.
  void clear();
  // Waits until the flag is set or `timeout` passes. Returns true if the flag was set
  // (or a set() woke this wait), false on timeout. Python: Event.wait(timeout=None).
  bool wait(std::optional<std::chrono::nanoseconds> timeout = std::nullopt);

  // Pickles as a reference to the same Event (mp::pickle); loading throws
  // mp::UnpicklingError if the Event no longer exists.
  using shared_handle::ref, shared_handle::save, shared_handle::load;
};

// A meeting point for a fixed number of parties. Python: Barrier(parties, action=None,
// timeout=None) (threading.Barrier's semantics).
//
// Parties that die never leave the others waiting (Python's hang forever). The barrier
// knows its parties: every process that called wait() becomes a member (up to 64 per
// barrier) and stays one until it ends cleanly, that is by exit status 0 (a return
// from main, std::exit(0), a Process target that returned). A member that ends any
// other way (a signal, std::abort, a crash, exit with another status, a target that
// threw) while the barrier is in use breaks it: whoever waits, or arrives later, gets
// BrokenBarrierError within about 50 ms of looking. So does a party that dies inside
// wait() or while it runs the action. The dead member is struck off when the barrier
// breaks, so reset() makes it usable again (by a replacement process, say). A process
// that ends cleanly is not waited for, so a new team of processes can use the barrier
// after the last one finished; one that will not come back while others still wait
// (a bug) makes them wait for their timeout, as in Python.
class MP_API Barrier : private detail::shared_handle<detail::shared_kind::barrier> {
 public:
  // `action`, if given, runs in the last process to arrive, before any party is
  // released. `timeout` is the default for wait(). Throws std::invalid_argument unless
  // 1 <= parties <= 32767, mp::HeapExhausted.
  explicit Barrier(int parties, void (*action)() = nullptr,
                   std::optional<std::chrono::nanoseconds> timeout = std::nullopt);
  // A barrier for one party (wait() returns 0 at once). It exists because mp::pickle
  // default-constructs a handle before loading it.
  Barrier() : Barrier(1) {}
  // With an action that carries state: a picklable function object (a struct with
  // operator() and serialize(), a captureless lambda). Each process runs its own copy,
  // the one pickled with the handle it got (changes the action makes to itself stay in
  // that process); a spawned or forked child gets the state of the moment it started.
  // Compile-time error if F cannot be pickled.
  template <class F>
  requires(std::is_invocable_v<F&> && !std::is_convertible_v<F, void (*)()>)
      Barrier(int parties, F action, std::optional<std::chrono::nanoseconds> timeout = std::nullopt)
      : Barrier(parties, nullptr, timeout) {
    object_action_ = detail::BarrierAction::of(std::move(action));
  }

  // Waits until `parties` processes (or threads) have called wait(); returns this
  // caller's arrival index, 0 for the first to arrive up to parties - 1 for the last.
  // nullopt: the barrier's default timeout. Throws mp::BrokenBarrierError if the barrier
  // is or becomes broken (abort(), reset() while waiting, a timeout in any party, a
  // party that died, or the action threw); the timeout breaks the barrier, as Python.
  // If the action throws, the last party gets its exception and the barrier breaks.
  int wait(std::optional<std::chrono::nanoseconds> timeout = std::nullopt);

  // Returns the barrier to its initial state; current waiters get BrokenBarrierError.
  // Never blocks. Python: reset().
  void reset();
  // Puts the barrier into the broken state (until reset()). Never blocks.
  void abort();

  // The number of parties given at construction. Python: parties.
  int parties() const noexcept;
  // Parties waiting now (0 while broken). Python: n_waiting.
  int n_waiting() const noexcept;
  // Whether the barrier is broken (abort(), a timeout, a dead party, a failed action)
  // and not reset since. Never blocks. Python: broken.
  bool broken() const noexcept;

  using shared_handle::ref;

  // Pickles as a reference to the same Barrier and its action (mp::pickle).
  template <class Archive>
  void save(Archive& ar) const {
    save_with(ar, action_, object_action_);
  }
  // Attaches to the Barrier saved. Throws mp::UnpicklingError if it no longer exists.
  template <class Archive>
  void load(Archive& ar) {
    load_with(ar, action_, object_action_);
  }

 private:
  void (*action_)() = nullptr;
  detail::BarrierAction object_action_;
};

}  // namespace mp
