// Runs the real mp-demo binary and checks what it prints.
#include <gtest/gtest.h>

#include <algorithm>
#include <sstream>
#include <string>
#include <vector>

#include "test_util.hpp"

namespace {

using mp_test::lines_of;

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

// The lines of `lines` that start with `prefix`, in order.
std::vector<std::string> lines_starting(const std::vector<std::string>& lines,
                                        const std::string& prefix) {
  std::vector<std::string> found;
  for (const auto& line : lines)
    if (line.rfind(prefix, 0) == 0) found.push_back(line);
  return found;
}

// Runs `mp-demo value` with `flags`: foo reads 100 and writes 1234 to its value, bar reads
// twice, the second time after foo's write; foo and bar print concurrently, so each one's
// lines are checked in its own order. `after_write` is what bar's second read and main see.
void expect_value_demo(const std::string& method, std::vector<std::string> flags,
                       const std::string& after_write) {
  std::vector<std::string> argv{MP_DEMO_PATH, "value"};
  argv.insert(argv.end(), flags.begin(), flags.end());
  argv.insert(argv.end(), {"--start-method", method});
  auto result = mp_test::run_command(argv);
  ASSERT_EQ(result.exit_status, 0) << result.err;
  auto lines = lines_of(result.out);
  ASSERT_EQ(lines.size(), 5u) << result.out;
  EXPECT_EQ(lines_starting(lines, "In foo"),
            (std::vector<std::string>{"In foo[Process-1]: value = 100",
                                      "In foo[Process-1]: value is set to 1234"}))
      << result.out;
  EXPECT_EQ(lines_starting(lines, "In bar"),
            (std::vector<std::string>{"In bar[Process-2]: value = 100",
                                      "In bar[Process-2]: value = " + after_write}))
      << result.out;
  EXPECT_EQ(lines.back(), "In main: value = " + after_write);
}

// bar sees foo's write: the Value is shared.
TEST_P(DemoTest, ValueIsShared) { expect_value_demo(GetParam(), {"--delay", "0.05"}, "1234"); }

// Each process writes its own copy: bar and main still see 100.
TEST_P(DemoTest, ValueUnsharedIsCopied) {
  expect_value_demo(GetParam(), {"--unshared", "--delay", "0.02"}, "100");
}

// Runs `mp-demo array` on `text` (an argument, or standard input when `from_stdin`): the
// children run one after the other, so the output is fixed, line for line. `repr`,
// `upper_repr` and `split_repr` are Python's reprs of the text, of it upper-cased, and of
// it upper-cased with each space made a newline.
void expect_array_demo(const std::string& method, const std::string& text, bool from_stdin,
                       const std::string& repr, const std::string& upper_repr,
                       const std::string& split_repr) {
  std::vector<std::string> argv{MP_DEMO_PATH, "array", "--delay", "0", "--start-method", method};
  if (!from_stdin) argv.push_back(text);
  auto result = mp_test::run_command(argv, from_stdin ? text + "\n" : "");
  ASSERT_EQ(result.exit_status, 0) << result.err;
  EXPECT_EQ(lines_of(result.out), (std::vector<std::string>{
                                      "In foo[Process-1]: array = " + repr,
                                      "In bar[Process-2]: value = " + upper_repr,
                                      "In main: value = <SynchronizedString wrapper for "
                                      "<multiprocessing.sharedctypes.c_char_Array_" +
                                          std::to_string(text.size()) + " object>>",
                                      "String = " + split_repr,
                                  }))
      << result.out;
}

TEST_P(DemoTest, ArrayFromArgument) {
  expect_array_demo(GetParam(), "hello world", false, "b'hello world'", "b'HELLO WORLD'",
                    "b'HELLO\\nWORLD'");
}

TEST_P(DemoTest, ArrayFromStdin) {
  expect_array_demo(GetParam(), "it's a b-1", true, "b\"it's a b-1\"", "b\"IT'S A B-1\"",
                    "b\"IT'S\\nA\\nB-1\"");
}

TEST_P(DemoTest, DictIsShared) {
  auto result =
      mp_test::run_command({MP_DEMO_PATH, "dict", "--delay", "0.1", "--start-method", GetParam()});
  ASSERT_EQ(result.exit_status, 0) << result.err;
  // foo prints before the children meet, bar after foo's writes: the order is fixed.
  EXPECT_EQ(lines_of(result.out),
            (std::vector<std::string>{
                "In foo[Process-1]: d contains {'name': 'Jones', 'role': 'Developer', "
                "'place': 'Hyderabad'}",
                "In bar[Process-2]: d  contains {'name': 'Smith', 'role': 'Developer', "
                "'place': 'Hyderabad', 'country': 'India'}",
                "In main: contents of d = {'name': 'Smith', 'place': 'Hyderabad', "
                "'country': 'India'}",
                "In main: d = <mp::SharedDict object, typeid 'dict', 3 items>",
            }))
      << result.out;
}

INSTANTIATE_TEST_SUITE_P(StartMethods, DemoTest, ::testing::ValuesIn(mp_test::start_methods()),
                         mp_test::method_name);

TEST(Demo, HelpListsSubcommands) {
  auto result = mp_test::run_command({MP_DEMO_PATH, "--help"});
  EXPECT_EQ(result.exit_status, 0);
  EXPECT_NE(result.out.find("process"), std::string::npos);
  EXPECT_NE(result.out.find("value"), std::string::npos);
  EXPECT_NE(result.out.find("array"), std::string::npos);
}

TEST(Demo, HelpAndUsageErrorsListEveryStartMethod) {
  auto help = mp_test::run_command({MP_DEMO_PATH, "--help"});
  auto wrong = mp_test::run_command({MP_DEMO_PATH, "process", "--start-method", "teleport"});
  EXPECT_EQ(wrong.exit_status, 2);
  for (const auto& method : mp::get_all_start_methods()) {
    EXPECT_NE(help.out.find(method), std::string::npos) << method << " in " << help.out;
    EXPECT_NE(wrong.err.find(method), std::string::npos) << method << " in " << wrong.err;
  }
}

TEST(Demo, UsageErrorsExitTwo) {
  for (std::vector<std::string> args : {std::vector<std::string>{},
                                        {"no-such-demo"},
                                        {"process", "--delay", "abc"},
                                        {"process", "--delay"},
                                        {"process", "--delay", "-1"},
                                        {"process", "--start-method", "teleport"},
                                        {"process", "--bogus"},
                                        {"process", "extra"},
                                        {"process", "--unshared"},
                                        {"value", "extra"},
                                        {"value", "--delay", "x"},
                                        {"array", "--unshared", "text"}}) {
    args.insert(args.begin(), MP_DEMO_PATH);
    auto result = mp_test::run_command(args);
    EXPECT_EQ(result.exit_status, 2) << args.back();
    EXPECT_NE(result.err.find("usage: mp-demo"), std::string::npos) << result.err;
    EXPECT_TRUE(result.out.empty()) << result.out;
  }
}

}  // namespace

namespace {

// Every subcommand prints; when that cannot be written (a full disk, a closed stdout)
// it says so and exits 1, as coreutils do.
class DemoWriteErrorTest : public ::testing::TestWithParam<std::string> {};

TEST_P(DemoWriteErrorTest, AFailedWriteToStdoutIsAnError) {
  for (const char* demo : {"process", "value", "array", "dict"}) {
    for (const auto& [redirect, message] : std::vector<std::pair<std::string, std::string>>{
             {"> /dev/full", "write error: No space left on device"},
             {">&-", "write error: Bad file descriptor"}}) {
      const std::string command = std::string("exec '") + MP_DEMO_PATH + "' " + demo +
                                  " --delay 0 --start-method " + GetParam() +
                                  (std::string(demo) == "array" ? " text " : " ") + redirect;
      auto result = mp_test::run_command({"/bin/sh", "-c", command});
      EXPECT_EQ(result.exit_status, 1) << command << ": " << result.err;
      EXPECT_NE(result.err.find(std::string("mp-demo ") + demo + ": " + message), std::string::npos)
          << command << ": " << result.err;
    }
  }
  auto help = mp_test::run_command(
      {"/bin/sh", "-c", std::string("exec '") + MP_DEMO_PATH + "' --help > /dev/full"});
  EXPECT_EQ(help.exit_status, 1);
  EXPECT_NE(help.err.find("mp-demo: write error: No space left on device"), std::string::npos)
      << help.err;
}

INSTANTIATE_TEST_SUITE_P(StartMethods, DemoWriteErrorTest,
                         ::testing::ValuesIn(mp_test::start_methods()), mp_test::method_name);

}  // namespace
