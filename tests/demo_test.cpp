// Runs the real mp-demo binary and checks what it prints.
#include <gtest/gtest.h>

#include <algorithm>
#include <sstream>
#include <string>
#include <vector>

#include "test_util.hpp"

namespace {

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

class DemoTest : public ::testing::TestWithParam<std::string> {};

TEST_P(DemoTest, ProcessVsThread) {
  auto result = mp_test::run_command(
      {MP_DEMO_PATH, "process", "--delay", "0.02", "--start-method", GetParam()});
  ASSERT_EQ(result.exit_status, 0) << result.err;
  auto lines = lines_of(result.out);
  ASSERT_EQ(lines.size(), 5u) << result.out;
  // Children print concurrently; each line must be there, foo's in foo's order.
  auto has = [&](const std::string& line) {
    return std::find(lines.begin(), lines.end(), line) != lines.end();
  };
  EXPECT_TRUE(has("In foo[Process-1]: value = 100")) << result.out;
  EXPECT_TRUE(has("In foo[Process-1]: value is set to 1234")) << result.out;
  EXPECT_TRUE(has("In bar[Process-2]: value = 100")) << result.out;
  // bar reads again after foo changed its own copy: bar still sees 100.
  EXPECT_EQ(std::count(lines.begin(), lines.end(), "In bar[Process-2]: value = 100"), 2)
      << result.out;
  EXPECT_EQ(lines.back(), "In main: value = 100");
}

INSTANTIATE_TEST_SUITE_P(StartMethods, DemoTest, ::testing::ValuesIn(mp_test::start_methods()),
                         mp_test::method_name);

TEST(Demo, HelpListsSubcommands) {
  auto result = mp_test::run_command({MP_DEMO_PATH, "--help"});
  EXPECT_EQ(result.exit_status, 0);
  EXPECT_NE(result.out.find("process"), std::string::npos);
}

TEST(Demo, UsageErrorsExitTwo) {
  for (std::vector<std::string> args : {std::vector<std::string>{},
                                        {"no-such-demo"},
                                        {"process", "--delay", "abc"},
                                        {"process", "--delay"},
                                        {"process", "--delay", "-1"},
                                        {"process", "--start-method", "teleport"},
                                        {"process", "--bogus"},
                                        {"process", "extra"}}) {
    args.insert(args.begin(), MP_DEMO_PATH);
    auto result = mp_test::run_command(args);
    EXPECT_EQ(result.exit_status, 2) << args.back();
    EXPECT_NE(result.err.find("usage: mp-demo"), std::string::npos) << result.err;
    EXPECT_TRUE(result.out.empty()) << result.out;
  }
}

}  // namespace
