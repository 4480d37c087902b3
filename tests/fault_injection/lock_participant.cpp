// Fault-injection participant: a Lock guarding a counter. Each worker loops: acquire,
// mark itself inside, bump the counter and its shadow copy (two stores, so a holder
// killed between them leaves them unequal), unmark, release, then count the operation
// as acknowledged in its own slot. Workers are SIGKILLed anywhere, with the lock held
// or not.
//
// The promises checked: a dead holder never blocks the others (the lock is taken over
// and recovered() says so, and the taker repairs the shadow); two processes are never
// inside at once; every acknowledged increment is in the counter, and at most one
// unacknowledged one per killed worker.
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <tuple>

#include <mp/pickle.hpp>
#include <mp/sharedctypes.hpp>
#include <mp/synchronize.hpp>

#include "fault_injection.hpp"

using namespace std::chrono_literals;

namespace {

// Slots of the shared array.
enum : std::size_t { kCounter, kShadow, kInside, kViolations, kRecoveries, kAcked, kSlots = 16 };

using State = std::tuple<mp::Lock, mp::RawArray<std::uint64_t>>;

// The driver's references: the state lives until the next setup (one test at a time).
std::optional<State> driver_state;

std::atomic_ref<std::uint64_t> slot(const mp::RawArray<std::uint64_t>& cells, std::size_t i) {
  return std::atomic_ref<std::uint64_t>(cells[i]);
}

// Under the lock, after a takeover: the dead holder did its counter store or not; the
// counter is the truth, the shadow and the inside mark are repaired.
void repair(const mp::RawArray<std::uint64_t>& cells) {
  slot(cells, kShadow).store(slot(cells, kCounter).load());
  slot(cells, kInside).store(0);
  slot(cells, kRecoveries).fetch_add(1);
}

std::string setup(const std::string&) {
  driver_state.emplace(mp::Lock(), mp::RawArray<std::uint64_t>(kSlots));
  return mp::pickle::dumps(*driver_state);
}

[[noreturn]] void work(std::string state, int worker_index) {
  auto [lock, cells] = mp::pickle::loads<State>(state);
  const std::uint64_t me = static_cast<std::uint64_t>(::getpid());
  const std::size_t acked = kAcked + static_cast<std::size_t>(worker_index);
  for (;;) {
    lock.acquire();
    if (lock.recovered()) repair(cells);
    if (slot(cells, kInside).load() != 0) slot(cells, kViolations).fetch_add(1);
    slot(cells, kInside).store(me);
    slot(cells, kCounter).store(slot(cells, kCounter).load() + 1);
    slot(cells, kShadow).store(slot(cells, kShadow).load() + 1);
    slot(cells, kInside).store(0);
    lock.release();
    slot(cells, acked).fetch_add(1);
  }
}

std::string verify(const std::string& state, int workers_killed) {
  auto [lock, cells] = mp::pickle::loads<State>(state);
  if (!lock.acquire(true, std::chrono::nanoseconds(10s)))
    return "the lock could not be taken within 10 s after every worker died";
  if (lock.recovered()) repair(cells);
  std::string problems;
  const std::uint64_t counter = slot(cells, kCounter).load();
  std::uint64_t acknowledged = 0;
  for (std::size_t i = kAcked; i < kSlots; ++i) acknowledged += slot(cells, i).load();
  if (slot(cells, kViolations).load() != 0)
    problems += std::to_string(slot(cells, kViolations).load()) +
                " times a worker found another inside the lock; ";
  if (slot(cells, kShadow).load() != counter) problems += "counter and shadow differ; ";
  if (counter < acknowledged)
    problems += "acknowledged increments lost (counter " + std::to_string(counter) + " < " +
                std::to_string(acknowledged) + "); ";
  if (counter > acknowledged + static_cast<std::uint64_t>(workers_killed))
    problems += "more unacknowledged increments than killed workers; ";
  if (acknowledged == 0) problems += "no worker completed an increment; ";
  lock.release();
  return problems;
}

}  // namespace

MP_FAULT_PARTICIPANT(lock, {.setup = &setup, .work = &work, .verify = &verify});
