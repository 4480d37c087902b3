// Tests for <mp/logging.hpp>: the level, and what mp logs about a child's life in the
// format Python's log_to_stderr() uses, under every start method.
#include <unistd.h>

#include <gtest/gtest.h>

#include <chrono>
#include <string>

#include <mp/logging.hpp>
#include <mp/process.hpp>
#include <mp/synchronize.hpp>

#include "test_util.hpp"

namespace {

using namespace std::chrono_literals;

TEST(Logging, OffByDefaultAndLevelsFilter) {
  mp::Logger& logger = mp::get_logger();
  const mp::LogLevel saved = logger.level();
  if (std::getenv("MP_LOG_LEVEL") == nullptr) {
    EXPECT_FALSE(logger.is_enabled_for(mp::LogLevel::critical));
  }
  logger.set_level(mp::LogLevel::info);
  EXPECT_TRUE(logger.is_enabled_for(mp::LogLevel::warning));
  EXPECT_TRUE(logger.is_enabled_for(mp::LogLevel::info));
  EXPECT_FALSE(logger.is_enabled_for(mp::LogLevel::debug));
  logger.set_level(saved);
}

class LoggingProcessTest : public ::testing::TestWithParam<std::string> {};

// mp-demo with MP_LOG_LEVEL=debug: each child says it starts and how it exits, the
// parent how each child ended; without it, nothing is logged.
TEST_P(LoggingProcessTest, ChildrenLogTheirLifeWithTheirNames) {
  const std::vector<std::string> demo = {MP_DEMO_PATH, "process",        "--delay",
                                         "0.01",       "--start-method", GetParam()};
  std::vector<std::string> logged = {"/bin/sh", "-c", "MP_LOG_LEVEL=debug exec \"$0\" \"$@\""};
  logged.insert(logged.end(), demo.begin(), demo.end());
  auto result = mp_test::run_command(logged);
  ASSERT_EQ(result.exit_status, 0) << result.err;
  for (const std::string line : {"[INFO/Process-1] child process calling run()\n",
                                 "[INFO/Process-1] process exiting with exitcode 0\n",
                                 "[INFO/Process-2] child process calling run()\n"})
    EXPECT_NE(result.err.find(line), std::string::npos) << line << "in:\n" << result.err;
  EXPECT_NE(result.err.find("[DEBUG/MainProcess] child process "), std::string::npos) << result.err;
  EXPECT_NE(result.err.find(" ended: exit code 0\n"), std::string::npos) << result.err;

  auto quiet =
      mp_test::run_command({"/bin/sh", "-c", "unset MP_LOG_LEVEL; exec \"$0\" \"$@\"", MP_DEMO_PATH,
                            "process", "--delay", "0.01", "--start-method", GetParam()});
  ASSERT_EQ(quiet.exit_status, 0) << quiet.err;
  EXPECT_EQ(quiet.err, "");
}

void hold_lock_forever(mp::Lock lock, mp::Event ready) {
  lock.acquire();
  ready.set();
  for (;;) ::pause();
}

// Taking a lock over from a killed owner is logged as a warning, with the taker's name.
TEST_P(LoggingProcessTest, LockTakenOverFromADeadOwnerIsLogged) {
  mp::Lock lock;
  mp::Event ready;
  mp::Process holder({.start_method = GetParam()}, &hold_lock_forever, lock, ready);
  holder.start();
  ASSERT_TRUE(ready.wait(30s));
  holder.kill();
  ASSERT_TRUE(holder.join(60s));
  mp::Logger& logger = mp::get_logger();
  const mp::LogLevel saved = logger.level();
  logger.set_level(mp::LogLevel::warning);
  ::testing::internal::CaptureStderr();
  const bool taken = lock.acquire(true, 10s);
  const std::string logged = ::testing::internal::GetCapturedStderr();
  logger.set_level(saved);
  ASSERT_TRUE(taken);
  lock.release();
  EXPECT_NE(logged.find("[WARNING/MainProcess] a lock's owner died holding it; the lock was "
                        "taken over\n"),
            std::string::npos)
      << logged;
}

INSTANTIATE_TEST_SUITE_P(StartMethods, LoggingProcessTest,
                         ::testing::ValuesIn(mp_test::start_methods()), mp_test::method_name);

}  // namespace
