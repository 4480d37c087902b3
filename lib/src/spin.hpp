// The one spin-then-sleep policy of mp's waiters (locks, events, barriers, semaphores,
// queues, connections, the pool's rings and result thread).
//
// A waiter whose partner is probably running on another CPU right now first spins: it
// looks at its condition, with CPU pause hints between looks, for a bounded budget.
// Only when that finds nothing does it sleep (futex or poll), which costs a system call
// on each side and tens of microseconds of wake-up latency in a VM. A spin that finds
// nothing has given up at most the budget; the sleep then gives up the CPU, so there is
// no sched_yield step in between.
//
// On a busy machine the partner is often not on a CPU at all (more runnable processes
// than CPUs): then a spin only burns the waiter's share of the CPU, and the partner's
// answer comes after a sleep anyway. Waiters that wait again and again (connections,
// events, barriers, semaphores, queues) therefore learn from their recent spins
// (adaptive_spin_until): after fruitless spins they sleep at once, for more and more
// waits, until spins find their condition again.
//
// Each kind of waiter names its budget in the table below; what it sleeps on, and what
// it checks between sleeps (a dead owner, a timeout), stays with the waiter.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdint>

#include "posix/futex.hpp"

namespace mp::detail {

struct SpinBudget {
  // Looks at the condition between two readings of the clock.
  int looks_per_round;
  // cpu_relax() before each look. Looking less often leaves the other side's cache lines
  // alone for a while, so that it can write several items before they move over.
  int pauses_per_look;
  // Spinning ends with the first round that ends this long after it began; zero: after
  // one round (the clock is not read at all).
  std::chrono::nanoseconds time;
};

// Lock and RLock: a critical section is short, so its owner releases soon or not for a
// long time; a hundred looks, then sleep.
inline constexpr SpinBudget kLockSpin{100, 1, std::chrono::nanoseconds(0)};
// Event, Semaphore, Barrier: the process that sets or releases is often running on
// another CPU and about to.
inline constexpr SpinBudget kWakeSpin{32, 1, std::chrono::microseconds(20)};
// Queue: a producer and a consumer running side by side; the consumer looks rarely.
inline constexpr SpinBudget kQueueSpin{8, 64, std::chrono::microseconds(50)};
// Connection: each look is a poll() system call, pause enough in itself.
inline constexpr SpinBudget kPollSpin{1, 0, std::chrono::microseconds(50)};

// Pool: a worker waiting for tasks, while the parent is about to send the next run.
inline constexpr SpinBudget kRingDataSpin{256, 1, std::chrono::microseconds(50)};
// Pool: a full ring's producer, while the consumer is draining it; one round.
inline constexpr SpinBudget kRingSpaceSpin{4096, 1, std::chrono::nanoseconds(0)};
// Pool: a worker about to wake the sleeping parent for a result, while a thread waiting
// on that result may take it first.
inline constexpr SpinBudget kDoorbellSpin{16, 4, std::chrono::microseconds(3)};
// Pool: the result thread after recent progress on short tasks; each look scans every
// worker's result ring.
inline constexpr SpinBudget kReplySpin{1, 64, std::chrono::microseconds(30)};

// Spins until done() is true or `budget` is spent; returns done()'s last value.
template <class Done>
bool spin_until(Done done, const SpinBudget& budget) {
  if (done()) return true;
  using Clock = std::chrono::steady_clock;
  const bool timed = budget.time > std::chrono::nanoseconds::zero();
  const Clock::time_point until = timed ? Clock::now() + budget.time : Clock::time_point();
  for (;;) {
    for (int i = 0; i < budget.looks_per_round; ++i) {
      for (int j = 0; j < budget.pauses_per_look; ++j) posix::cpu_relax();
      if (done()) return true;
    }
    if (!timed || Clock::now() >= until) return false;
  }
}

// What a waiter learned from its recent spins, kept from one wait to the next (zero at
// first): the low byte counts the waits left that sleep at once, the high byte the spins
// in a row that found nothing.
using SpinHistory = std::uint16_t;

// Waits after a spin that found nothing in which adaptive_spin_until does not spin;
// each further fruitless spin in a row doubles them, up to kMaxWaitsWithoutSpin.
inline constexpr int kWaitsWithoutSpin = 8;
inline constexpr int kMaxWaitsWithoutSpin = 128;

// spin_until for a waiter that keeps its SpinHistory. Adaptive, as glibc's adaptive
// mutexes: a spin that finds nothing (a slow partner, or a busy machine where the
// partner is not on a CPU and spinning only steals CPU time from it) turns spinning off
// for the next waits, for longer each time it happens again. A spin that finds its
// condition spins again at the next wait and halves the count of fruitless spins: on a
// busy machine, where a spin now and then finds its partner on a CPU by luck, that keeps
// the rests long instead of bringing back a fruitless spin every few waits; on a quiet
// one a few found spins in a row forget the fruitless ones. Returns whether done()
// became true while spinning.
template <class Done>
bool adaptive_spin_until(Done done, const SpinBudget& budget, SpinHistory& history) {
  const int skip = history & 0xff;
  const int fruitless = history >> 8;
  if (skip != 0) {
    history = static_cast<SpinHistory>((fruitless << 8) | (skip - 1));
    return false;
  }
  if (spin_until(done, budget)) {
    history = static_cast<SpinHistory>((fruitless / 2) << 8);
    return true;
  }
  int rest = kWaitsWithoutSpin;
  for (int i = 0; i < fruitless && rest < kMaxWaitsWithoutSpin; ++i) rest *= 2;
  history = static_cast<SpinHistory>((std::min(fruitless + 1, 0xff) << 8) | rest);
  return false;
}

}  // namespace mp::detail
