// Tests for <mp/errors.hpp>: the hierarchy Python users expect, and the messages.
#include <gtest/gtest.h>

#include <csignal>
#include <type_traits>

#include <mp/errors.hpp>

namespace {

TEST(Errors, HierarchyMirrorsPython) {
  static_assert(std::is_base_of_v<std::runtime_error, mp::ProcessError>);
  static_assert(std::is_base_of_v<mp::ProcessError, mp::TimeoutError>);
  static_assert(std::is_base_of_v<mp::ProcessError, mp::RemoteError>);
  static_assert(std::is_base_of_v<mp::ProcessError, mp::BrokenProcessPool>);
  static_assert(std::is_base_of_v<mp::BrokenProcessPool, mp::WorkerLostError>);
  static_assert(std::is_base_of_v<mp::ProcessError, mp::UnpicklingError>);
  // queue.Empty and queue.Full are not ProcessErrors in Python either.
  static_assert(std::is_base_of_v<std::runtime_error, mp::Empty>);
  static_assert(!std::is_base_of_v<mp::ProcessError, mp::Empty>);
  static_assert(!std::is_base_of_v<mp::ProcessError, mp::Full>);
}

TEST(Errors, DescribeExitcode) {
  EXPECT_EQ(mp::describe_exitcode(std::nullopt), "still running");
  EXPECT_EQ(mp::describe_exitcode(0), "exit code 0");
  EXPECT_EQ(mp::describe_exitcode(3), "exit code 3");
  EXPECT_EQ(mp::describe_exitcode(-SIGKILL), "killed by SIGKILL");
  EXPECT_EQ(mp::describe_exitcode(-SIGTERM), "killed by SIGTERM");
}

TEST(Errors, WorkerLostNamesPidAndSignal) {
  mp::WorkerLostError e(1234, -SIGKILL);
  EXPECT_EQ(e.pid(), 1234);
  EXPECT_EQ(e.exitcode(), -SIGKILL);
  std::string what = e.what();
  EXPECT_NE(what.find("1234"), std::string::npos);
  EXPECT_NE(what.find("SIGKILL"), std::string::npos);
}

TEST(Errors, RemoteErrorKeepsTypeAndMessage) {
  mp::RemoteError e("std::invalid_argument", "bad x");
  EXPECT_EQ(e.type_name(), "std::invalid_argument");
  EXPECT_EQ(e.message(), "bad x");
  EXPECT_STREQ(e.what(), "std::invalid_argument: bad x");
}

TEST(Errors, RemoteErrorWhatNamesTheTaskAndHoldsTheTraceback) {
  mp::RemoteError e("std::invalid_argument", "bad x", "map item 17", " 0# f(int) at a.cpp:3\n");
  EXPECT_EQ(e.task(), "map item 17");
  EXPECT_EQ(e.traceback(), " 0# f(int) at a.cpp:3\n");
  EXPECT_STREQ(e.what(),
               "std::invalid_argument: bad x [in map item 17]\n"
               "Remote traceback (most recent call first):\n 0# f(int) at a.cpp:3\n");
}

TEST(Errors, BufferTooShortKeepsMessage) {
  mp::BufferTooShort e(std::string(100, 'x'));
  EXPECT_EQ(e.message().size(), 100u);
}

}  // namespace
