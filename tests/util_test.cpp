// Tests for <mp/util.hpp>: Finalize runs once, by priority at exit, only in the process
// that made it. Tests that start processes run once per start method.
#include <gtest/gtest.h>

#include <unistd.h>

#include <fstream>
#include <functional>
#include <iterator>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include <mp/process.hpp>
#include <mp/util.hpp>

#include "test_util.hpp"

namespace {

void append_line(const std::string& path, const std::string& line) {
  std::ofstream(path, std::ios::app) << line << '\n';
}

std::string read_all(const std::string& path) {
  std::ifstream in(path);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

TEST(FinalizeTest, RunsOnceWhenCalled) {
  int runs = 0;
  mp::util::Finalize f([&] { ++runs; }, 0);
  EXPECT_TRUE(f.still_active());
  EXPECT_EQ(f.exitpriority(), 0);
  EXPECT_TRUE(f());
  EXPECT_FALSE(f());
  EXPECT_FALSE(f.still_active());
  EXPECT_EQ(runs, 1);
}

TEST(FinalizeTest, CancelledNeverRuns) {
  int runs = 0;
  {
    mp::Finalize f([&] { ++runs; });
    const mp::Finalize copy = f;
    copy.cancel();
    EXPECT_FALSE(f.still_active());
    EXPECT_FALSE(f());
  }
  EXPECT_EQ(runs, 0);
}

TEST(FinalizeTest, WithoutPriorityRunsWhenTheLastHandleGoes) {
  int runs = 0;
  {
    std::vector<mp::Finalize> handles;
    handles.emplace_back([&] { ++runs; });
    handles.push_back(handles.front());
    handles.erase(handles.begin());
    EXPECT_EQ(runs, 0);  // a copy remains
  }
  EXPECT_EQ(runs, 1);
  // With a priority, the registry keeps it: destroying its handles runs nothing.
  std::optional<mp::Finalize> kept;
  kept.emplace([&] { ++runs; }, -5);
  const mp::Finalize copy = *kept;
  kept.reset();
  EXPECT_EQ(runs, 1);
  EXPECT_TRUE(copy.still_active());
  copy.cancel();  // so that the test binary's exit does not run it
}

TEST(FinalizeTest, ExceptionsReachTheCallerAndCountAsRun) {
  mp::Finalize f([] { throw std::runtime_error("cleanup failed"); }, 1);
  EXPECT_THROW(f(), std::runtime_error);
  EXPECT_FALSE(f.still_active());
  EXPECT_THROW(mp::Finalize(std::function<void()>()), std::invalid_argument);
}

// Makes finalizers in the child; they run at its exit, by priority, the last made first
// among equals; those without priority whose handles are gone ran already; cancelled
// ones never.
void make_finalizers(std::string path) {
  append_line(path, "child start");
  static std::vector<mp::Finalize> keep;
  keep.emplace_back([path] { append_line(path, "priority 5, first"); }, 5);
  keep.emplace_back([path] { append_line(path, "priority 5, second"); }, 5);
  keep.emplace_back([path] { append_line(path, "priority -1"); }, -1);
  keep.emplace_back([path] { append_line(path, "priority 10"); }, 10);
  keep.emplace_back([path] { append_line(path, "cancelled"); }, 20);
  keep.back().cancel();
  mp::Finalize([path] { append_line(path, "no priority, handle gone"); });
  keep.emplace_back([path] { append_line(path, "called early"); }, 30);
  keep.back()();
  // A finalizer may make another; it runs in its turn.
  keep.emplace_back(
      [path] {
        static mp::Finalize late([path] { append_line(path, "made at exit, priority 0"); }, 0);
        append_line(path, "priority 1");
      },
      1);
  append_line(path, "child end");
}

// An inherited handle is not this process's: calling it does nothing. (Only a forked
// child has the parent's handle; a spawned one finds none.)
std::optional<mp::Finalize> g_inherited;
void call_inherited(std::string path) {
  if (!g_inherited) return;
  if ((*g_inherited)()) append_line(path, "inherited ran");
  if (g_inherited->still_active()) append_line(path, "inherited active");
}

class FinalizeProcessTest : public mp_test::StartMethodTest<> {};

TEST_P(FinalizeProcessTest, RunAtChildExitByPriority) {
  mp_test::TempDir dir;
  const std::string path = dir.file("log");
  // The parent's own finalizer: a forked child inherits it, and must not run it.
  mp::Finalize parents([path] { append_line(path, "parent's finalizer"); }, 100);
  auto child = start(&make_finalizers, path);
  join_ok(child);
  EXPECT_EQ(read_all(path),
            "child start\n"
            "no priority, handle gone\n"
            "called early\n"
            "child end\n"
            "priority 10\n"
            "priority 5, second\n"
            "priority 5, first\n"
            "priority 1\n"
            "made at exit, priority 0\n"
            "priority -1\n");
  EXPECT_TRUE(parents.still_active());
  parents.cancel();
}

TEST_P(FinalizeProcessTest, InheritedHandleDoesNotRunInTheChild) {
  mp_test::TempDir dir;
  const std::string path = dir.file("log");
  int runs = 0;
  g_inherited.emplace([&runs] { ++runs; });
  auto child = start(&call_inherited, path);
  join_ok(child);
  EXPECT_EQ(read_all(path), "");
  EXPECT_TRUE(g_inherited->still_active());
  EXPECT_TRUE((*g_inherited)());
  EXPECT_EQ(runs, 1);
  g_inherited.reset();
}

INSTANTIATE_TEST_SUITE_P(StartMethods, FinalizeProcessTest,
                         ::testing::ValuesIn(mp_test::start_methods()), mp_test::method_name);

}  // namespace
