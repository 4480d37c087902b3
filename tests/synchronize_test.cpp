// Tests for <mp/synchronize.hpp>. Tests that start processes run once per start method
// (fork, spawn). Children get handles as Process arguments or inside pickles written to
// files, report through exit codes and shared memory, and are joined with a bound.
// Nothing sleeps to synchronize: readiness travels through Events (with timeouts) or
// shared counters polled with a bound.
#include <signal.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <fcntl.h>
#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <filesystem>
#include <mutex>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <mp/context.hpp>
#include <mp/pickle.hpp>
#include <mp/process.hpp>
#include <mp/synchronize.hpp>

#include "spin.hpp"
#include "test_util.hpp"

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;
using mp::detail::shared_ref;

namespace {

constexpr auto kJoinLimit = 60s;
// Generous bound for "promptly": far above the promised latency (about 25-50 ms) even on
// a machine with several busy processes per CPU, far below "stuck forever" (and below
// the 10 s timeouts that the takeover tests give acquire()).
constexpr auto kPromptly = 5s;

// A plain int (or a few) in the shared heap, addressed by reference so that spawned
// children find it too.
template <class T>
T* shared_at(shared_ref ref) {
  return static_cast<T*>(mp::detail::heap_address(ref));
}
template <class T>
shared_ref make_shared_plain() {
  shared_ref ref = mp::detail::heap_allocate(sizeof(T));
  new (shared_at<T>(ref)) T{};
  return ref;
}

void sleep_forever() {
  for (;;) ::pause();
}

// ---- child-side functions (free functions: they work with spawn) ----

void increment_under_lock(mp::Lock lock, shared_ref counter, int n) {
  int* value = shared_at<int>(counter);
  for (int i = 0; i < n; ++i) {
    lock.acquire();
    *value = *value + 1;
    lock.release();
  }
}

void increment_under_rlock(mp::RLock lock, shared_ref counter, int n) {
  int* value = shared_at<int>(counter);
  for (int i = 0; i < n; ++i) {
    std::scoped_lock outer(lock);
    std::scoped_lock inner(lock);  // recursion
    *value = *value + 1;
  }
}

// Exit 0 if acquire(timeout) fails after at least `timeout`, 2 if it took the lock.
void try_acquire_with_timeout(mp::Lock lock, std::chrono::milliseconds timeout) {
  const auto start = Clock::now();
  const bool taken = lock.acquire(true, timeout);
  const auto elapsed = Clock::now() - start;
  if (taken) std::exit(2);
  std::exit(elapsed >= timeout ? 0 : 3);
}

void release_lock(mp::Lock lock) { lock.release(); }

// Exit 0 if releasing an RLock this process does not hold throws std::logic_error.
void release_foreign_rlock(mp::RLock lock) {
  try {
    lock.release();
  } catch (const std::logic_error&) {
    std::exit(0);
  }
  std::exit(4);
}

template <class L>
void hold_and_hang(L lock, mp::Event ready) {
  lock.acquire();
  lock.acquire(false);  // RLock: recursion level 2 (Lock: fails, harmless)
  ready.set();
  sleep_forever();
}

void wait_event_then_set(mp::Event in, mp::Event out) {
  if (!in.wait(30s)) std::exit(5);
  out.set();
}

void wait_at_barrier(mp::Barrier barrier, shared_ref indices, int slot) {
  shared_at<int>(indices)[slot] = barrier.wait(30s);
}

// Waits (bounded) until `n` parties are registered at the barrier; the count it reached.
int wait_for_waiters(const mp::Barrier& barrier, int n) {
  const auto limit = Clock::now() + 30s;
  while (barrier.n_waiting() < n && Clock::now() < limit) std::this_thread::sleep_for(1ms);
  return barrier.n_waiting();
}

void wait_at_barrier_forever(mp::Barrier barrier) {
  try {
    barrier.wait();
  } catch (const mp::BrokenBarrierError&) {
    std::exit(7);
  }
  sleep_forever();
}

// Where count_action_in_file() counts: named by the test process's pid, which every
// party knows (its own, or its parent's). Not the environment: a forkserver child has
// the server's environment, from before the test set anything (as in Python).
std::string action_file_of(pid_t test_process) {
  return "/tmp/mp-test-barrier-action-" + std::to_string(test_process);
}

void count_action_in_file() {
  const mp::Process* parent = mp::parent_process();
  const std::string path = action_file_of(parent ? parent->pid() : ::getpid());
  int fd = ::open(path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
  if (fd >= 0) {
    (void)!::write(fd, "x", 1);
    ::close(fd);
  }
}

// A Barrier action with state: where to write, what, and how often it ran (in this
// process's copy).
struct AppendMark {
  std::string path;
  std::string mark;
  int calls = 0;
  void operator()() {
    ++calls;
    const std::string line = mark + std::to_string(calls) + "\n";
    int fd = ::open(path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
    if (fd >= 0) {
      (void)!::write(fd, line.data(), line.size());
      ::close(fd);
    }
  }
  template <class Archive>
  void serialize(Archive& ar) {
    ar(path, mark, calls);
  }
};

void barrier_rounds(mp::Barrier barrier, int rounds) {
  for (int i = 0; i < rounds; ++i) barrier.wait(30s);
}

// Passes `rounds` waits, then dies as `how` says between two waits: "abort" (a crash),
// "throw" (an exception escapes the target), "exit0" (a clean exit).
void barrier_rounds_then_end(mp::Barrier barrier, int rounds, std::string how) {
  for (int i = 0; i < rounds; ++i) barrier.wait(30s);
  if (how == "abort") std::abort();
  if (how == "throw") throw std::runtime_error("failed between two waits");
}

// A bounded queue of ints in shared memory, guarded by a Condition.
struct Ring {
  static constexpr int kCapacity = 8;
  int items[kCapacity];
  int head;   // next to take
  int count;  // items in the ring
};

void produce(mp::Condition cond, shared_ref ring_ref, int n) {
  auto* ring = shared_at<Ring>(ring_ref);
  for (int i = 1; i <= n; ++i) {
    std::unique_lock lock(cond);
    if (!cond.wait_for([&] { return ring->count < Ring::kCapacity; }, 30s)) std::exit(6);
    ring->items[(ring->head + ring->count) % Ring::kCapacity] = i;
    ++ring->count;
    cond.notify_all();
  }
}

void release_semaphore(mp::Semaphore sem, int times) {
  for (int i = 0; i < times; ++i) sem.release();
}

// Waits for a pickled Event in `path` (written after this child started), loads it and
// sets it; exit 0 on success.
void load_event_from_file_and_set(std::string path) {
  auto text = mp_test::wait_for_file(path, 30s);
  if (!text) std::exit(8);
  mp::Event event = mp::pickle::loads<mp::Event>(*text);
  event.set();
}

void load_lock_message_and_increment(std::string path, int n) {
  auto text = mp_test::wait_for_file(path, 30s);
  if (!text) std::exit(8);
  auto [lock, counter] = mp::pickle::loads<std::tuple<mp::Lock, shared_ref>>(*text);
  increment_under_lock(lock, counter, n);
}

// ---- The spin policy (spin.hpp) ----

TEST(Spin, StopsAsSoonAsDone) {
  int looks = 0;
  EXPECT_TRUE(mp::detail::spin_until([&] { return ++looks == 5; }, mp::detail::kWakeSpin));
  EXPECT_EQ(looks, 5);
  looks = 0;
  EXPECT_TRUE(mp::detail::spin_until([&] { return ++looks == 1; }, mp::detail::kQueueSpin));
  EXPECT_EQ(looks, 1);
}

TEST(Spin, ZeroTimeSpinsOneRound) {
  int looks = 0;
  const mp::detail::SpinBudget budget{10, 1, std::chrono::nanoseconds(0)};
  EXPECT_FALSE(mp::detail::spin_until([&] { return ++looks < 0; }, budget));
  EXPECT_EQ(looks, 11);  // the first look, then one round
  looks = 0;
  EXPECT_FALSE(mp::detail::spin_until([&] { return ++looks < 0; }, mp::detail::kLockSpin));
  EXPECT_EQ(looks, 1 + mp::detail::kLockSpin.looks_per_round);
}

TEST(Spin, TimedBudgetEndsAfterItsTime) {
  for (const auto& budget :
       {mp::detail::kWakeSpin, mp::detail::kQueueSpin, mp::detail::kPollSpin}) {
    int looks = 0;
    const auto start = Clock::now();
    EXPECT_FALSE(mp::detail::spin_until([&] { return ++looks < 0; }, budget));
    const auto spent = Clock::now() - start;
    EXPECT_GE(spent, budget.time);
    EXPECT_LT(spent, budget.time + 2s);  // a round is short, even on a busy machine
    EXPECT_GT(looks, budget.looks_per_round);
  }
}

namespace adaptive {

using mp::detail::adaptive_spin_until;
using mp::detail::kMaxWaitsWithoutSpin;
using mp::detail::kWaitsWithoutSpin;
using mp::detail::SpinHistory;

constexpr mp::detail::SpinBudget kFourLooks{4, 0, std::chrono::nanoseconds(0)};

// Waits with a condition that never holds until one spins again; returns how many slept
// at once before it (the spin's looks are counted in `looks`).
int waits_until_next_spin(SpinHistory& history, int& looks) {
  const int before = looks;
  int rested = 0;
  for (;;) {
    EXPECT_FALSE(adaptive_spin_until([&] { return ++looks < 0; }, kFourLooks, history));
    if (looks != before) return rested;
    ++rested;
    if (rested > 10 * kMaxWaitsWithoutSpin) {
      ADD_FAILURE() << "never spins again";
      return rested;
    }
  }
}

TEST(Spin, AdaptiveSpinRestsAfterAFruitlessSpin) {
  SpinHistory history = 0;
  int looks = 0;
  EXPECT_FALSE(adaptive_spin_until([&] { return ++looks < 0; }, kFourLooks, history));
  EXPECT_EQ(looks, 5) << "one look before the spin, then a round of four";
  EXPECT_EQ(waits_until_next_spin(history, looks), kWaitsWithoutSpin);
  int hits = 0;
  history = 0;
  EXPECT_TRUE(adaptive_spin_until([&] { return ++hits == 2; }, kFourLooks, history));
  EXPECT_EQ(history, 0) << "a spin that found its condition keeps spinning on";
  EXPECT_EQ(waits_until_next_spin(history, looks), 0);
}

TEST(Spin, AdaptiveSpinRestsLongerAfterEachFruitlessSpinInARow) {
  SpinHistory history = 0;
  int looks = 0;
  EXPECT_FALSE(adaptive_spin_until([&] { return ++looks < 0; }, kFourLooks, history));
  int expected = kWaitsWithoutSpin;
  for (int fruitless = 1; fruitless < 12; ++fruitless) {
    EXPECT_EQ(waits_until_next_spin(history, looks), expected) << "after " << fruitless;
    expected = std::min(expected * 2, kMaxWaitsWithoutSpin);
  }
  EXPECT_EQ(expected, kMaxWaitsWithoutSpin) << "the rest is bounded";
}

// Spins that find nothing `fruitless` times in a row, then one that finds its condition.
void fruitless_then_found(SpinHistory& history, int fruitless) {
  int looks = 0;
  EXPECT_FALSE(adaptive_spin_until([&] { return ++looks < 0; }, kFourLooks, history));
  for (int i = 1; i < fruitless; ++i) waits_until_next_spin(history, looks);
  // The last of those waits spun and found nothing: rest, then a spin that succeeds.
  while (!adaptive_spin_until([] { return true; }, kFourLooks, history)) {
  }
}

TEST(Spin, AdaptiveSpinThatFindsItsConditionHalvesTheFruitlessOnes) {
  // Four fruitless spins in a row, then a found one: the next fruitless spin counts as
  // the third in a row, not the first (on a busy machine a lucky spin now and then must
  // not bring back a spin every few waits).
  SpinHistory history = 0;
  fruitless_then_found(history, 4);
  EXPECT_EQ(history & 0xff, 0) << "a found spin spins again next time";
  int looks = 0;
  EXPECT_FALSE(adaptive_spin_until([&] { return ++looks < 0; }, kFourLooks, history));
  EXPECT_EQ(waits_until_next_spin(history, looks), 4 * kWaitsWithoutSpin);
}

TEST(Spin, AdaptiveSpinForgetsTheFruitlessOnesAfterFoundOnesInARow) {
  SpinHistory history = 0;
  fruitless_then_found(history, 5);
  for (int found = 1; history != 0; ++found) {
    ASSERT_LE(found, 4) << "five fruitless spins are forgotten after three found ones";
    EXPECT_TRUE(adaptive_spin_until([] { return true; }, kFourLooks, history));
  }
  int looks = 0;
  EXPECT_FALSE(adaptive_spin_until([&] { return ++looks < 0; }, kFourLooks, history));
  EXPECT_EQ(waits_until_next_spin(history, looks), kWaitsWithoutSpin)
      << "a quiet machine again: a fruitless spin rests the shortest time";
}

TEST(Spin, AdaptiveSpinHistoryNeverOverflows) {
  SpinHistory history = 0;
  for (int i = 0; i < 100'000; ++i)
    EXPECT_FALSE(adaptive_spin_until([] { return false; }, kFourLooks, history));
  int looks = 0;
  EXPECT_LE(waits_until_next_spin(history, looks), kMaxWaitsWithoutSpin);
  EXPECT_EQ(waits_until_next_spin(history, looks), kMaxWaitsWithoutSpin);
}

}  // namespace adaptive

class SynchronizeTest : public mp_test::StartMethodTest<> {
 protected:
  // Starts a child that takes `lock` (twice: an RLock's level 2) and hangs, and checks
  // that this process sees the lock held and not recovered. Then kills the child (not
  // joined yet: a zombie must count as dead too) and checks that acquire() takes the
  // lock over promptly and that recovered() says so. Then releases the lock (once),
  // checks that recovered() is false again, and joins the child.
  template <class L>
  void take_over_from_killed_holder(L& lock) {
    mp::Event ready;
    mp::Process child = start(&hold_and_hang<L>, lock, ready);
    ASSERT_TRUE(ready.wait(30s));
    EXPECT_TRUE(lock.locked()) << "held by another process";
    EXPECT_FALSE(lock.acquire(false));
    EXPECT_FALSE(lock.recovered());
    child.kill();
    const auto killed = Clock::now();
    ASSERT_TRUE(lock.acquire(true, 10s)) << "the dead owner's lock was never taken over";
    EXPECT_LT(Clock::now() - killed, kPromptly);
    EXPECT_TRUE(lock.recovered());
    lock.release();
    EXPECT_FALSE(lock.recovered());
    ASSERT_TRUE(child.join(kJoinLimit));
    EXPECT_EQ(child.exitcode(), -SIGKILL);
  }
};

// ---- Lock ----

TEST_P(SynchronizeTest, LockCountsExactUnderContention) {
  mp::Lock lock;
  const shared_ref counter = make_shared_plain<int>();
  constexpr int kProcesses = 4, kIncrements = 20'000;
  std::vector<mp::Process> children;
  for (int i = 0; i < kProcesses; ++i)
    children.push_back(start(&increment_under_lock, lock, counter, kIncrements));
  for (auto& child : children) join_ok(child);
  EXPECT_EQ(*shared_at<int>(counter), kProcesses * kIncrements);
  mp::detail::heap_free(counter);
}

TEST_P(SynchronizeTest, LockAcquireTimesOutInAnotherProcess) {
  mp::Lock lock;
  lock.acquire();
  auto child = start(&try_acquire_with_timeout, lock, std::chrono::milliseconds(100));
  join_ok(child);
  lock.release();
}

TEST_P(SynchronizeTest, LockReleasedByAnotherProcess) {
  mp::Lock lock;
  lock.acquire();
  auto child = start(&release_lock, lock);
  join_ok(child);
  EXPECT_TRUE(lock.acquire(false));
  lock.release();
}

TEST_P(SynchronizeTest, LockOwnerKilledWhileHolding) {
  mp::Lock lock;
  ASSERT_NO_FATAL_FAILURE(take_over_from_killed_holder(lock));
  // The lock works normally afterwards.
  EXPECT_TRUE(lock.acquire(false));
  EXPECT_FALSE(lock.recovered());
  lock.release();
}

TEST_P(SynchronizeTest, LockOwnerKilledWhileOthersWait) {
  // The waiter is already asleep in acquire() when the owner dies.
  mp::Lock lock;
  mp::Event ready;
  auto owner = start(&hold_and_hang<mp::Lock>, lock, ready);
  ASSERT_TRUE(ready.wait(30s));
  const shared_ref counter = make_shared_plain<int>();
  auto waiter = start(&increment_under_lock, lock, counter, 1);
  EXPECT_FALSE(waiter.join(100ms));
  owner.kill();
  ASSERT_TRUE(waiter.join(kPromptly + 0s));
  EXPECT_EQ(waiter.exitcode(), 0);
  EXPECT_EQ(*shared_at<int>(counter), 1);
  ASSERT_TRUE(owner.join(kJoinLimit));
  // The waiter released the lock it recovered.
  EXPECT_TRUE(lock.acquire(false));
  lock.release();
  mp::detail::heap_free(counter);
}

// ---- RLock ----

TEST_P(SynchronizeTest, RLockCountsExactUnderContention) {
  mp::RLock lock;
  const shared_ref counter = make_shared_plain<int>();
  std::vector<mp::Process> children;
  for (int i = 0; i < 3; ++i)
    children.push_back(start(&increment_under_rlock, lock, counter, 5000));
  for (auto& child : children) join_ok(child);
  EXPECT_EQ(*shared_at<int>(counter), 15000);
  mp::detail::heap_free(counter);
}

TEST_P(SynchronizeTest, RLockReleaseByNonOwnerProcessThrows) {
  mp::RLock lock;
  lock.acquire();
  auto child = start(&release_foreign_rlock, lock);
  join_ok(child);
  lock.release();
}

TEST_P(SynchronizeTest, RLockOwnerKilledWhileHolding) {
  mp::RLock lock;
  ASSERT_NO_FATAL_FAILURE(take_over_from_killed_holder(lock));
  // The dead owner's recursion level is gone: the one release freed the lock.
  EXPECT_THROW(lock.release(), std::logic_error);
}

// ---- Semaphore ----

TEST_P(SynchronizeTest, SemaphoreReleasedByChildren) {
  mp::Semaphore sem(0);
  auto a = start(&release_semaphore, sem, 3);
  auto b = start(&release_semaphore, sem, 2);
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(sem.acquire(true, 30s)) << i;
  join_ok(a);
  join_ok(b);
  EXPECT_EQ(sem.get_value(), 0);
  EXPECT_FALSE(sem.acquire(false));
}

// ---- Event ----

TEST_P(SynchronizeTest, EventSetByChildWakesParent) {
  mp::Event ping, pong;
  auto child = start(&wait_event_then_set, ping, pong);
  EXPECT_FALSE(pong.is_set());
  ping.set();
  EXPECT_TRUE(pong.wait(30s));
  EXPECT_TRUE(pong.is_set());
  join_ok(child);
}

// ---- Condition ----

TEST_P(SynchronizeTest, ConditionProducerConsumer) {
  for (bool recursive : {true, false}) {
    mp::Condition cond = recursive ? mp::Condition() : mp::Condition(mp::Lock());
    const shared_ref ring_ref = make_shared_plain<Ring>();
    auto* ring = shared_at<Ring>(ring_ref);
    constexpr int kItems = 2000;
    auto producer = start(&produce, cond, ring_ref, kItems);
    long long sum = 0;
    for (int expected = 1; expected <= kItems; ++expected) {
      std::unique_lock lock(cond);
      ASSERT_TRUE(cond.wait_for([&] { return ring->count > 0; }, 30s)) << expected;
      const int item = ring->items[ring->head];
      ring->head = (ring->head + 1) % Ring::kCapacity;
      --ring->count;
      cond.notify_all();
      ASSERT_EQ(item, expected);
      sum += item;
    }
    join_ok(producer);
    EXPECT_EQ(sum, static_cast<long long>(kItems) * (kItems + 1) / 2);
    mp::detail::heap_free(ring_ref);
  }
}

// ---- Barrier ----

TEST_P(SynchronizeTest, BarrierGivesEachPartyAnIndexAndRunsTheActionOnce) {
  const std::string action_file = action_file_of(::getpid());
  ::unlink(action_file.c_str());
  struct Unlink {
    const std::string& path;
    ~Unlink() { ::unlink(path.c_str()); }
  } unlink_at_end{action_file};
  mp::Barrier barrier(3, &count_action_in_file);
  const shared_ref indices = mp::detail::heap_allocate(3 * sizeof(int));
  auto a = start(&wait_at_barrier, barrier, indices, 0);
  auto b = start(&wait_at_barrier, barrier, indices, 1);
  shared_at<int>(indices)[2] = barrier.wait(30s);
  join_ok(a);
  join_ok(b);
  std::set<int> seen(shared_at<int>(indices), shared_at<int>(indices) + 3);
  EXPECT_EQ(seen, (std::set<int>{0, 1, 2}));
  // Many rounds more: the action runs once per round, in whichever process came last.
  auto c = start(&barrier_rounds, barrier, 200);
  auto d = start(&barrier_rounds, barrier, 200);
  for (int i = 0; i < 200; ++i) ASSERT_NO_THROW(barrier.wait(30s)) << i;
  join_ok(c);
  join_ok(d);
  EXPECT_EQ(mp_test::read_file(action_file).value_or("").size(), 201u);
  EXPECT_FALSE(barrier.broken());
  EXPECT_EQ(barrier.n_waiting(), 0);
  mp::detail::heap_free(indices);
}

TEST_P(SynchronizeTest, BarrierActionCarriesState) {
  mp_test::TempDir dir;
  const std::string path = dir.file("marks");
  mp::Barrier barrier(2, AppendMark{path, "m", 10});
  auto child = start(&barrier_rounds, barrier, 3);
  for (int i = 0; i < 3; ++i) ASSERT_NO_THROW(barrier.wait(30s)) << i;
  join_ok(child);
  // Three rounds, one action each, in whichever process came last; each copy counts on
  // from the state it was given (10).
  const std::string marks = mp_test::read_file(path).value_or("");
  EXPECT_EQ(std::count(marks.begin(), marks.end(), '\n'), 3) << marks;
  EXPECT_NE(marks.find("m11\n"), std::string::npos) << marks;
  EXPECT_EQ(marks.find("m10\n"), std::string::npos) << marks;
}

TEST_P(SynchronizeTest, BarrierWithKilledPartyBreaks) {
  mp::Barrier barrier(3);
  auto doomed = start(&wait_at_barrier_forever, barrier);
  ASSERT_EQ(wait_for_waiters(barrier, 1), 1);
  doomed.kill();
  const auto start = Clock::now();
  EXPECT_THROW(barrier.wait(30s), mp::BrokenBarrierError);
  EXPECT_LT(Clock::now() - start, kPromptly);
  EXPECT_TRUE(barrier.broken());
  ASSERT_TRUE(doomed.join(kJoinLimit));
  barrier.reset();
  EXPECT_FALSE(barrier.broken());
}

TEST_P(SynchronizeTest, BarrierPartyThatDiesBetweenWaitsBreaksIt) {
  // The party dies in its computation, not inside wait(): the others must not hang.
  for (const std::string how : {"abort", "throw"}) {
    mp::Barrier barrier(3);
    auto steady = start(&barrier_rounds, barrier, 1);
    auto doomed = start(&barrier_rounds_then_end, barrier, 1, how);
    ASSERT_EQ(barrier.wait(30s) >= 0, true);  // round 1: all three pass
    ASSERT_TRUE(doomed.join(kJoinLimit));
    EXPECT_NE(doomed.exitcode(), 0) << how;
    const auto start = Clock::now();
    EXPECT_THROW(barrier.wait(30s), mp::BrokenBarrierError) << how;
    EXPECT_LT(Clock::now() - start, 2s) << how << ": the dead party was not noticed promptly";
    join_ok(steady);
  }
}

TEST_P(SynchronizeTest, BarrierPartyThatExitsCleanlyLeavesIt) {
  // A team that finished cleanly is not waited for: a new team can use the barrier.
  mp::Barrier barrier(2);
  auto first = start(&barrier_rounds_then_end, barrier, 2, std::string("exit0"));
  barrier.wait(30s);
  barrier.wait(30s);
  join_ok(first);
  auto second = start(&barrier_rounds, barrier, 3);
  for (int i = 0; i < 3; ++i) ASSERT_NO_THROW(barrier.wait(30s)) << "round " << i;
  join_ok(second);
  EXPECT_FALSE(barrier.broken());
}

TEST_P(SynchronizeTest, BarrierAbortWakesWaitingChild) {
  mp::Barrier barrier(2);
  auto child = start(&wait_at_barrier_forever, barrier);
  ASSERT_EQ(wait_for_waiters(barrier, 1), 1);
  barrier.abort();
  ASSERT_TRUE(child.join(kJoinLimit));
  EXPECT_EQ(child.exitcode(), 7);  // BrokenBarrierError
  EXPECT_TRUE(barrier.broken());
  EXPECT_THROW(barrier.wait(), mp::BrokenBarrierError);
}

// ---- handles across processes ----

TEST_P(SynchronizeTest, HandleCreatedAfterChildStartedArrivesInPickle) {
  mp_test::TempDir dir;
  const std::string path = dir.file("event");
  auto child = start(&load_event_from_file_and_set, path);
  mp::Event event;  // created after the child started
  mp_test::write_file(path, mp::pickle::dumps(event));
  EXPECT_TRUE(event.wait(30s));
  join_ok(child);
}

TEST_P(SynchronizeTest, HandlesInsidePickledMessage) {
  mp_test::TempDir dir;
  const std::string path = dir.file("message");
  auto a = start(&load_lock_message_and_increment, path, 5000);
  auto b = start(&load_lock_message_and_increment, path, 5000);
  mp::Lock lock;
  const shared_ref counter = make_shared_plain<int>();
  mp_test::write_file(path, mp::pickle::dumps(std::tuple<mp::Lock, shared_ref>(lock, counter)));
  increment_under_lock(lock, counter, 5000);
  join_ok(a);
  join_ok(b);
  EXPECT_EQ(*shared_at<int>(counter), 15000);
  mp::detail::heap_free(counter);
}

TEST_P(SynchronizeTest, HandlesCreatedBeforeAndAfterFirstChild) {
  mp::Event before;
  mp::Event before_done;
  auto first = start(&wait_event_then_set, before, before_done);
  mp::Event after;  // the arena already exists and a child runs
  mp::Event after_done;
  auto second = start(&wait_event_then_set, after, after_done);
  before.set();
  after.set();
  EXPECT_TRUE(before_done.wait(30s));
  EXPECT_TRUE(after_done.wait(30s));
  join_ok(first);
  join_ok(second);
}

TEST_P(SynchronizeTest, NothingInDevShm) {
  auto listing = [] {
    std::set<std::string> names;
    std::error_code ec;
    for (auto& entry : std::filesystem::directory_iterator("/dev/shm", ec))
      names.insert(entry.path().filename().string());
    return names;
  };
  const auto before = listing();
  {
    mp::Lock lock;
    mp::RLock rlock;
    mp::Semaphore sem(2);
    mp::Condition cond;
    mp::Event ping, pong;
    mp::Barrier barrier(2);
    auto child = start(&wait_event_then_set, ping, pong);
    ping.set();
    EXPECT_TRUE(pong.wait(30s));
    join_ok(child);
  }
  EXPECT_EQ(listing(), before);
}

INSTANTIATE_TEST_SUITE_P(StartMethods, SynchronizeTest,
                         ::testing::ValuesIn(mp_test::start_methods()), mp_test::method_name);

// ---- in one process (threads): timeouts, errors, C++ lockable use ----

template <class Duration>
void expect_not_early(Clock::time_point start, Duration timeout) {
  EXPECT_GE(Clock::now() - start, timeout);
}

TEST(SynchronizeLocal, LockTimeoutNeverReturnsEarly) {
  mp::Lock lock;
  ASSERT_TRUE(lock.acquire());
  for (auto timeout : {1ms, 30ms, 120ms}) {
    const auto start = Clock::now();
    EXPECT_FALSE(lock.acquire(true, timeout));
    expect_not_early(start, timeout);
  }
  const auto start = Clock::now();
  EXPECT_FALSE(lock.acquire(false, 10s));  // block = false ignores the timeout
  EXPECT_LT(Clock::now() - start, kPromptly);
  EXPECT_FALSE(lock.try_lock());
  EXPECT_FALSE(lock.try_lock_for(5ms));
  EXPECT_FALSE(lock.try_lock_until(std::chrono::system_clock::now() + 5ms));
  lock.release();
  EXPECT_THROW(lock.release(), std::invalid_argument);
  EXPECT_TRUE(lock.try_lock_for(5ms));
  lock.unlock();
}

TEST(SynchronizeLocal, LockedSaysWhetherAnyoneHoldsTheLock) {
  mp::Lock lock;
  EXPECT_FALSE(lock.locked());
  lock.acquire();
  EXPECT_TRUE(lock.locked());
  bool seen_by_other_thread = false;
  std::thread([&] { seen_by_other_thread = lock.locked(); }).join();
  EXPECT_TRUE(seen_by_other_thread);
  lock.release();
  EXPECT_FALSE(lock.locked());

  mp::RLock rlock;
  EXPECT_FALSE(rlock.locked());
  rlock.acquire();
  rlock.acquire();
  std::thread([&] { seen_by_other_thread = rlock.locked(); }).join();
  EXPECT_TRUE(seen_by_other_thread) << "locked() is about any owner, not the caller";
  rlock.release();
  EXPECT_TRUE(rlock.locked()) << "one recursion level is still held";
  rlock.release();
  EXPECT_FALSE(rlock.locked());
}

TEST(SynchronizeLocal, RLockRecursionAndOwnership) {
  mp::RLock lock;
  EXPECT_THROW(lock.release(), std::logic_error);
  ASSERT_TRUE(lock.acquire());
  ASSERT_TRUE(lock.acquire(false));
  ASSERT_TRUE(lock.acquire(true, 1ms));
  std::thread other([&] {
    EXPECT_THROW(lock.release(), std::logic_error);
    const auto start = Clock::now();
    EXPECT_FALSE(lock.acquire(true, 20ms));
    expect_not_early(start, 20ms);
  });
  other.join();
  lock.release();
  lock.release();
  lock.release();
  EXPECT_THROW(lock.release(), std::logic_error);
  std::thread taker([&] {
    EXPECT_TRUE(lock.acquire(false));
    lock.release();
  });
  taker.join();
}

TEST(SynchronizeLocal, SemaphoreCountsAndTimesOut) {
  EXPECT_THROW(mp::Semaphore(-1), std::invalid_argument);
  mp::Semaphore sem(2);
  EXPECT_EQ(sem.get_value(), 2);
  EXPECT_TRUE(sem.acquire());
  EXPECT_TRUE(sem.acquire(false));
  EXPECT_EQ(sem.get_value(), 0);
  EXPECT_FALSE(sem.acquire(false));
  const auto start = Clock::now();
  EXPECT_FALSE(sem.acquire(true, 50ms));
  expect_not_early(start, 50ms);
  sem.release();
  sem.release();
  sem.release();  // an unbounded semaphore may go above its initial value
  EXPECT_EQ(sem.get_value(), 3);
}

TEST(SynchronizeLocal, BoundedSemaphoreRefusesOverRelease) {
  mp::BoundedSemaphore sem(2);
  EXPECT_THROW(sem.release(), std::invalid_argument);
  EXPECT_EQ(sem.get_value(), 2);
  ASSERT_TRUE(sem.acquire());
  sem.release();
  EXPECT_THROW(sem.release(), std::invalid_argument);
  EXPECT_EQ(sem.get_value(), 2);
}

TEST(SynchronizeLocal, SemaphoreWakesThreadWaiter) {
  mp::Semaphore sem(0);
  std::thread waiter([&] { EXPECT_TRUE(sem.acquire(true, 30s)); });
  sem.release();
  waiter.join();
  EXPECT_EQ(sem.get_value(), 0);
}

TEST(SynchronizeLocal, EventTimeoutAndFlag) {
  mp::Event event;
  EXPECT_FALSE(event.is_set());
  for (auto timeout : {0ms, 1ms, 60ms}) {
    const auto start = Clock::now();
    EXPECT_FALSE(event.wait(timeout));
    expect_not_early(start, timeout);
  }
  event.set();
  EXPECT_TRUE(event.is_set());
  EXPECT_TRUE(event.wait());
  EXPECT_TRUE(event.wait(0ms));
  event.clear();
  EXPECT_FALSE(event.is_set());
  std::thread setter([&] { event.set(); });
  EXPECT_TRUE(event.wait(30s));
  setter.join();
}

TEST(SynchronizeLocal, ConditionWaitTimeoutAndMisuse) {
  mp::Condition cond;
  EXPECT_THROW(cond.wait(1ms), std::logic_error);
  EXPECT_THROW(cond.notify(), std::logic_error);
  EXPECT_THROW(cond.notify_all(), std::logic_error);
  std::unique_lock lock(cond);
  for (auto timeout : {0ms, 1ms, 40ms}) {
    const auto start = Clock::now();
    EXPECT_FALSE(cond.wait(timeout));
    expect_not_early(start, timeout);
  }
  const auto start = Clock::now();
  EXPECT_FALSE(cond.wait_for([] { return false; }, 30ms));
  expect_not_early(start, 30ms);
  EXPECT_TRUE(cond.wait_for([] { return true; }, 0ms));
  cond.notify();  // nobody waits: harmless
}

TEST(SynchronizeLocal, ConditionRestoresRecursionLevel) {
  mp::RLock rlock;
  mp::Condition cond(rlock);
  std::atomic<bool> flag{false};
  rlock.acquire();
  rlock.acquire();  // level 2: wait() must release both and restore both
  std::thread notifier([&] {
    std::scoped_lock lock(cond);
    flag = true;
    cond.notify_all();
  });
  EXPECT_TRUE(cond.wait_for([&] { return flag.load(); }, 30s));
  notifier.join();
  rlock.release();
  rlock.release();
  EXPECT_THROW(rlock.release(), std::logic_error);
}

TEST(SynchronizeLocal, StandardLockingToolsWork) {
  mp::Lock a;
  mp::RLock b;
  mp::Semaphore c(1);
  {
    std::scoped_lock all(a, b, c);
    EXPECT_FALSE(a.try_lock());
    EXPECT_EQ(c.get_value(), 0);
  }
  EXPECT_EQ(c.get_value(), 1);
  {
    std::unique_lock lock(a, 10ms);
    EXPECT_TRUE(lock.owns_lock());
    std::unique_lock again(a, std::defer_lock);
    EXPECT_FALSE(again.try_lock_for(5ms));
  }
  // std::condition_variable_any with an mp::Lock between threads.
  std::condition_variable_any cv;
  int stage = 0;
  std::thread worker([&] {
    std::unique_lock lock(a);
    cv.wait(lock, [&] { return stage == 1; });
    stage = 2;
    cv.notify_all();
  });
  {
    std::unique_lock lock(a);
    stage = 1;
    cv.notify_all();
    EXPECT_TRUE(cv.wait_for(lock, 30s, [&] { return stage == 2; }));
  }
  worker.join();
}

TEST(SynchronizeLocal, BarrierTimeoutBreaksAndResetRepairs) {
  mp::Barrier barrier(2);
  EXPECT_EQ(barrier.parties(), 2);
  const auto start = Clock::now();
  EXPECT_THROW(barrier.wait(50ms), mp::BrokenBarrierError);
  expect_not_early(start, 50ms);
  EXPECT_TRUE(barrier.broken());
  EXPECT_EQ(barrier.n_waiting(), 0);
  EXPECT_THROW(barrier.wait(1s), mp::BrokenBarrierError);
  barrier.reset();
  EXPECT_FALSE(barrier.broken());
  // The default timeout given at construction.
  mp::Barrier with_default(2, nullptr, 30ms);
  EXPECT_THROW(with_default.wait(), mp::BrokenBarrierError);
  EXPECT_THROW(mp::Barrier(0), std::invalid_argument);
  mp::Barrier single(1);
  EXPECT_EQ(single.wait(), 0);
}

TEST(SynchronizeLocal, BarrierResetBreaksCurrentWaiters) {
  mp::Barrier barrier(3);
  std::atomic<int> broken{0};
  std::vector<std::thread> threads;
  for (int i = 0; i < 2; ++i)
    threads.emplace_back([&] {
      try {
        barrier.wait(30s);
      } catch (const mp::BrokenBarrierError&) {
        ++broken;
      }
    });
  ASSERT_EQ(wait_for_waiters(barrier, 2), 2);
  barrier.reset();
  for (auto& t : threads) t.join();
  EXPECT_EQ(broken.load(), 2);
  EXPECT_FALSE(barrier.broken());
  // Usable again: three threads pass.
  std::vector<std::thread> again;
  std::atomic<int> index_sum{0};
  for (int i = 0; i < 3; ++i) again.emplace_back([&] { index_sum += barrier.wait(30s); });
  for (auto& t : again) t.join();
  EXPECT_EQ(index_sum.load(), 0 + 1 + 2);
}

void throwing_action() { throw std::runtime_error("action failed"); }

TEST(SynchronizeLocal, BarrierActionStateLivesOnInItsProcess) {
  mp_test::TempDir dir;
  const std::string path = dir.file("marks");
  mp::Barrier barrier(1, AppendMark{path, "local"});
  const mp::Barrier copy = barrier;  // copies share the action
  for (int i = 0; i < 2; ++i) barrier.wait();
  mp::Barrier(copy).wait();
  EXPECT_EQ(mp_test::read_file(path).value_or(""), "local1\nlocal2\nlocal3\n");
  // A stateless lambda is a function object too.
  int before = 0;
  mp::Barrier lambda_barrier(1, [] {});
  EXPECT_EQ(lambda_barrier.wait(), before);
}

TEST(SynchronizeLocal, BarrierActionThatThrowsBreaksTheBarrier) {
  // The last to arrive runs the action and gets its exception; the other party gets
  // BrokenBarrierError.
  mp::Barrier barrier(2, &throwing_action);
  std::atomic<int> action_errors{0}, broken_errors{0};
  auto party = [&] {
    try {
      barrier.wait(30s);
    } catch (const mp::BrokenBarrierError&) {
      ++broken_errors;
    } catch (const std::runtime_error&) {
      ++action_errors;
    }
  };
  std::thread other(party);
  party();
  other.join();
  EXPECT_EQ(action_errors.load(), 1);
  EXPECT_EQ(broken_errors.load(), 1);
  EXPECT_TRUE(barrier.broken());
}

TEST(SynchronizeLocal, HandlesPickleAndShareTheObject) {
  mp::Lock lock;
  auto copy = mp::pickle::loads<mp::Lock>(mp::pickle::dumps(lock));
  EXPECT_EQ(copy.ref().offset, lock.ref().offset);
  ASSERT_TRUE(copy.acquire(false));
  EXPECT_FALSE(lock.acquire(false));
  lock.release();
  mp::Condition cond(mp::Lock{});
  auto cond_copy = mp::pickle::loads<mp::Condition>(mp::pickle::dumps(cond));
  std::scoped_lock held(cond_copy);
  EXPECT_FALSE(cond.try_lock());
  mp::Barrier barrier(2, &throwing_action, 5ms);
  auto barrier_copy = mp::pickle::loads<mp::Barrier>(mp::pickle::dumps(barrier));
  EXPECT_EQ(barrier_copy.parties(), 2);
  EXPECT_THROW(mp::pickle::loads<mp::Event>(mp::pickle::dumps(std::uint64_t{0})),
               mp::UnpicklingError);
}

TEST(SynchronizeLocal, HandleOfFreedObjectOrForeignArenaFailsToLoad) {
  std::string bytes;
  {
    mp::Event event;
    bytes = mp::pickle::dumps(event);
  }
  EXPECT_THROW(mp::pickle::loads<mp::Event>(bytes), mp::UnpicklingError);
  mp::Event live;
  // The same object loaded as another kind.
  EXPECT_THROW(mp::pickle::loads<mp::Semaphore>(mp::pickle::dumps(live)), mp::UnpicklingError);
  // An arena this process does not map.
  shared_ref foreign = live.ref();
  foreign.arena ^= 1;
  std::string forged = mp::pickle::dumps(live);
  forged.replace(forged.size() - 24, 8, reinterpret_cast<const char*>(&foreign.arena), 8);
  EXPECT_THROW(mp::pickle::loads<mp::Event>(forged), mp::UnpicklingError);
}

// A forked child that calls std::exit runs static destructors on byte copies of the
// parent's handles: they must not drop the parent's references.
std::optional<mp::Event> g_parent_event;

void exit_normally() { std::exit(0); }

TEST(SynchronizeFork, ForkedChildExitDoesNotFreeParentObjects) {
  g_parent_event.emplace();
  const std::string bytes = mp::pickle::dumps(*g_parent_event);
  for (int i = 0; i < 3; ++i) {
    mp::Process child({.start_method = "fork"}, &exit_normally);
    child.start();
    ASSERT_TRUE(child.join(kJoinLimit));
    ASSERT_EQ(child.exitcode(), 0);
  }
  // Still alive: loading a reference to it works.
  EXPECT_NO_THROW(mp::pickle::loads<mp::Event>(bytes));
  g_parent_event.reset();
  EXPECT_THROW(mp::pickle::loads<mp::Event>(bytes), mp::UnpicklingError);
}

}  // namespace
