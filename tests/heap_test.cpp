// Tests for the shared heap (mp/detail/heap.hpp, lib/src/heap.cpp): reuse, exhaustion,
// and a process killed in the middle of allocating.
#include <signal.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mp/context.hpp>
#include <mp/detail/heap.hpp>
#include <mp/errors.hpp>
#include <mp/managers.hpp>
#include <mp/process.hpp>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "heap_arena.hpp"
#include "test_util.hpp"

using namespace std::chrono_literals;
using mp::detail::Arena;
using mp::detail::shared_ref;

namespace {

constexpr auto kJoinLimit = 60s;

TEST(Heap, FreedBlocksAreReused) {
  Arena arena = Arena::create(1 << 20);
  const auto a = arena.allocate(100);
  const auto b = arena.allocate(100);
  EXPECT_NE(a, b);
  EXPECT_EQ(a % 16, 0u);
  EXPECT_TRUE(arena.is_allocated(a));
  arena.free(a);
  EXPECT_FALSE(arena.is_allocated(a));
  const auto used = arena.bump_used();
  EXPECT_EQ(arena.allocate(90), a);  // same size class, from the free list
  EXPECT_EQ(arena.bump_used(), used);
  arena.free(b);
  arena.free(b);  // a double free is reported and ignored, the free list stays sound
  EXPECT_EQ(arena.allocate(100), b);
  EXPECT_NE(arena.allocate(100), b);
}

// Whether every page of [data, data + size) is resident (mincore).
bool all_pages_resident(const void* data, std::size_t size) {
  const std::uintptr_t page = static_cast<std::uintptr_t>(::sysconf(_SC_PAGESIZE));
  const auto begin = reinterpret_cast<std::uintptr_t>(data) & ~(page - 1);
  const auto end = (reinterpret_cast<std::uintptr_t>(data) + size + page - 1) & ~(page - 1);
  std::vector<unsigned char> flags((end - begin) / page);
  EXPECT_EQ(::mincore(reinterpret_cast<void*>(begin), end - begin, flags.data()), 0);
  return std::all_of(flags.begin(), flags.end(), [](unsigned char f) { return (f & 1) != 0; });
}

// A block the caller is about to fill is faulted in by one system call, not one fault per
// page; one off a warm list is resident already.
TEST(Heap, AllocateForWriteReturnsResidentPages) {
  Arena arena = Arena::create(std::uint64_t{1} << 30);
  constexpr std::size_t kSize = (std::size_t{4} << 20) - 64;
  bool warm = true;
  const auto fresh = arena.allocate(kSize, &warm);
  EXPECT_FALSE(warm) << "a new arena has no warm blocks";
  std::memset(arena.base() + fresh, 1, kSize);
  arena.free(fresh);
  EXPECT_EQ(arena.allocate(kSize, &warm), fresh);
  EXPECT_TRUE(warm);

  const shared_ref ref = mp::detail::heap_allocate_for_write(kSize);
  EXPECT_TRUE(all_pages_resident(mp::detail::heap_address(ref), kSize));
  std::memset(mp::detail::heap_address(ref), 2, kSize);
  mp::detail::heap_free(ref);
}

// prefault_for_write faults in fresh memory of kPrefaultFrom bytes or more, leaves
// smaller ranges alone, and never changes what the memory holds.
TEST(Heap, PrefaultForWriteFaultsInFreshMemoryOnly) {
  constexpr std::size_t kSize = std::size_t{1} << 20;
  static_assert(kSize >= mp::detail::kPrefaultFrom);
  void* map =
      ::mmap(nullptr, 2 * kSize, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  ASSERT_NE(map, MAP_FAILED);
  auto* bytes = static_cast<unsigned char*>(map);
  EXPECT_FALSE(all_pages_resident(bytes, kSize));
  mp::detail::prefault_for_write(bytes, kSize);
  EXPECT_TRUE(all_pages_resident(bytes, kSize));
  EXPECT_TRUE(std::all_of(bytes, bytes + kSize, [](unsigned char b) { return b == 0; }));

  unsigned char* small = bytes + kSize;
  mp::detail::prefault_for_write(small, mp::detail::kPrefaultFrom - 4096);
  EXPECT_FALSE(all_pages_resident(small, 4096)) << "below kPrefaultFrom: left alone";

  std::memset(bytes, 7, kSize);  // resident, with data: skipped, data kept
  mp::detail::prefault_for_write(bytes, kSize);
  EXPECT_TRUE(std::all_of(bytes, bytes + kSize, [](unsigned char b) { return b == 7; }));
  ASSERT_EQ(::munmap(map, 2 * kSize), 0);
}

// Bytes of the arena's memfd that hold pages (fstat's st_blocks).
std::uint64_t arena_resident_bytes(const Arena& arena) {
  struct stat st {};
  EXPECT_EQ(::fstat(arena.fd(), &st), 0);
  return static_cast<std::uint64_t>(st.st_blocks) * 512;
}

// A freed large block keeps its pages while the arena's warm budget allows, so the next
// allocation of its size does not fault fresh zeroed pages in (pool chunks and queue
// items of a few MiB come and go at a high rate); past the budget, and for blocks
// bigger than warm blocks may be, freeing gives the pages back to the system.
TEST(Heap, LargeFreedBlocksStayWarmWithinTheBudgetOnly) {
  Arena arena = Arena::create(std::uint64_t{1} << 31);
  constexpr std::size_t kMiB = 1 << 20;
  const auto base = arena_resident_bytes(arena);
  const auto touch = [&](std::uint64_t offset, std::size_t size) {
    std::memset(arena.base() + offset, 1, size);
  };
  // What touching a block adds: its first page holds a free block's header, so it may
  // be resident already.
  constexpr std::size_t kTouched = kMiB - 4096;
  // One 1 MiB-class block, freed and allocated again: same block, pages kept.
  const auto a = arena.allocate(kMiB - 64);
  touch(a, kMiB - 64);
  EXPECT_GE(arena_resident_bytes(arena) - base, kTouched);
  arena.free(a);
  EXPECT_GE(arena_resident_bytes(arena) - base, kTouched) << "a warm block keeps its pages";
  EXPECT_EQ(arena.allocate(kMiB - 64), a);
  arena.free(a);
  // More than the budget at once: what exceeds it is given back.
  std::vector<std::uint64_t> blocks;
  const std::size_t count = Arena::kWarmBudget / kMiB + 16;
  for (std::size_t i = 0; i < count; ++i) {
    blocks.push_back(arena.allocate(kMiB - 64));
    touch(blocks.back(), kMiB - 64);
  }
  EXPECT_GE(arena_resident_bytes(arena) - base, count * kTouched);
  for (auto block : blocks) arena.free(block);
  const auto kept = arena_resident_bytes(arena) - base;
  EXPECT_LE(kept, Arena::kWarmBudget + 64 * 4096) << "at most the budget stays resident";
  EXPECT_GE(kept, Arena::kWarmBudget / 2) << "blocks within the budget stay warm";
  // A block bigger than any warm block is discarded at once.
  const std::size_t big = 2 * Arena::kWarmMaxBlock;
  const auto huge = arena.allocate(big);
  touch(huge, big);
  arena.free(huge);
  EXPECT_LE(arena_resident_bytes(arena) - base, Arena::kWarmBudget + 64 * 4096);
  // Warm and cold blocks are both reused, warm ones first.
  for (std::size_t i = 0; i < count; ++i)
    EXPECT_TRUE(arena.is_allocated(arena.allocate(kMiB - 64)));
  EXPECT_TRUE(arena.check().empty()) << arena.check();
}

// Small blocks, once all are freed, are merged back into large free blocks whose pages
// go back to the system: the arena's resident size falls back near where it started.
TEST(Heap, FreedSmallBlocksGiveTheirPagesBack) {
  Arena arena = Arena::create(std::uint64_t{1} << 30);
  const auto base = arena_resident_bytes(arena);
  std::vector<std::uint64_t> blocks;
  for (int i = 0; i < 200'000; ++i) {
    blocks.push_back(arena.allocate(1000));
    std::memset(arena.base() + blocks.back(), 1, 1000);
  }
  EXPECT_GE(arena_resident_bytes(arena) - base, std::uint64_t{200'000} * 1000);
  // The first freed stay warm (a budget per size class), the others merge.
  for (auto block : blocks) arena.free(block);
  EXPECT_LE(arena_resident_bytes(arena) - base, Arena::kWarmSmallBytes + (std::uint64_t{1} << 20))
      << "freed small blocks keep their pages";
  // Freed in any order, once the warm blocks are given up too.
  blocks.clear();
  for (int i = 0; i < 200'000; ++i) {
    blocks.push_back(arena.allocate(1000));
    std::memset(arena.base() + blocks.back(), 1, 1000);
  }
  std::shuffle(blocks.begin(), blocks.end(), std::mt19937(7));
  for (auto block : blocks) arena.free(block);
  EXPECT_GT(arena.release_warm(), 0u);
  EXPECT_LE(arena_resident_bytes(arena) - base, std::uint64_t{1} << 20)
      << "freed small blocks keep their pages";
  EXPECT_TRUE(arena.check().empty()) << arena.check();
}

// Small blocks freed make room for a large one: the free space merges.
TEST(Heap, FreedSmallBlocksMakeRoomForALargeOne) {
  constexpr std::uint64_t kMiB = 1 << 20;
  Arena arena = Arena::create(8 * kMiB);
  std::vector<std::uint64_t> blocks;
  for (std::uint64_t held = 0; held < 5 * kMiB; held += 1000)
    blocks.push_back(arena.allocate(1000));
  for (auto block : blocks) arena.free(block);
  std::uint64_t large = 0;
  ASSERT_NO_THROW(large = arena.allocate(3 * kMiB));
  std::memset(arena.base() + large, 2, 3 * kMiB);
  arena.free(large);
  EXPECT_TRUE(arena.check().empty()) << arena.check();
}

// Whatever the size of the blocks freed, their memory serves blocks of other sizes.
TEST(Heap, FreedMemoryServesOtherSizeClasses) {
  const auto fill = [](Arena& arena, std::size_t size) {
    std::vector<std::uint64_t> blocks;
    try {
      for (;;) blocks.push_back(arena.allocate(size));
    } catch (const mp::HeapExhausted&) {
    }
    return blocks;
  };
  Arena fresh = Arena::create(1 << 20);
  const std::size_t capacity = fill(fresh, 4000).size();
  Arena arena = Arena::create(1 << 20);
  for (std::size_t size : {100, 30000, 1000}) {
    for (auto block : fill(arena, size)) arena.free(block);
    const auto blocks = fill(arena, 4000);
    EXPECT_EQ(blocks.size(), capacity) << "after blocks of " << size << " bytes";
    for (auto block : blocks) arena.free(block);
  }
  EXPECT_TRUE(arena.check().empty()) << arena.check();
}

TEST(Heap, ExhaustionThrowsAndTheHeapStillWorks) {
  Arena arena = Arena::create(1 << 20);
  std::vector<std::uint64_t> blocks;
  try {
    for (;;) blocks.push_back(arena.allocate(4000));
  } catch (const mp::HeapExhausted& e) {
    EXPECT_NE(
        std::string(e.what()).find("mp shared heap exhausted (1048576 bytes; set MP_HEAP_SIZE)"),
        std::string::npos)
        << e.what();
  }
  EXPECT_GT(blocks.size(), 100u);
  EXPECT_THROW(arena.allocate(1 << 30), std::bad_alloc);  // a HeapExhausted is a bad_alloc
  // Smaller blocks may still fit; freed blocks are reused.
  arena.free(blocks.back());
  blocks.pop_back();
  EXPECT_NO_THROW(blocks.push_back(arena.allocate(4000)));
  for (auto block : blocks) arena.free(block);
  EXPECT_NO_THROW(arena.allocate(4000));
}

TEST(Heap, AttachSeesTheSameArena) {
  Arena arena = Arena::create(1 << 20);
  const auto block = arena.allocate(64);
  std::memcpy(arena.base() + block, "shared", 7);
  Arena other = Arena::attach(mp::posix::unique_fd(::dup(arena.fd())));
  EXPECT_EQ(other.id(), arena.id());
  EXPECT_STREQ(reinterpret_cast<const char*>(other.base() + block), "shared");
  EXPECT_TRUE(other.is_allocated(block));
  EXPECT_THROW(Arena::create(10), std::invalid_argument);
}

TEST(Heap, MainHeapSizeFromEnvironment) {
  // A fresh program (this test binary) whose heap is 1 MiB.
  ::setenv("MP_HEAP_SIZE", "1048576", 1);
  auto result = mp_test::run_command(
      {MP_TESTS_BINARY_PATH, "--gtest_filter=HeapChild.SmallMainHeapIsExhausted"});
  ::unsetenv("MP_HEAP_SIZE");
  EXPECT_EQ(result.exit_status, 0) << result.out << result.err;
  EXPECT_NE(result.out.find("[  PASSED  ] 1 test"), std::string::npos) << result.out;
}

TEST(HeapChild, SmallMainHeapIsExhausted) {
  const char* size = std::getenv("MP_HEAP_SIZE");
  if (!size || std::string(size) != "1048576") GTEST_SKIP() << "run by MainHeapSizeFromEnvironment";
  std::vector<shared_ref> refs;
  EXPECT_THROW(for (;;) refs.push_back(mp::detail::heap_allocate(10000)), mp::HeapExhausted);
  EXPECT_LT(refs.size(), 100u);
  for (auto ref : refs) mp::detail::heap_free(ref);
  EXPECT_NO_THROW(mp::detail::heap_free(mp::detail::heap_allocate(10000)));
}

// Allocates and frees blocks of mixed sizes forever; counts rounds in shared memory.
void churn_heap(shared_ref rounds_ref) {
  auto* rounds = static_cast<std::atomic<std::uint64_t>*>(mp::detail::heap_address(rounds_ref));
  std::mt19937 random(static_cast<unsigned>(::getpid()));
  std::vector<shared_ref> held;
  for (;;) {
    if (held.size() < 64) {
      const std::size_t size = std::size_t{1} << (random() % 18);
      held.push_back(mp::detail::heap_allocate(size));
    } else {
      const std::size_t victim = random() % held.size();
      mp::detail::heap_free(held[victim]);
      held[victim] = held.back();
      held.pop_back();
    }
    rounds->fetch_add(1, std::memory_order_relaxed);
  }
}

// A Manager segment larger than the heap says which option to lower.
TEST(Heap, ManagerSegmentTooLargeForTheHeapNamesSegmentSize) {
  try {
    mp::Manager manager({.segment_size = std::size_t{1} << 40});
    FAIL() << "a 1 TiB segment fit the heap";
  } catch (const mp::HeapExhausted& e) {
    EXPECT_NE(std::string(e.what()).find("segment_size"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("MP_HEAP_SIZE"), std::string::npos) << e.what();
  }
}

class HeapProcessTest : public ::testing::TestWithParam<std::string> {};

TEST_P(HeapProcessTest, ChildKilledWhileAllocatingLeavesHeapUsable) {
  const shared_ref rounds_ref = mp::detail::heap_allocate(sizeof(std::atomic<std::uint64_t>));
  auto* rounds = new (mp::detail::heap_address(rounds_ref)) std::atomic<std::uint64_t>(0);
  std::vector<mp::Process> children;
  for (int i = 0; i < 2; ++i) {
    children.emplace_back(mp::ProcessOptions{.start_method = GetParam()}, &churn_heap, rounds_ref);
    children.back().start();
  }
  // Let them churn (bounded), allocating here at the same time, then kill them mid-loop.
  const auto limit = std::chrono::steady_clock::now() + 30s;
  std::vector<shared_ref> mine;
  while (rounds->load() < 200'000 && std::chrono::steady_clock::now() < limit) {
    mine.push_back(mp::detail::heap_allocate(48));
    if (mine.size() > 100) {
      for (auto ref : mine) mp::detail::heap_free(ref);
      mine.clear();
    }
  }
  EXPECT_GE(rounds->load(), 200'000u);
  for (auto& child : children) {
    child.kill();
    ASSERT_TRUE(child.join(kJoinLimit));
  }
  for (auto ref : mine) mp::detail::heap_free(ref);
  // Every block handed out now is distinct and keeps what was written into it.
  std::map<std::uint64_t, std::size_t> blocks;
  std::vector<std::pair<shared_ref, std::size_t>> all;
  for (std::size_t i = 0; i < 2000; ++i) {
    const std::size_t size = std::size_t{16} << (i % 12);
    const shared_ref ref = mp::detail::heap_allocate(size);
    ASSERT_TRUE(blocks.emplace(ref.offset, size).second) << "block handed out twice";
    std::memset(mp::detail::heap_address(ref), static_cast<int>(i % 251), size);
    all.emplace_back(ref, size);
  }
  // No two blocks overlap.
  std::uint64_t end = 0;
  for (auto [offset, size] : blocks) {
    EXPECT_GE(offset, end);
    end = offset + size;
  }
  for (std::size_t i = 0; i < all.size(); ++i) {
    auto* bytes = static_cast<unsigned char*>(mp::detail::heap_address(all[i].first));
    ASSERT_EQ(bytes[0], i % 251);
    ASSERT_EQ(bytes[all[i].second - 1], i % 251);
    mp::detail::heap_free(all[i].first);
  }
  mp::detail::heap_free(rounds_ref);
}

// The heap's default reservation fits under `ulimit -v`: a program that starts
// processes and shares a Value runs with a 4 GiB address-space limit (a 64 GiB
// reservation would fail to map).
TEST_P(HeapProcessTest, ProgramRunsUnderAddressSpaceLimit) {
  if (mp_test::kAddressSanitizer)
    GTEST_SKIP() << "AddressSanitizer reserves terabytes of shadow address space";
  auto result = mp_test::run_command({"/bin/sh", "-c", "ulimit -v 4194304 && exec \"$0\" \"$@\"",
                                      MP_DEMO_PATH, "value", "--delay", "0.01", "--start-method",
                                      GetParam()});
  EXPECT_EQ(result.exit_status, 0) << result.err;
  EXPECT_NE(result.out.find("In main"), std::string::npos) << result.out;
}

INSTANTIATE_TEST_SUITE_P(StartMethods, HeapProcessTest,
                         ::testing::ValuesIn(mp_test::start_methods()), mp_test::method_name);

}  // namespace
