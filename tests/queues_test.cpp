// Tests for <mp/queues.hpp>. Tests that start processes run once per start method
// (fork, spawn). Children get queue handles as Process arguments, report through the
// queues themselves, shared values and exit codes, and are joined with a bound. Nothing
// sleeps to synchronize; the SIGKILL test sleeps only to choose random kill moments.
#include <signal.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <random>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include <mp/pickle.hpp>
#include <mp/process.hpp>
#include <mp/queues.hpp>
#include <mp/sharedctypes.hpp>
#include <mp/synchronize.hpp>

#include "figures.hpp"
#include "heap_arena.hpp"
#include "queue_drain.hpp"
#include "queue_record.hpp"
#include "test_util.hpp"

using namespace std::chrono_literals;

namespace {

constexpr auto kJoinLimit = 120s;

// A user type with serialize().
struct Order {
  std::string customer;
  std::vector<int> items;
  double total = 0;
  template <class Archive>
  void serialize(Archive& ar) {
    ar(customer, items, total);
  }
  bool operator==(const Order&) const = default;
};

// Pickling it throws: put() must throw in the caller.
using Exploding = mp_test::ThrowsOnSave<std::runtime_error>;
// Loading Fussy{"refuse"} throws.
using Fussy = mp_test::SplitSaveLoad<mp::UnpicklingError>;

static_assert(mp::pickle::picklable<mp::Queue<int>> &&
              mp::pickle::picklable<mp::SimpleQueue<Order>> &&
              mp::pickle::picklable<mp::JoinableQueue<std::string>>);

// Bytes whose content depends on (tag, index), so a torn or mixed-up item shows.
std::string pattern(std::uint64_t tag, std::size_t size) {
  std::string bytes(size, '\0');
  std::uint64_t x = tag * 0x9e3779b97f4a7c15ull + 1;
  for (std::size_t i = 0; i < size; ++i) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    bytes[i] = static_cast<char>(x);
  }
  return bytes;
}

// A checksum over a whole item (FNV-1a).
std::uint64_t checksum(const std::string& bytes, std::uint64_t seed) {
  std::uint64_t h = 1469598103934665603ull ^ seed;
  for (unsigned char c : bytes) h = (h ^ c) * 1099511628211ull;
  return h;
}

// ---- single-process behaviour ----

TEST(QueueBasics, FifoOrderOfManyTypes) {
  mp::Queue<int> ints;
  for (int i = 0; i < 1000; ++i) ints.put(i);
  EXPECT_EQ(ints.qsize(), 1000);
  for (int i = 0; i < 1000; ++i) ASSERT_EQ(ints.get(), i);
  EXPECT_TRUE(ints.empty());

  mp::Queue<Order> orders;
  const Order order{"ada", {1, 2, 3}, 9.5};
  orders.put(order);
  orders.put(Order{});
  EXPECT_EQ(orders.get(), order);
  EXPECT_EQ(orders.get(), Order{});
}

TEST(QueueBasics, ItemsOfEverySizeCrossSegmentsIntact) {
  // Sizes around the inline limit (4 KiB) and the 32 KiB segment size, in one stream.
  mp::Queue<std::string> queue;
  std::vector<std::size_t> sizes;
  for (std::size_t size :
       {0, 1, 7, 8, 9, 100, 4070, 4080, 4088, 4089, 4096, 5000, 32700, 40000, 200000})
    sizes.push_back(size);
  for (int round = 0; round < 30; ++round)
    for (std::size_t size : sizes) queue.put(pattern(size + 7 * round, size));
  for (int round = 0; round < 30; ++round)
    for (std::size_t size : sizes) ASSERT_EQ(queue.get_nowait(), pattern(size + 7 * round, size));
  EXPECT_THROW(queue.get_nowait(), mp::Empty);
}

TEST(QueueBasics, EmptyAndTimeout) {
  mp::Queue<int> queue;
  EXPECT_TRUE(queue.empty());
  EXPECT_EQ(queue.qsize(), 0);
  EXPECT_FALSE(queue.full());
  EXPECT_THROW(queue.get_nowait(), mp::Empty);
  EXPECT_THROW(queue.get(false), mp::Empty);
  EXPECT_THROW(queue.get(20ms), mp::Empty);
  queue.put(5);
  EXPECT_FALSE(queue.empty());
  EXPECT_EQ(queue.get(20ms), 5);
}

TEST(QueueBasics, BoundedQueueIsFull) {
  mp::Queue<int> queue(2);
  EXPECT_EQ(queue.maxsize(), 2);
  queue.put(1);
  queue.put_nowait(2);
  EXPECT_TRUE(queue.full());
  EXPECT_EQ(queue.qsize(), 2);
  EXPECT_THROW(queue.put_nowait(3), mp::Full);
  EXPECT_THROW(queue.put(3, 20ms), mp::Full);
  EXPECT_THROW(queue.put(3, false), mp::Full);
  EXPECT_EQ(queue.get(), 1);
  EXPECT_FALSE(queue.full());
  queue.put(3, 20ms);
  EXPECT_EQ(queue.get(), 2);
  EXPECT_EQ(queue.get(), 3);
  EXPECT_TRUE(queue.empty());
}

TEST(QueueBasics, ThrowingSerializeThrowsInCallerAndPutsNothing) {
  mp::Queue<Exploding> queue;
  try {
    queue.put(Exploding{});
    FAIL() << "put did not throw";
  } catch (const std::runtime_error& error) {
    EXPECT_NE(std::string(error.what()).find("save refused"), std::string::npos) << error.what();
  }
  EXPECT_TRUE(queue.empty());
  EXPECT_EQ(queue.qsize(), 0);
}

TEST(QueueBasics, CloseAffectsThisHandleOnly) {
  mp::Queue<int> queue;
  mp::Queue<int> other = queue;
  queue.put(1);
  queue.close();
  queue.join_thread();
  queue.cancel_join_thread();
  EXPECT_THROW(queue.put(2), std::invalid_argument);
  EXPECT_THROW(queue.get(), std::invalid_argument);
  other.put(3);
  EXPECT_EQ(other.get(), 1);
  EXPECT_EQ(other.get(), 3);

  mp::SimpleQueue<int> simple;
  simple.close();
  EXPECT_THROW(simple.put(1), std::invalid_argument);
}

TEST(QueueBasics, ItemWhoseLoadThrowsIsConsumedAndThrows) {
  // As Python's get(): an item that cannot be unpickled is gone, the error is raised.
  mp::Queue<Fussy> queue;
  queue.put(Fussy{"refuse"});
  queue.put(Fussy{"2"});
  EXPECT_THROW(queue.get(), mp::UnpicklingError);
  EXPECT_EQ(queue.get().text, "2");
  EXPECT_TRUE(queue.empty());
}

TEST(QueueBasics, HandlePicklesToTheSameQueue) {
  mp::Queue<std::string> queue(5);
  const auto copy = mp::pickle::loads<mp::Queue<std::string>>(mp::pickle::dumps(queue));
  mp::Queue<std::string> loaded = copy;
  loaded.put("through the copy");
  EXPECT_EQ(queue.get(), "through the copy");
  EXPECT_EQ(loaded.maxsize(), 5);
}

TEST(QueueBasics, DroppedQueueFreesItsItems) {
  // The last handle frees the queue's segments and unread items: the heap's high-water
  // mark stays put over many queues left full.
  auto round = [] {
    mp::Queue<std::string> queue;
    for (int i = 0; i < 20; ++i) queue.put(std::string(300000, 'x'));
    for (int i = 0; i < 3000; ++i) queue.put("small");
  };
  round();
  round();
  const std::uint64_t high_water = mp::detail::heap_main_arena().bump_used();
  for (int i = 0; i < 20; ++i) round();
  EXPECT_EQ(mp::detail::heap_main_arena().bump_used(), high_water);
}

TEST(QueueBasics, SimpleQueue) {
  mp::SimpleQueue<std::string> queue;
  EXPECT_TRUE(queue.empty());
  queue.put("a");
  queue.put(std::string(100000, 'b'));
  EXPECT_FALSE(queue.empty());
  EXPECT_EQ(queue.get(), "a");
  EXPECT_EQ(queue.get(), std::string(100000, 'b'));
  EXPECT_TRUE(queue.empty());
}

TEST(QueueBasics, TaskDoneTooOftenThrows) {
  mp::JoinableQueue<int> queue;
  EXPECT_THROW(queue.task_done(), std::invalid_argument);
  queue.put(1);
  queue.put(2);
  (void)queue.get();
  queue.task_done();
  (void)queue.get();
  queue.task_done();
  queue.join();  // everything done: returns at once
  EXPECT_THROW(queue.task_done(), std::invalid_argument);
}

TEST(QueueBasics, JoinTimeoutAndUnfinishedTasks) {
  mp::JoinableQueue<int> queue;
  EXPECT_EQ(queue.unfinished_tasks(), 0u);
  EXPECT_TRUE(queue.join(0ns));
  queue.put(1);
  queue.put(2);
  EXPECT_EQ(queue.unfinished_tasks(), 2u);
  const auto start = std::chrono::steady_clock::now();
  EXPECT_FALSE(queue.join(50ms));
  EXPECT_GE(std::chrono::steady_clock::now() - start, 50ms) << "join(timeout) never ends early";
  (void)queue.get();
  EXPECT_EQ(queue.unfinished_tasks(), 2u) << "got, not done: still unfinished";
  queue.task_done();
  EXPECT_EQ(queue.unfinished_tasks(), 1u);
  (void)queue.get();
  queue.task_done();
  EXPECT_EQ(queue.unfinished_tasks(), 0u);
  EXPECT_TRUE(queue.join(0ns));
}

TEST(QueueBasics, ShutdownRefusesPutsAndDrainsGets) {
  // Python 3.13: put() raises ShutDown at once; get() goes on until the queue is empty.
  mp::Queue<int> queue;
  queue.put(1);
  queue.put(2);
  EXPECT_FALSE(queue.is_shutdown());
  queue.shutdown();
  EXPECT_TRUE(queue.is_shutdown());
  EXPECT_THROW(queue.put(3), mp::ShutDown);
  EXPECT_THROW(queue.put_nowait(3), mp::ShutDown);
  EXPECT_EQ(queue.get(), 1);
  EXPECT_EQ(queue.get_nowait(), 2);
  EXPECT_THROW(queue.get(), mp::ShutDown) << "empty and shut down: no waiting";
  EXPECT_THROW(queue.get_nowait(), mp::ShutDown);
  EXPECT_THROW(queue.get(1s), mp::ShutDown);
  queue.shutdown(true);  // again, immediate: harmless
  EXPECT_THROW(queue.put(3), mp::ShutDown);
}

TEST(QueueBasics, ImmediateShutdownDropsItemsAndReleasesJoin) {
  mp::JoinableQueue<std::string> queue;
  queue.put("small");
  queue.put(std::string(100000, 'x'));  // an item block of its own
  (void)queue.get();                    // one task taken, not done
  queue.shutdown(true);
  EXPECT_TRUE(queue.empty());
  EXPECT_THROW(queue.get_nowait(), mp::ShutDown);
  EXPECT_EQ(queue.unfinished_tasks(), 1u) << "the dropped item counts as done, as Python";
  queue.task_done();
  EXPECT_TRUE(queue.join(0ns));
}

TEST(QueueBasics, ShutdownWakesWaitingGetAndPutThreads) {
  mp::Queue<int> empty;
  mp::Queue<int> full(1);
  full.put(0);
  std::atomic<int> shut_down{0};
  std::thread getter([&] {
    try {
      (void)empty.get(30s);
    } catch (const mp::ShutDown&) {
      ++shut_down;
    }
  });
  std::thread putter([&] {
    try {
      full.put(1, 30s);
    } catch (const mp::ShutDown&) {
      ++shut_down;
    }
  });
  std::this_thread::sleep_for(50ms);  // let both threads wait (not needed for correctness)
  const auto start = std::chrono::steady_clock::now();
  empty.shutdown();
  full.shutdown();
  getter.join();
  putter.join();
  EXPECT_EQ(shut_down.load(), 2);
  EXPECT_LT(std::chrono::steady_clock::now() - start, 2s);
}

// ---- child-side functions (free functions: they work with spawn) ----

void put_range(mp::Queue<int> queue, int first, int count) {
  for (int i = first; i < first + count; ++i) queue.put(i);
}

void put_sized(mp::Queue<std::string> queue, std::uint64_t tag, std::size_t size, int count) {
  for (int i = 0; i < count; ++i) queue.put(pattern(tag + static_cast<std::uint64_t>(i), size));
}

// Sums what it gets until it gets -1, then reports (count, sum) on `results`.
void sum_until_sentinel(mp::Queue<int> queue, mp::Queue<std::tuple<long, long>> results) {
  long count = 0;
  long sum = 0;
  for (int value; (value = queue.get()) != -1; ++count) sum += value;
  results.put({count, sum});
}

void joinable_worker(mp::JoinableQueue<int> tasks, mp::Value<long> total) {
  for (;;) {
    const int task = tasks.get();
    if (task >= 0) total.update([&](long& t) { t += task; });
    tasks.task_done();
    if (task < 0) return;
  }
}

// Gets one item and ends as `how` says without task_done(): "throw" (the target
// throws), "kill" (SIGKILL to itself), or "done" (marks it done, then ends cleanly).
void take_one_and_end(mp::JoinableQueue<int> tasks, std::string how) {
  (void)tasks.get();
  if (how == "throw") throw std::runtime_error("consumer failed on its task");
  if (how == "kill") ::raise(SIGKILL);
  tasks.task_done();
}

// One more task, got and done here: join() returns (the queue works on).
void expect_one_more_task_joins(mp::JoinableQueue<int>& tasks) {
  tasks.put(3);
  EXPECT_EQ(tasks.get(), 3);
  tasks.task_done();
  EXPECT_TRUE(tasks.join(5s));
}

void get_and_hand_on(mp::JoinableQueue<int> tasks, mp::Queue<int> handed_on) {
  handed_on.put(tasks.get());
}

void take_and_hang(mp::JoinableQueue<int> tasks, mp::Event got) {
  (void)tasks.get();
  got.set();
  for (;;) ::pause();
}

// Reports each item it gets on `report`, then -1 when get() throws ShutDown.
void get_until_shut_down(mp::Queue<int> queue, mp::Queue<int> report) {
  try {
    for (;;) report.put(queue.get());
  } catch (const mp::ShutDown&) {
    report.put(-1);
  }
}

void simple_echo(mp::SimpleQueue<std::string> in, mp::SimpleQueue<std::string> out) {
  for (std::string text; (text = in.get()) != "stop";) out.put(text + "!");
}

class QueueTest : public mp_test::StartMethodTest<120> {};

TEST_P(QueueTest, ChildPutsParentGetsInOrder) {
  mp::Queue<int> queue;
  auto child = start(&put_range, queue, 0, 5000);
  for (int i = 0; i < 5000; ++i) ASSERT_EQ(queue.get(kJoinLimit), i);
  join_ok(child);
}

TEST_P(QueueTest, ManyProducersManyConsumers) {
  constexpr int kProducers = 3, kConsumers = 3, kEach = 20000;
  mp::Queue<int> queue(64);  // bounded: producers also wait for room
  mp::Queue<std::tuple<long, long>> results;
  std::vector<mp::Process> producers, consumers;
  for (int c = 0; c < kConsumers; ++c)
    consumers.push_back(start(&sum_until_sentinel, queue, results));
  for (int p = 0; p < kProducers; ++p)
    producers.push_back(start(&put_range, queue, p * kEach, kEach));
  for (auto& p : producers) join_ok(p);
  for (int c = 0; c < kConsumers; ++c) queue.put(-1);
  long count = 0, sum = 0;
  for (int c = 0; c < kConsumers; ++c) {
    const auto [n, s] = results.get(kJoinLimit);
    count += n;
    sum += s;
  }
  for (auto& c : consumers) join_ok(c);
  const long total = long{kProducers} * kEach;
  EXPECT_EQ(count, total);
  EXPECT_EQ(sum, total * (total - 1) / 2);
  EXPECT_TRUE(queue.empty());
}

TEST_P(QueueTest, UnboundedPutNeverBlocksChildJoinedBeforeAnyGet) {
  // Python's classic deadlock: a child that put a lot cannot exit until it is read. Here
  // the child puts 100 MB and ends; it is joined before the parent reads anything.
  constexpr std::size_t kItem = 64 * 1024;
  constexpr int kCount = 1600;  // 100 MiB (and ~105 MB)
  mp::Queue<std::string> queue;
  auto child = start(&put_sized, queue, std::uint64_t{1000}, kItem, kCount);
  join_ok(child);
  EXPECT_EQ(queue.qsize(), kCount);
  for (int i = 0; i < kCount; ++i)
    ASSERT_EQ(queue.get_nowait(), pattern(1000 + static_cast<std::uint64_t>(i), kItem)) << i;
  EXPECT_TRUE(queue.empty());
}

TEST_P(QueueTest, HugeItemsThroughBoundedAndUnboundedQueues) {
  constexpr std::size_t kHuge = (65u << 20) + 123;  // over 64 MiB
  for (long maxsize : {1L, 0L}) {
    mp::Queue<std::string> queue(maxsize);
    // Two items: with maxsize 1 the second put waits for the first get.
    auto child = start(&put_sized, queue, std::uint64_t{77}, kHuge, 2);
    for (std::uint64_t i = 0; i < 2; ++i) {
      const std::string item = queue.get(kJoinLimit);
      ASSERT_EQ(item.size(), kHuge);
      EXPECT_EQ(checksum(item, 0), checksum(pattern(77 + i, kHuge), 0)) << "maxsize " << maxsize;
    }
    join_ok(child);
  }
}

TEST_P(QueueTest, BoundedQueueNeverHoldsMoreThanMaxsize) {
  mp::Queue<int> queue(3);
  auto child = start(&put_range, queue, 0, 3000);
  for (int i = 0; i < 3000; ++i) {
    EXPECT_LE(queue.qsize(), 3);
    ASSERT_EQ(queue.get(kJoinLimit), i);
  }
  join_ok(child);
}

TEST_P(QueueTest, JoinableQueueJoinWaitsForEveryTask) {
  mp::JoinableQueue<int> tasks;
  mp::Value<long> total(0);
  auto worker = start(&joinable_worker, tasks, total);
  long expected = 0;
  for (int i = 0; i < 500; ++i) {
    tasks.put(i);
    expected += i;
  }
  tasks.join();  // returns only once the worker called task_done 500 times
  EXPECT_EQ(total.value(), expected);
  tasks.put(-1);
  tasks.join();
  join_ok(worker);
  EXPECT_THROW(tasks.task_done(), std::invalid_argument);
}

TEST_P(QueueTest, JoinThrowsWhenAConsumerEndsWithUnfinishedTasks) {
  for (const std::string how : {"throw", "kill"}) {
    mp::JoinableQueue<int> tasks;
    tasks.put(1);
    tasks.put(2);
    auto consumer = start(&take_one_and_end, tasks, how);
    ASSERT_TRUE(consumer.join(kJoinLimit));
    EXPECT_NE(consumer.exitcode(), 0) << how;
    (void)tasks.get();  // the other item is got and done here
    tasks.task_done();
    const auto start = std::chrono::steady_clock::now();
    try {
      tasks.join();
      ADD_FAILURE() << how << ": join() returned though a task can never be done";
    } catch (const mp::ConsumerLostError& e) {
      EXPECT_EQ(e.pid(), consumer.pid()) << e.what();
      EXPECT_EQ(e.tasks(), 1u) << e.what();
    }
    EXPECT_LT(std::chrono::steady_clock::now() - start, 2s) << how;
    // The lost task was written off: the queue works on.
    EXPECT_EQ(tasks.unfinished_tasks(), 0u);
    EXPECT_TRUE(tasks.join(0ns));
    expect_one_more_task_joins(tasks);
  }
}

TEST_P(QueueTest, JoinWaitingWhenAConsumerIsKilledThrows) {
  // The joiner is already asleep in join() when the consumer dies.
  mp::JoinableQueue<int> tasks;
  mp::Event got;
  tasks.put(7);
  auto consumer = start(&take_and_hang, tasks, got);
  ASSERT_TRUE(got.wait(kJoinLimit));
  std::thread killer([&] {
    std::this_thread::sleep_for(300ms);  // only so that join() is asleep first
    consumer.kill();
  });
  const auto start = std::chrono::steady_clock::now();
  EXPECT_THROW(tasks.join(), mp::ConsumerLostError);
  EXPECT_LT(std::chrono::steady_clock::now() - start, 300ms + 2s);
  killer.join();
  ASSERT_TRUE(consumer.join(kJoinLimit));
}

TEST_P(QueueTest, ConsumerThatEndsCleanlyDoesNotBreakJoin) {
  mp::JoinableQueue<int> tasks;
  tasks.put(1);
  auto consumer = start(&take_one_and_end, tasks, std::string("done"));
  join_ok(consumer);
  EXPECT_TRUE(tasks.join(5s));
  expect_one_more_task_joins(tasks);
}

TEST_P(QueueTest, TaskDoneByAnotherProcessSettlesTheGettersTask) {
  // The child gets the item and hands it on; the parent marks it done. The child's end
  // must not count as a lost task.
  mp::JoinableQueue<int> tasks;
  mp::Queue<int> handed_on;
  tasks.put(4);
  auto child = start(&get_and_hand_on, tasks, handed_on);
  EXPECT_EQ(handed_on.get(kJoinLimit), 4);
  join_ok(child);
  tasks.task_done();
  EXPECT_EQ(tasks.unfinished_tasks(), 0u);
  EXPECT_TRUE(tasks.join(5s));
}

TEST_P(QueueTest, ShutdownWakesAGetWaitingInAnotherProcess) {
  mp::Queue<int> queue;
  mp::Queue<int> report;
  auto child = start(&get_until_shut_down, queue, report);
  queue.put(5);
  ASSERT_EQ(report.get(kJoinLimit), 5);
  queue.shutdown();
  ASSERT_EQ(report.get(kJoinLimit), -1);  // ShutDown seen in the child
  join_ok(child);
}

TEST_P(QueueTest, SimpleQueueAcrossProcesses) {
  mp::SimpleQueue<std::string> in, out;
  auto child = start(&simple_echo, in, out);
  for (int i = 0; i < 100; ++i) in.put(std::to_string(i));
  in.put("stop");
  for (int i = 0; i < 100; ++i) ASSERT_EQ(out.get(), std::to_string(i) + "!");
  join_ok(child);
  EXPECT_TRUE(out.empty());
}

// ---- SIGKILL: producers and consumers killed at random moments ----

constexpr int kMaxProducerIds = 64;
constexpr int kMaxSeq = 1 << 16;

struct Stamped {
  std::uint32_t producer = 0;
  std::uint32_t seq = 0;
  std::uint64_t sum = 0;  // checksum of payload, seeded with (producer, seq)
  std::string payload;
  template <class Archive>
  void serialize(Archive& ar) {
    ar(producer, seq, sum, payload);
  }
};

std::size_t stamped_size(std::uint32_t seq) {
  return seq % 16 == 0 ? 6000 + seq % 512 : 8 + seq % 200;  // inline and item blocks
}

Stamped make_stamped(std::uint32_t producer, std::uint32_t seq) {
  Stamped item{producer, seq, 0, pattern(producer * 1000003ull + seq, stamped_size(seq))};
  item.sum = checksum(item.payload, item.producer * 65536ull + item.seq);
  return item;
}

bool whole(const Stamped& item) {
  return item.producer < kMaxProducerIds && item.seq < kMaxSeq &&
         item.payload.size() == stamped_size(item.seq) &&
         item.sum == checksum(item.payload, item.producer * 65536ull + item.seq) &&
         item.payload == pattern(item.producer * 1000003ull + item.seq, stamped_size(item.seq));
}

[[noreturn]] void stamping_producer(mp::Queue<Stamped> queue, std::uint32_t producer) {
  for (std::uint32_t seq = 0; seq < kMaxSeq; ++seq) queue.put(make_stamped(producer, seq));
  for (;;) ::pause();
}

// Gets forever; marks each item seen (a second sighting is a duplicate) and counts
// broken ones.
[[noreturn]] void marking_consumer(mp::Queue<Stamped> queue, mp::RawArray<std::uint8_t> seen,
                                   mp::RawArray<int> broken) {
  for (;;) {
    const Stamped item = queue.get();
    if (!whole(item)) {
      std::atomic_ref<int>(broken[0]).fetch_add(1);
      continue;
    }
    std::atomic_ref<std::uint8_t>(seen[item.producer * kMaxSeq + item.seq]).fetch_add(1);
  }
}

TEST_P(QueueTest, SigkilledProducersAndConsumersNeverCorruptOrBlock) {
  constexpr int kRounds = 24;
  mp::Queue<Stamped> queue(200);
  mp::RawArray<std::uint8_t> seen(std::size_t{kMaxProducerIds} * kMaxSeq);
  mp::RawArray<int> broken(1);
  std::mt19937 random(std::random_device{}());

  struct Member {
    mp::Process process;
    bool producer;
  };
  std::vector<Member> members;
  std::uint32_t next_id = 0;
  auto start_member = [&](bool producer) {
    if (producer) return Member{start(&stamping_producer, queue, next_id++), true};
    return Member{start(&marking_consumer, queue, seen, broken), false};
  };
  const auto lifetime =
      std::chrono::duration_cast<std::chrono::milliseconds>(mp_test::child_lifetime(GetParam()));
  for (int i = 0; i < 4; ++i) members.push_back(start_member(i % 2 == 0));

  int consumers_killed = 0;
  for (int round = 0; round < kRounds; ++round) {
    // Not synchronization: a random moment to kill at, while everyone works (however
    // long they take to start).
    std::this_thread::sleep_for(
        std::chrono::milliseconds(2 + random() % (30 + static_cast<unsigned>(lifetime.count()))));
    Member& victim = members[random() % members.size()];
    victim.process.kill();
    ASSERT_TRUE(victim.process.join(30s));
    ASSERT_EQ(victim.process.exitcode(), -SIGKILL) << "died of something else";
    consumers_killed += victim.producer ? 0 : 1;
    victim = start_member(victim.producer);
  }
  for (auto& member : members) {
    member.process.kill();
    ASSERT_TRUE(member.process.join(30s));
    ASSERT_EQ(member.process.exitcode(), -SIGKILL);
    consumers_killed += member.producer ? 0 : 1;
  }

  // Drain: every item whole, each producer's items in order, nothing seen twice.
  std::vector<std::int64_t> last(kMaxProducerIds, -1);
  long drained = 0;
  for (const Stamped& item : mp_test::drain_nowait(queue)) {
    ASSERT_TRUE(whole(item)) << "a torn item from producer " << item.producer;
    ASSERT_GT(static_cast<std::int64_t>(item.seq), last[item.producer]) << "out of order";
    last[item.producer] = item.seq;
    ++seen[item.producer * kMaxSeq + item.seq];
    ++drained;
  }
  EXPECT_EQ(broken[0], 0) << "consumers got torn items";
  EXPECT_TRUE(queue.empty());
  EXPECT_EQ(queue.qsize(), 0);

  // Nothing duplicated; nothing lost but what killed consumers held (one item each at
  // most): a producer puts in order, so every item before its last one seen was put.
  long delivered = 0, missing = 0;
  for (std::uint32_t p = 0; p < next_id; ++p) {
    std::int64_t highest = -1;
    for (std::int64_t s = 0; s < kMaxSeq; ++s) {
      const int count = seen[p * kMaxSeq + static_cast<std::size_t>(s)];
      ASSERT_LE(count, 1) << "producer " << p << " item " << s << " delivered twice";
      if (count) highest = s;
    }
    for (std::int64_t s = 0; s <= highest; ++s) {
      const bool got = seen[p * kMaxSeq + static_cast<std::size_t>(s)] != 0;
      delivered += got;
      missing += !got;
    }
  }
  EXPECT_LE(missing, consumers_killed);
  EXPECT_GT(delivered, 0);

  // The queue still works for everyone.
  queue.put(make_stamped(0, 1), 10s);
  EXPECT_TRUE(whole(queue.get(10s)));
  mp_test::record_figure("queue_processes_sigkilled", kRounds + 4);
  mp_test::record_figure("queue_items_checked", delivered);
}

// ---- SIGKILL at each step of put and get (deterministic) ----

using mp::detail::queue_step;

std::atomic<int> crash_step{0};
void crash_at_step(queue_step step) {
  if (static_cast<int>(step) == crash_step.load()) ::raise(SIGKILL);
}

// Gets `skip` items normally, then dies at `step` of the next put (item non-empty) or get.
void die_at_step(mp::JoinableQueue<std::string> queue, int step, int skip, std::string item) {
  for (int i = 0; i < skip; ++i) (void)queue.get_nowait();
  crash_step = step;
  mp::detail::queue_step_hook = &crash_at_step;
  if (item.empty())
    (void)queue.get_nowait();
  else
    queue.put(item);
  std::exit(3);  // the step was never reached
}

std::string item_of(int index, std::size_t size) {
  return pattern(static_cast<std::uint64_t>(index), size);
}

TEST_P(QueueTest, PutKilledAtEveryStepLeavesConsistentQueue) {
  struct Case {
    queue_step step;
    int prefill;       // items put before, of 1000 bytes (31 fill a segment)
    std::size_t size;  // of the child's item
  };
  const std::vector<Case> cases = {
      {queue_step::put_written, 1, 10},     {queue_step::put_journaled, 1, 10},
      {queue_step::put_counted, 1, 10},     {queue_step::put_committed, 1, 10},
      {queue_step::put_written, 1, 9000},   {queue_step::put_counted, 1, 9000},
      {queue_step::put_committed, 1, 9000}, {queue_step::put_segment_linked, 31, 1000},
      {queue_step::put_counted, 31, 1000},  {queue_step::put_committed, 31, 1000},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE("step " + std::to_string(static_cast<int>(c.step)) + ", prefill " +
                 std::to_string(c.prefill) + ", size " + std::to_string(c.size));
    mp::JoinableQueue<std::string> queue;
    std::vector<std::string> expected;
    for (int i = 0; i < c.prefill; ++i) {
      expected.push_back(item_of(i, 1000));
      queue.put(expected.back());
    }
    const std::string child_item = item_of(100, c.size);
    auto child = start(&die_at_step, queue, static_cast<int>(c.step), 0, child_item);
    ASSERT_TRUE(child.join(kJoinLimit));
    ASSERT_EQ(child.exitcode(), -SIGKILL) << "the child did not reach the step";
    if (c.step == queue_step::put_committed) expected.push_back(child_item);
    expected.push_back("after");
    queue.put("after");  // takes the dead producer's lock over
    EXPECT_EQ(queue.qsize(), static_cast<std::int64_t>(expected.size()));
    for (const std::string& want : expected) ASSERT_EQ(queue.get_nowait(), want);
    EXPECT_THROW(queue.get_nowait(), mp::Empty);
    EXPECT_EQ(queue.qsize(), 0);
    // The item count is exact: as many task_done() calls as items, not one more.
    for (std::size_t i = 0; i < expected.size(); ++i) queue.task_done();
    EXPECT_THROW(queue.task_done(), std::invalid_argument);
    queue.join();
  }
}

TEST_P(QueueTest, GetKilledAtEveryStepLeavesConsistentQueue) {
  struct Case {
    queue_step step;
    int skip;  // items got before the fatal get (31 of 1000 bytes fill a segment)
  };
  const std::vector<Case> cases = {
      {queue_step::get_decoded, 0},       {queue_step::get_journaled, 0},
      {queue_step::get_committed, 0},     {queue_step::get_counted, 0},
      {queue_step::get_next_segment, 31},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE("step " + std::to_string(static_cast<int>(c.step)));
    mp::JoinableQueue<std::string> queue;
    std::vector<std::string> items;
    for (int i = 0; i < c.skip; ++i) items.push_back(item_of(i, 1000));
    // The one the child dies getting: in an item block, or (after a full segment) inline
    // but too large for the rest of the segment, so that the get crosses to the next one.
    items.push_back(item_of(50, c.skip ? 3000 : 9000));
    items.push_back(item_of(51, 10));
    items.push_back(item_of(52, 10));
    for (const std::string& item : items) queue.put(item);
    auto child = start(&die_at_step, queue, static_cast<int>(c.step), c.skip, std::string());
    ASSERT_TRUE(child.join(kJoinLimit));
    ASSERT_EQ(child.exitcode(), -SIGKILL) << "the child did not reach the step";
    const bool taken = c.step == queue_step::get_committed || c.step == queue_step::get_counted;
    std::size_t next = static_cast<std::size_t>(c.skip) + (taken ? 1 : 0);
    ASSERT_EQ(queue.get_nowait(), items[next]);  // takes the dead consumer's lock over
    ++next;
    EXPECT_EQ(queue.qsize(), static_cast<std::int64_t>(items.size() - next));
    for (; next < items.size(); ++next) ASSERT_EQ(queue.get_nowait(), items[next]);
    EXPECT_THROW(queue.get_nowait(), mp::Empty);
    EXPECT_EQ(queue.qsize(), 0);
    queue.put("still works");
    EXPECT_EQ(queue.get_nowait(), "still works");
  }
}

// ---- load: 4 producers and 4 consumers move 1,000,000 items through one queue ----

constexpr std::uint64_t kLoadItems = 1'000'000;
constexpr int kLoadSides = 4;

void load_producer(mp::Queue<std::uint64_t> queue, std::uint64_t first, std::uint64_t count) {
  for (std::uint64_t v = first; v < first + count; ++v) queue.put(v);
}

// Gets until a 0, then reports (count, sum, sum of squares).
void load_consumer(mp::Queue<std::uint64_t> queue,
                   mp::Queue<std::tuple<std::uint64_t, std::uint64_t, std::uint64_t>> results) {
  std::uint64_t count = 0, sum = 0, squares = 0;
  for (std::uint64_t v; (v = queue.get()) != 0;) {
    ++count;
    sum += v;
    squares += v * v;
  }
  results.put({count, sum, squares});
}

TEST_P(QueueTest, LoadFourProducersFourConsumersMillionItems) {
  mp::Queue<std::uint64_t> queue;
  mp::Queue<std::tuple<std::uint64_t, std::uint64_t, std::uint64_t>> results;
  std::vector<mp::Process> consumers, producers;
  for (int c = 0; c < kLoadSides; ++c) consumers.push_back(start(&load_consumer, queue, results));
  const auto begin = std::chrono::steady_clock::now();
  constexpr std::uint64_t kEach = kLoadItems / kLoadSides;
  for (int p = 0; p < kLoadSides; ++p)
    producers.push_back(
        start(&load_producer, queue, 1 + kEach * static_cast<std::uint64_t>(p), kEach));
  for (auto& p : producers) join_ok(p);
  for (int c = 0; c < kLoadSides; ++c) queue.put(0);
  std::uint64_t count = 0, sum = 0, squares = 0;
  for (int c = 0; c < kLoadSides; ++c) {
    const auto [n, s, q] = results.get(kJoinLimit);
    count += n;
    sum += s;
    squares += q;
  }
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - begin).count();
  for (auto& c : consumers) join_ok(c);
  std::uint64_t want_sum = 0, want_squares = 0;
  for (std::uint64_t v = 1; v <= kLoadItems; ++v) {
    want_sum += v;
    want_squares += v * v;
  }
  EXPECT_EQ(count, kLoadItems);
  EXPECT_EQ(sum, want_sum);
  EXPECT_EQ(squares, want_squares);
  EXPECT_TRUE(queue.empty());
  mp_test::record_figure("queue_load_items_" + GetParam(), static_cast<std::int64_t>(kLoadItems));
  mp_test::record_figure("queue_load_items_per_s_" + GetParam(),
                         static_cast<std::int64_t>(static_cast<double>(kLoadItems) / seconds));
}

INSTANTIATE_TEST_SUITE_P(StartMethods, QueueTest, ::testing::ValuesIn(mp_test::start_methods()),
                         mp_test::method_name);

}  // namespace
