// Tests for <mp/context.hpp>: start methods, contexts, cpu_count, freeze_support.
#include <sched.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <stdexcept>

#include <mp/context.hpp>
#include <mp/pickle.hpp>

#include "process_state.hpp"
#include "test_util.hpp"

namespace {

void exit_with(int code) { std::exit(code); }

TEST(Context, AllStartMethodsDefaultFirst) {
  auto methods = mp::get_all_start_methods();
  ASSERT_GE(methods.size(), 2u);
  EXPECT_EQ(methods[0], "fork");
  EXPECT_NE(std::find(methods.begin(), methods.end(), "spawn"), methods.end());
  for (std::size_t i = 0; i < methods.size(); ++i) {
    EXPECT_EQ(std::count(methods.begin(), methods.end(), methods[i]), 1) << methods[i];
    EXPECT_EQ(mp::get_context(methods[i]).get_start_method(), methods[i]);
  }
}

// The build reads the same list (lib/src/start_methods.def) to run the examples and
// the per-method ctest entries once per method; both readings must agree.
TEST(Context, BuildKnowsTheLibrarysStartMethods) {
  std::string library;
  for (const auto& method : mp::get_all_start_methods())
    library += (library.empty() ? "" : ",") + method;
  EXPECT_EQ(library, MP_BUILD_START_METHODS);
}

TEST(Context, PoolWorkersAreNamedAfterTheirStartMethod) {
  EXPECT_EQ(mp::detail::pool_worker_name("fork", 3), "ForkPoolWorker-3");
  EXPECT_EQ(mp::detail::pool_worker_name("spawn", 1), "SpawnPoolWorker-1");
  for (const auto& method : mp::get_all_start_methods()) {
    const std::string name = mp::detail::pool_worker_name(method, 7);
    EXPECT_TRUE(name.ends_with("PoolWorker-7")) << name;
  }
  EXPECT_THROW((void)mp::detail::pool_worker_name("bogus", 1), std::invalid_argument);
  EXPECT_THROW((void)mp::detail::pool_worker_name("", 1), std::invalid_argument);
}

TEST(Context, SetStartMethodOnceUnlessForced) {
  // Each test runs in its own process under ctest, but restore the default anyway.
  EXPECT_EQ(mp::get_start_method(true), std::nullopt);
  EXPECT_EQ(mp::get_start_method(), "fork");  // fixes the default, as Python
  EXPECT_THROW(mp::set_start_method("spawn"), std::logic_error);
  mp::set_start_method("spawn", true);
  EXPECT_EQ(mp::get_start_method(), "spawn");
  EXPECT_EQ(mp::get_context().get_start_method(), "spawn");
  EXPECT_THROW(mp::set_start_method("bogus", true), std::invalid_argument);
  EXPECT_EQ(mp::get_start_method(), "spawn");
  mp::set_start_method("fork", true);
}

TEST(Context, DefaultMethodReachesChildrenAndProcesses) {
  mp::set_start_method("spawn", true);
  mp::Process p(&exit_with, 6);
  EXPECT_EQ(p.start_method(), "spawn");
  p.start();
  ASSERT_TRUE(p.join(std::chrono::seconds(30)));
  EXPECT_EQ(p.exitcode(), 6);
  mp::set_start_method("fork", true);
}

TEST(Context, GetContext) {
  EXPECT_THROW(mp::get_context("forkserverish"), std::invalid_argument);
  for (const auto& method : mp_test::start_methods()) {
    auto ctx = mp::get_context(method);
    EXPECT_EQ(ctx.get_start_method(), method);
    mp::Process p = ctx.process(&exit_with, 8);
    EXPECT_EQ(p.start_method(), method);
    p.start();
    ASSERT_TRUE(p.join(std::chrono::seconds(30)));
    EXPECT_EQ(p.exitcode(), 8);
    mp::Process named = ctx.process({.name = "ctx-named"}, &exit_with, 0);
    EXPECT_EQ(named.name(), "ctx-named");
    EXPECT_EQ(named.start_method(), method);
  }
}

TEST(Context, UnknownStartMethodInOptions) {
  mp::Process p({.start_method = "teleport"}, &exit_with, 0);
  EXPECT_THROW(p.start(), std::invalid_argument);
  EXPECT_EQ(p.pid(), 0);
}

TEST(Context, CpuCountHonoursAffinity) {
  cpu_set_t saved;
  ASSERT_EQ(sched_getaffinity(0, sizeof saved, &saved), 0);
  int n = mp::cpu_count();
  EXPECT_GE(n, 1);
  EXPECT_LE(n, CPU_COUNT(&saved));
  cpu_set_t one;
  CPU_ZERO(&one);
  for (int cpu = 0; cpu < CPU_SETSIZE; ++cpu) {
    if (CPU_ISSET(cpu, &saved)) {
      CPU_SET(cpu, &one);
      break;
    }
  }
  ASSERT_EQ(sched_setaffinity(0, sizeof one, &one), 0);
  EXPECT_EQ(mp::cpu_count(), 1);
  ASSERT_EQ(sched_setaffinity(0, sizeof saved, &saved), 0);
}

TEST(Context, SpawnWithoutFreezeSupportFailsClearly) {
  // A program that never calls mp::freeze_support (tests/programs/no_freeze_support.cpp).
  auto result = mp_test::run_command({MP_NO_FREEZE_SUPPORT_PATH});
  EXPECT_EQ(result.exit_status, 0) << result.out << result.err;
  EXPECT_NE(result.out.find("freeze_support"), std::string::npos) << result.out;
  EXPECT_NE(result.out.find("fork ok"), std::string::npos) << result.out;
}

TEST(Context, SpawnChildRefusesBadBootstrap) {
  // The re-executed binary with a bootstrap fd that yields garbage: a clear message,
  // exit 1, and nothing run.
  mp_test::TempDir dir;
  mp_test::write_file(dir.file("garbage"),
                      std::string("\x05\x00\x00\x00\x00\x00\x00\x00hello", 13));
  auto result = mp_test::run_command(
      {"/bin/sh", "-c", "exec 3<" + dir.file("garbage") + "; exec \"$0\" --mp-spawn 3",
       MP_TESTS_BINARY_PATH});
  EXPECT_EQ(result.exit_status, 1) << result.err;
  EXPECT_NE(result.err.find("corrupt bootstrap"), std::string::npos) << result.err;

  // A bootstrap from another binary: named as such before anything else is parsed.
  std::string id = mp::pickle::dumps(std::string("0123abcd:some-other-program"));
  std::uint64_t length = id.size();
  mp_test::write_file(dir.file("other"),
                      std::string(reinterpret_cast<const char*>(&length), sizeof length) + id);
  auto other = mp_test::run_command({"/bin/sh", "-c",
                                     "exec 3<" + dir.file("other") + "; exec \"$0\" --mp-spawn 3",
                                     MP_TESTS_BINARY_PATH});
  EXPECT_EQ(other.exit_status, 1) << other.err;
  EXPECT_NE(other.err.find("is not the parent's (0123abcd:some-other-program)"), std::string::npos)
      << other.err;

  auto empty = mp_test::run_command(
      {"/bin/sh", "-c", "exec 3</dev/null; exec \"$0\" --mp-spawn 3", MP_TESTS_BINARY_PATH});
  EXPECT_EQ(empty.exit_status, 1);
  EXPECT_NE(empty.err.find("no bootstrap"), std::string::npos) << empty.err;
}

// `--mp-spawn` makes a re-executed child of this binary only with an fd number after it;
// anything else is left to the program (it never reads a bootstrap from stdin).
[[noreturn]] void freeze_support_with_spawn_flag(const char* fd) {
  std::string arg0 = "mp_tests", flag = "--mp-spawn", fd_text = fd;
  char* argv[] = {arg0.data(), flag.data(), fd_text.data(), nullptr};
  mp::freeze_support(3, argv);
  std::_Exit(0);
}

TEST(Context, SpawnFlagWithoutAnFdNumberIsNoChild) {
  for (const char* fd : {"", "x", "3x", "-1", "+3", "3 ", " 3", "99999999999999999999"}) {
    EXPECT_EXIT(freeze_support_with_spawn_flag(fd), ::testing::ExitedWithCode(0), "")
        << "--mp-spawn '" << fd << "'";
  }
}

// ---- The start method of a child ---------------------------------------------------------
// A child's default start method is the method that started it, a context's included,
// so its own children start the same way: Python's Process._bootstrap forces the
// child's context to its start method.

void write_default_method(std::string path) {
  mp_test::write_file(path, mp::get_start_method().value_or("none"));
}

// Writes, one per line: the child's default method, its current_process().start_method(),
// the method of a child it makes without naming one, and whether that child ran (it
// writes its own default to path + ".grandchild").
void report_start_methods(std::string path) {
  std::string text = mp::get_start_method(true).value_or("none") + "\n" +
                     mp::current_process().start_method() + "\n";
  mp::Process grandchild(&write_default_method, path + ".grandchild");
  text += grandchild.start_method() + "\n";
  grandchild.start();
  const bool ended = grandchild.join(std::chrono::seconds(60));
  text += ended && grandchild.exitcode() == 0 ? "grandchild ok" : "grandchild failed";
  mp_test::write_file(path, text);
}

class ChildStartMethod : public ::testing::TestWithParam<std::string> {
 protected:
  // The method the parent's default is set to while the child starts with GetParam().
  std::string other_method() const {
    const auto& methods = mp_test::start_methods();
    for (std::size_t i = 0; i < methods.size(); ++i)
      if (methods[i] == GetParam()) return mp_test::start_method_in_turn(i + 1);
    return methods.front();
  }

  void expect_child_reports(mp::Process& p, const std::string& path) {
    p.start();
    ASSERT_TRUE(p.join(std::chrono::seconds(90)));
    ASSERT_EQ(p.exitcode(), 0);
    const std::string method = GetParam();
    EXPECT_EQ(mp_test::read_file(path).value_or("(no report)"),
              method + "\n" + method + "\n" + method + "\ngrandchild ok");
    EXPECT_EQ(mp_test::read_file(path + ".grandchild").value_or("(no report)"), method);
  }

  void TearDown() override { mp::set_start_method(mp_test::start_methods().front(), true); }
};

TEST_P(ChildStartMethod, ContextMethodBecomesTheChildsDefault) {
  mp::set_start_method(other_method(), true);
  mp_test::TempDir dir;
  const std::string path = dir.file("report");
  mp::Process p = mp::get_context(GetParam()).process(&report_start_methods, path);
  expect_child_reports(p, path);
  EXPECT_EQ(mp::get_start_method(), other_method()) << "the parent's default changed";
}

TEST_P(ChildStartMethod, OptionsMethodBecomesTheChildsDefault) {
  mp::set_start_method(other_method(), true);
  mp_test::TempDir dir;
  const std::string path = dir.file("report");
  mp::Process p({.start_method = GetParam()}, &report_start_methods, path);
  expect_child_reports(p, path);
}

TEST_P(ChildStartMethod, ChangedDefaultReachesTheChild) {
  mp::set_start_method(GetParam(), true);
  mp_test::TempDir dir;
  const std::string path = dir.file("report");
  mp::Process p(&report_start_methods, path);
  expect_child_reports(p, path);
}

// Starting a child through a context leaves an unset default unset (Python fixes it as
// a side effect; its documentation says contexts leave the global default alone).
TEST_P(ChildStartMethod, ContextLeavesAnUnsetDefaultUnset) {
  if (mp::get_start_method(true))
    GTEST_SKIP() << "an earlier test of this process set the default (ctest runs each alone)";
  mp::Process p = mp::get_context(GetParam()).process(&exit_with, 0);
  p.start();
  ASSERT_TRUE(p.join(std::chrono::seconds(60)));
  EXPECT_EQ(p.exitcode(), 0);
  EXPECT_EQ(mp::get_start_method(true), std::nullopt);
}

INSTANTIATE_TEST_SUITE_P(StartMethods, ChildStartMethod,
                         ::testing::ValuesIn(mp_test::start_methods()), mp_test::method_name);

}  // namespace
