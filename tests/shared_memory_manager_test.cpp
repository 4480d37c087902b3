// Tests for <mp/shared_memory_manager.hpp>. A killed owner is a separate program
// (tests/programs/shared_memory_manager_owner.cpp), whose process tree then ends.
#include <gtest/gtest.h>

#include <sys/mman.h>

#include <cstring>
#include <stdexcept>
#include <string>

#include <mp/errors.hpp>
#include <mp/process.hpp>
#include <mp/shared_memory.hpp>
#include <mp/shared_memory_manager.hpp>

#include "test_util.hpp"

using namespace std::chrono_literals;

namespace {

TEST(SharedMemoryManagerTest, ScopeEndUnlinksWhatTheFactoriesMade) {
  std::string block_name, list_name;
  mp::SharedMemory block;
  {
    mp::SharedMemoryManager smm;
    smm.start();
    EXPECT_TRUE(smm.running());
    block = smm.SharedMemory(1000);
    auto list = smm.ShareableList({std::int64_t{1}, std::string("two"), 3.0});
    block_name = block.name();
    list_name = list.shm().name();
    EXPECT_EQ(smm.segment_names(), (std::vector<std::string>{block_name, list_name}));
    EXPECT_EQ(list[1], mp::ShareableItem(std::string("two")));
    EXPECT_TRUE(mp_test::segment_exists(block_name));
    EXPECT_TRUE(mp_test::segment_exists(list_name));
  }
  mp_test::SegmentUnlinker cleanup1{block_name}, cleanup2{list_name};
  EXPECT_FALSE(mp_test::segment_exists(block_name));
  EXPECT_FALSE(mp_test::segment_exists(list_name));
  // A handle still open keeps its mapping, as in Python.
  std::memcpy(block.buf().data(), "still mapped", 12);
  EXPECT_EQ(std::memcmp(block.buf().data(), "still mapped", 12), 0);
}

TEST(SharedMemoryManagerTest, StartShutdownAndMisuse) {
  mp::SharedMemoryManager smm;
  EXPECT_FALSE(smm.running());
  EXPECT_THROW(smm.SharedMemory(10), std::logic_error);
  smm.start();
  EXPECT_THROW(smm.start(), mp::ProcessError);
  auto block = smm.SharedMemory(10);
  auto gone = smm.SharedMemory(10);
  gone.unlink();  // by the user first: shutdown skips it
  mp_test::SegmentUnlinker cleanup{block.name()};
  EXPECT_THROW(smm.SharedMemory(0), std::invalid_argument);
  smm.shutdown();
  EXPECT_FALSE(mp_test::segment_exists(block.name()));
  EXPECT_FALSE(smm.running());
  smm.shutdown();  // idempotent
  EXPECT_THROW(smm.SharedMemory(10), std::logic_error);
  EXPECT_THROW(smm.ShareableList({}), std::logic_error);
  EXPECT_THROW(smm.start(), mp::ProcessError);
}

class SharedMemoryManagerProcessTest : public mp_test::StartMethodTest<> {};

mp::SharedMemoryManager* forked_manager = nullptr;

void shut_down_copy_and_write(mp::SharedMemory block) {
  if (forked_manager != nullptr) {  // fork: the child has a copy of the manager
    forked_manager->shutdown();
    try {
      (void)forked_manager->SharedMemory(10);
      std::_Exit(3);
    } catch (const std::logic_error&) {
    }
  }
  std::memcpy(block.buf().data(), "child", 5);
}

TEST_P(SharedMemoryManagerProcessTest, SegmentsReachChildrenAndOnlyTheOwnerUnlinks) {
  mp::SharedMemoryManager smm;
  smm.start();
  forked_manager = &smm;
  auto block = smm.SharedMemory(4096);
  mp_test::SegmentUnlinker cleanup{block.name()};
  auto child = start(&shut_down_copy_and_write, block);
  join_ok(child);
  forked_manager = nullptr;
  EXPECT_TRUE(mp_test::segment_exists(block.name())) << "a child's copy of the manager unlinked";
  EXPECT_EQ(std::memcmp(block.buf().data(), "child", 5), 0);
  smm.shutdown();
  EXPECT_FALSE(mp_test::segment_exists(block.name()));
}

TEST_P(SharedMemoryManagerProcessTest, KilledOwnerLeavesNothingInDevShm) {
  mp_test::KilledOwner owner;
  ASSERT_NO_FATAL_FAILURE(
      mp_test::run_killed_owner(MP_SHARED_MEMORY_MANAGER_OWNER_PATH, GetParam(), owner));
  EXPECT_FALSE(mp_test::segment_exists(owner.first));   // the block
  EXPECT_FALSE(mp_test::segment_exists(owner.second));  // the list
}

INSTANTIATE_TEST_SUITE_P(StartMethods, SharedMemoryManagerProcessTest,
                         ::testing::ValuesIn(mp_test::start_methods()), mp_test::method_name);

}  // namespace
