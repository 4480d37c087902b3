// <mp/managers.hpp> on its own: it compiles, works, and stays light. The SyncManager
// factories that make queues and shared ctypes objects only declare those types, so
// including the header does not pull in <mp/queues.hpp> or <mp/sharedctypes.hpp>: their
// class templates are still incomplete in this file, which includes nothing else of mp.
#include <mp/managers.hpp>

#include <gtest/gtest.h>

#include <string>

namespace {

template <class T>
concept complete_type = requires {
  sizeof(T);
};

static_assert(!complete_type<mp::Queue<int>>, "<mp/managers.hpp> includes <mp/queues.hpp>");
static_assert(!complete_type<mp::JoinableQueue<int>>, "<mp/managers.hpp> includes <mp/queues.hpp>");
static_assert(!complete_type<mp::Value<int>>, "<mp/managers.hpp> includes <mp/sharedctypes.hpp>");
static_assert(!complete_type<mp::Array<char>>, "<mp/managers.hpp> includes <mp/sharedctypes.hpp>");

TEST(ManagersHeader, AloneMakesDictsListsNamespacesAndLocks) {
  mp::Manager manager({.segment_size = std::size_t{1} << 20});
  auto dict = manager.dict<std::string, int>();
  dict["answer"] = 42;
  EXPECT_EQ(dict.at("answer"), 42);
  auto list = manager.list<int>();
  list.extend({1, 2, 3});
  EXPECT_EQ(list.index(3), 2u);
  auto ns = manager.Namespace();
  ns.set("x", 1.5);
  EXPECT_EQ(ns.get<double>("x"), 1.5);
  mp::Lock lock = manager.Lock();
  EXPECT_TRUE(lock.acquire(false));
  lock.release();
}

}  // namespace
