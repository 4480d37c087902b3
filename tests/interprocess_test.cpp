// Tests for <mp/interprocess.hpp>: Boost.Interprocess's segment manager and containers in
// mp's shared memory. Tests that start processes run once per start method.
#include <gtest/gtest.h>

#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <mp/interprocess.hpp>
#include <mp/pickle.hpp>
#include <mp/process.hpp>
#include <mp/queues.hpp>
#include <mp/synchronize.hpp>

#include "test_util.hpp"

using namespace std::chrono_literals;

namespace {

using Counter = std::atomic<std::uint64_t>;
using Map = mp::ipc::map<std::int64_t, std::int64_t>;

// ---- One process ----

TEST(InterprocessTest, ContainersAndNamedObjects) {
  mp::ManagedSharedMemory segment(mp::create_only, 1 << 20);
  mp_test::SegmentUnlinker cleanup{segment.name()};
  auto* manager = segment.get_segment_manager();
  auto* numbers = segment.construct<mp::ipc::vector<double>>("numbers")(manager);
  for (int i = 0; i < 1000; ++i) numbers->push_back(i * 0.5);
  auto* names = segment.construct<mp::ipc::map<int, mp::ipc::string>>("names")(manager);
  names->emplace(1, mp::ipc::string("one", manager));
  names->emplace(2, mp::ipc::string(std::string(200, 'x').c_str(), manager));
  auto* queue = segment.construct<mp::ipc::deque<int>>("deque")(manager);
  queue->push_front(1);
  queue->push_back(2);
  auto* hashed = segment.construct<mp::ipc::unordered_map<std::int64_t, int>>("hashed")(
      0, boost::hash<std::int64_t>(), std::equal_to<std::int64_t>(), manager);
  for (int i = 0; i < 500; ++i) (*hashed)[i * 7] = i;

  mp::ManagedSharedMemory attached(mp::open_only, segment.name());
  auto* seen = attached.find<mp::ipc::vector<double>>("numbers");
  ASSERT_NE(seen, nullptr);
  ASSERT_EQ(seen->size(), 1000u);
  EXPECT_EQ((*seen)[999], 499.5);
  auto* seen_names = attached.find<mp::ipc::map<int, mp::ipc::string>>("names");
  ASSERT_NE(seen_names, nullptr);
  EXPECT_EQ(seen_names->at(1), "one");
  EXPECT_EQ(seen_names->at(2).size(), 200u);
  EXPECT_EQ(attached.find<mp::ipc::deque<int>>("deque")->front(), 1);
  auto* seen_hashed = attached.find<mp::ipc::unordered_map<std::int64_t, int>>("hashed");
  ASSERT_NE(seen_hashed, nullptr);
  EXPECT_EQ(seen_hashed->size(), 500u);
  EXPECT_EQ(seen_hashed->at(7 * 321), 321);
  EXPECT_EQ(attached.find<int>("missing"), nullptr);
  int* answer = attached.find_or_construct<int>("answer")(42);
  EXPECT_EQ(*segment.find_or_construct<int>("answer")(0), 42);
  EXPECT_EQ(attached.find<int>("answer"), answer);
  EXPECT_TRUE(segment.destroy<int>("answer"));
  EXPECT_FALSE(segment.destroy<int>("answer"));
  EXPECT_FALSE(segment.recovered());
  segment.unlink();
  EXPECT_FALSE(mp_test::segment_exists(segment.name()));
}

TEST(InterprocessTest, BadSizesAndForeignSegmentsAreRefused) {
  EXPECT_THROW(mp::ManagedSharedMemory(mp::create_only, 100), std::invalid_argument);
  mp::SharedMemory plain(mp::create_only, 4096);
  mp_test::SegmentUnlinker cleanup{plain.name()};
  EXPECT_THROW(mp::ManagedSharedMemory(mp::open_only, plain.name()), std::invalid_argument);
  // A managed header whose mutex offsets point elsewhere.
  mp::ManagedSharedMemory segment(mp::create_only, 1 << 16);
  mp_test::SegmentUnlinker cleanup2{segment.name()};
  auto* header = reinterpret_cast<mp::detail::managed_header*>(segment.shm().buf().data());
  const std::uint64_t saved = header->mutex_offset[1];
  header->mutex_offset[1] = 1 << 20;
  EXPECT_THROW(mp::ManagedSharedMemory(mp::open_only, segment.name()), std::invalid_argument);
  header->mutex_offset[1] = 8;
  EXPECT_THROW(mp::ManagedSharedMemory(mp::open_only, segment.name()), std::invalid_argument);
  header->mutex_offset[1] = saved;
  header->ready.store(0);
  EXPECT_THROW(mp::ManagedSharedMemory(mp::open_only, segment.name()), std::invalid_argument);
  header->ready.store(1);
  EXPECT_NO_THROW(mp::ManagedSharedMemory(mp::open_only, segment.name()));
  EXPECT_THROW(mp::ManagedSharedMemory().find<int>("x"), std::logic_error);
  EXPECT_THROW(mp::ManagedSharedMemory(mp::open_only, "mp-no-such-segment-here"),
               std::system_error);
  plain.unlink();
  segment.unlink();
}

TEST(InterprocessTest, ExhaustionThrowsAndLeavesTheSegmentUsable) {
  mp::ManagedSharedMemory segment(mp::create_only, 64 * 1024);
  mp_test::SegmentUnlinker cleanup{segment.name()};
  auto* manager = segment.get_segment_manager();
  auto* numbers = segment.construct<mp::ipc::vector<std::int64_t>>("numbers")(manager);
  std::size_t pushed = 0;
  try {
    for (;; ++pushed) numbers->push_back(static_cast<std::int64_t>(pushed));
  } catch (const boost::interprocess::bad_alloc&) {
  }
  ASSERT_GT(pushed, 100u);
  ASSERT_EQ(numbers->size(), pushed);  // the failed growth changed nothing
  for (std::size_t i = 0; i < pushed; ++i) ASSERT_EQ((*numbers)[i], std::int64_t(i));
  EXPECT_THROW(segment.allocate(1 << 20), boost::interprocess::bad_alloc);
  EXPECT_THROW(segment.construct<char>("big")[1 << 20](0), boost::interprocess::bad_alloc);
  EXPECT_EQ(segment.find<char>("big"), nullptr);
  // Freed memory is allocated again; named objects still work.
  numbers->clear();
  numbers->shrink_to_fit();
  void* block = segment.allocate(16 * 1024);
  EXPECT_NE(block, nullptr);
  segment.deallocate(block);
  EXPECT_NE(segment.construct<int>("small")(5), nullptr);
  EXPECT_EQ(*segment.find<int>("small"), 5);
  EXPECT_FALSE(segment.recovered());
  segment.unlink();
}

TEST(InterprocessTest, PicklesAsItsName) {
  mp::ManagedSharedMemory segment(mp::create_only, 1 << 16);
  mp_test::SegmentUnlinker cleanup{segment.name()};
  *segment.construct<int>("x")(0) = 7;
  auto loaded = mp::pickle::loads<mp::ManagedSharedMemory>(mp::pickle::dumps(segment));
  EXPECT_EQ(loaded.name(), segment.name());
  EXPECT_EQ(*loaded.find<int>("x"), 7);
  segment.unlink();
}

// ---- Processes, once per start method ----

class InterprocessProcessTest : public mp_test::StartMethodTest<> {};

void add_keys(mp::ManagedSharedMemory segment, mp::Lock lock, int writer, int count) {
  auto* map = segment.find<Map>("map");
  if (!map) std::_Exit(3);
  for (int i = 0; i < count; ++i) {
    std::scoped_lock guard(lock);
    map->emplace(std::int64_t{writer} * 1'000'000 + i, i);
    ++(*map)[-1];  // one key every writer updates
  }
}

TEST_P(InterprocessProcessTest, ConcurrentWritersToASharedMap) {
  mp::ManagedSharedMemory segment(mp::create_only, 8 << 20);
  mp_test::SegmentUnlinker cleanup{segment.name()};
  auto* map = segment.construct<Map>("map")(segment.get_segment_manager());
  mp::Lock lock;
  constexpr int kWriters = 4, kCount = 2000;
  std::vector<mp::Process> writers;
  for (int w = 0; w < kWriters; ++w) writers.push_back(start(&add_keys, segment, lock, w, kCount));
  for (auto& writer : writers) join_ok(writer);
  ASSERT_EQ(map->size(), std::size_t{kWriters * kCount + 1});
  EXPECT_EQ(map->at(-1), kWriters * kCount);
  for (int w = 0; w < kWriters; ++w)
    for (int i = 0; i < kCount; ++i) ASSERT_EQ(map->at(std::int64_t{w} * 1'000'000 + i), i);
  EXPECT_FALSE(segment.recovered());
  segment.unlink();
}

void check_named_and_reply(mp::ManagedSharedMemory segment) {
  auto* greeting = segment.find<mp::ipc::string>("greeting");
  if (!greeting || *greeting != "from the parent") std::_Exit(3);
  auto* manager = segment.get_segment_manager();
  segment.construct<mp::ipc::string>("reply")("from the child", manager);
}

TEST_P(InterprocessProcessTest, NamedObjectFoundFromAChild) {
  mp::ManagedSharedMemory segment(mp::create_only, 1 << 16);
  mp_test::SegmentUnlinker cleanup{segment.name()};
  segment.construct<mp::ipc::string>("greeting")("from the parent", segment.get_segment_manager());
  auto child = start(&check_named_and_reply, segment);
  join_ok(child);
  auto* reply = segment.find<mp::ipc::string>("reply");
  ASSERT_NE(reply, nullptr);
  EXPECT_EQ(*reply, "from the child");
  EXPECT_TRUE(mp_test::segment_exists(segment.name())) << "an attaching child removed the segment";
  segment.unlink();
}

void receive_and_fill(mp::Queue<mp::ManagedSharedMemory> queue) {
  auto segment = queue.get();
  auto* numbers = segment.find<mp::ipc::vector<double>>("numbers");
  if (!numbers) std::_Exit(3);
  for (double& x : *numbers) x *= 2;
}

TEST_P(InterprocessProcessTest, HandleThroughAQueue) {
  mp::ManagedSharedMemory segment(mp::create_only, 1 << 16);
  mp_test::SegmentUnlinker cleanup{segment.name()};
  auto* numbers = segment.construct<mp::ipc::vector<double>>("numbers")(
      std::size_t{100}, 1.5, segment.get_segment_manager());
  mp::Queue<mp::ManagedSharedMemory> queue;
  auto child = start(&receive_and_fill, queue);
  queue.put(segment);
  join_ok(child);
  for (double x : *numbers) ASSERT_EQ(x, 3.0);
  segment.unlink();
}

// Allocates and frees blocks of varied sizes forever (an allocation refused because the
// allocator is poisoned counts too: it also takes and releases the allocator's lock).
void allocate_forever(mp::ManagedSharedMemory segment) {
  auto* progress = segment.find<Counter>("progress");
  if (!progress) std::_Exit(3);
  std::vector<void*> held;
  for (std::uint64_t i = 1;; ++i) {
    try {
      if (held.size() < 64) held.push_back(segment.allocate(16 + (i * 7919) % 4000));
      if (i % 3 == 0 && !held.empty()) {
        segment.deallocate(held[(i * 31) % held.size()]);
        held.erase(held.begin() + static_cast<std::ptrdiff_t>((i * 31) % held.size()));
      }
    } catch (const mp::SegmentPoisoned&) {
    } catch (const boost::interprocess::bad_alloc&) {
    }
    progress->fetch_add(1, std::memory_order_relaxed);
  }
}

void allocate_once(mp::ManagedSharedMemory segment) {
  try {
    segment.deallocate(segment.allocate(100));
  } catch (const mp::SegmentPoisoned&) {
    std::_Exit(segment.recovered() ? 0 : 4);
  }
  std::_Exit(segment.recovered() ? 5 : 0);
}

TEST_P(InterprocessProcessTest, WriterKilledInsideAllocationNeverDeadlocks) {
  mp::ManagedSharedMemory segment(mp::create_only, 4 << 20);
  mp_test::SegmentUnlinker cleanup{segment.name()};
  auto* progress = segment.construct<Counter>("progress")(0);
  auto* data = segment.construct<mp::ipc::vector<int>>("data")(std::size_t{1000}, 0,
                                                               segment.get_segment_manager());
  for (int round = 0; round < 30; ++round) {
    const std::uint64_t before = progress->load();
    auto writer = start(&allocate_forever, segment);
    const auto deadline = std::chrono::steady_clock::now() + 30s;
    // Wait for the writer to be busy allocating, then kill it at a varying moment.
    while (progress->load() < before + 100 + static_cast<std::uint64_t>(round) * 37 &&
           std::chrono::steady_clock::now() < deadline)
      std::this_thread::yield();
    ASSERT_LT(std::chrono::steady_clock::now(), deadline) << "the writer made no progress";
    writer.kill();
    ASSERT_TRUE(writer.join(kChildJoinLimit));
    // Another process allocates (or is refused, if the allocator is poisoned), in time.
    auto checker = start(&allocate_once, segment);
    join_ok(checker);
    // Objects already made stay usable in place; names are still found.
    for (int& x : *data) ++x;
    ASSERT_EQ(segment.find<mp::ipc::vector<int>>("data"), data);
  }
  for (int x : *data) ASSERT_EQ(x, 30);
  if (segment.recovered())
    EXPECT_THROW(segment.allocate(100), mp::SegmentPoisoned);
  else
    segment.deallocate(segment.allocate(100));
  std::printf("allocator poisoned after 30 kills: %s\n", segment.recovered() ? "yes" : "no");
  segment.unlink();
}

// Takes the segment's allocator lock (which = 0) or its index lock (1; 2: the index
// lock only to read) and dies.
void die_holding(mp::ManagedSharedMemory segment, int which) {
  std::byte* base = segment.shm().buf().data();
  const auto* header = reinterpret_cast<const mp::detail::managed_header*>(base);
  auto* mutex = reinterpret_cast<mp::detail::segment_mutex_state*>(
      base + header->mutex_offset[which == 0 ? 0 : 1]);
  mp::detail::segment_mutex_lock(*mutex, which != 0, which == 2);
  std::_Exit(0);
}

TEST_P(InterprocessProcessTest, OwnerDeathWhileOnlyReadingNamesPoisonsNothing) {
  mp::ManagedSharedMemory segment(mp::create_only, 1 << 16);
  mp_test::SegmentUnlinker cleanup{segment.name()};
  segment.construct<int>("answer")(42);
  auto child = start(&die_holding, segment, 2);
  join_ok(child);
  ASSERT_NE(segment.find<int>("answer"), nullptr);  // taken over, not poisoned
  EXPECT_EQ(*segment.find<int>("answer"), 42);
  EXPECT_NE(segment.construct<int>("other")(1), nullptr);
  EXPECT_FALSE(segment.recovered());
  // A reader's death does not excuse a later writer's.
  auto writer = start(&die_holding, segment, 1);
  join_ok(writer);
  EXPECT_THROW(segment.find<int>("answer"), mp::SegmentPoisoned);
  EXPECT_TRUE(segment.recovered());
  segment.unlink();
}

TEST_P(InterprocessProcessTest, OwnerDeathInTheAllocatorPoisonsAllocationOnly) {
  mp::ManagedSharedMemory segment(mp::create_only, 1 << 16);
  mp_test::SegmentUnlinker cleanup{segment.name()};
  auto* manager = segment.get_segment_manager();
  auto* numbers = segment.construct<mp::ipc::vector<int>>("numbers")(std::size_t{10}, 1, manager);
  auto* spare = segment.construct<mp::ipc::vector<int>>("spare")(std::size_t{10}, 2, manager);
  auto child = start(&die_holding, segment, 0);
  join_ok(child);
  EXPECT_FALSE(segment.recovered());  // nobody has needed the lock yet
  EXPECT_THROW(segment.allocate(10), mp::SegmentPoisoned);
  EXPECT_TRUE(segment.recovered());
  EXPECT_THROW(numbers->push_back(5), mp::SegmentPoisoned);
  EXPECT_EQ(numbers->size(), 10u);
  for (int& x : *numbers) x += 1;  // in place: fine
  EXPECT_EQ(segment.find<mp::ipc::vector<int>>("numbers"), numbers);
  spare->clear();
  spare->shrink_to_fit();  // frees (leaks): never throws
  EXPECT_TRUE(mp::ManagedSharedMemory(mp::open_only, segment.name()).recovered());
  segment.unlink();
}

TEST_P(InterprocessProcessTest, OwnerDeathInTheIndexPoisonsNamesOnly) {
  mp::ManagedSharedMemory segment(mp::create_only, 1 << 16);
  mp_test::SegmentUnlinker cleanup{segment.name()};
  int* answer = segment.construct<int>("answer")(42);
  auto child = start(&die_holding, segment, 1);
  join_ok(child);
  EXPECT_THROW(segment.find<int>("answer"), mp::SegmentPoisoned);
  EXPECT_THROW(segment.construct<int>("other")(1), mp::SegmentPoisoned);
  EXPECT_TRUE(segment.recovered());
  EXPECT_EQ(*answer, 42);
  void* block = segment.allocate(100);  // the allocator is intact
  segment.deallocate(block);
  segment.unlink();
}

TEST_P(InterprocessProcessTest, TreeEndRemovesTheSegmentUnlessPersistent) {
  mp_test::KilledOwner tree;
  ASSERT_NO_FATAL_FAILURE(
      mp_test::run_killed_owner(MP_MANAGED_SEGMENT_TREE_PATH, GetParam(), tree));
  const std::string& lasting = tree.first;
  const std::string& persistent = tree.second;
  EXPECT_FALSE(mp_test::segment_exists(lasting)) << "left behind by an ended tree";
  ASSERT_TRUE(mp_test::segment_exists(persistent)) << "persist = true did not persist";
  mp::ManagedSharedMemory kept(mp::open_only, persistent);
  ASSERT_NE(kept.find<int>("answer"), nullptr);
  EXPECT_EQ(*kept.find<int>("answer"), 42);
  kept.unlink();
}

TEST(InterprocessTest, ClosedSegmentThrowsInsteadOfTouchingUnmappedMemory) {
  mp::ManagedSharedMemory segment(mp::create_only, 1 << 16);
  mp_test::SegmentUnlinker cleanup{segment.name()};
  mp::ManagedSharedMemory copy = segment;
  segment.shm().close();
  EXPECT_THROW(copy.find<int>("x"), std::logic_error);
  EXPECT_THROW(copy.allocate(8), std::logic_error);
  EXPECT_FALSE(copy.recovered());
  segment.unlink();
}

INSTANTIATE_TEST_SUITE_P(StartMethods, InterprocessProcessTest,
                         ::testing::ValuesIn(mp_test::start_methods()), mp_test::method_name);

}  // namespace
