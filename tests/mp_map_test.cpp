// Runs the real mp-map binary on real input and checks what it prints and its exit
// status, per start method, failure cases included.
#include <signal.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <set>
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

std::string numbers(int from, int to) {
  std::string out;
  for (int i = from; i <= to; ++i) out += std::to_string(i) + "\n";
  return out;
}

class MpMapTest : public ::testing::TestWithParam<std::string> {
 protected:
  mp_test::CommandResult map(std::vector<std::string> args, const std::string& input = "") {
    std::vector<std::string> argv = {MP_MAP_PATH, "--start-method", GetParam()};
    argv.insert(argv.end(), args.begin(), args.end());
    return mp_test::run_command(argv, input);
  }
};

TEST_P(MpMapTest, SquaresStdinInInputOrder) {
  auto result = map({"-j", "3", "square"}, numbers(1, 1000));
  ASSERT_EQ(result.exit_status, 0) << result.err;
  auto lines = lines_of(result.out);
  ASSERT_EQ(lines.size(), 1000u);
  for (int i = 1; i <= 1000; ++i) ASSERT_EQ(lines[i - 1], std::to_string(i * i));
  EXPECT_EQ(result.err, "");
}

TEST_P(MpMapTest, LongInputKeepsEveryLineAndItsNumber) {
  // Many chunks, a line longer than any read, an empty line, a final line without '\n'.
  std::string input = numbers(1, 200000);
  input += std::string(3 << 20, '1') + "\n\n";
  input += numbers(200001, 200100);
  input += "7";
  auto result = map({"-j", "2", "square"}, input);
  EXPECT_EQ(result.exit_status, 1);
  auto lines = lines_of(result.out);
  ASSERT_EQ(lines.size(), 200101u);
  for (long i = 1; i <= 200100; ++i) ASSERT_EQ(lines[i - 1], std::to_string(i * i)) << i;
  EXPECT_EQ(lines.back(), "49");
  EXPECT_NE(result.err.find("line 200001: '" + std::string(77, '1') + "...': square: "),
            std::string::npos)
      << result.err.substr(0, 300);
  EXPECT_NE(result.err.find("line 200002: '': square: not an integer"), std::string::npos)
      << result.err.substr(0, 300);
}

TEST_P(MpMapTest, UnreadableStdinIsAClearError) {
  // A directory as standard input: read(2) fails with EISDIR.
  auto result = mp_test::run_command(
      {"/bin/sh", "-c",
       std::string("exec '") + MP_MAP_PATH + "' --start-method " + GetParam() + " square < /"});
  EXPECT_EQ(result.exit_status, 1);
  EXPECT_EQ(result.out, "");
  EXPECT_NE(result.err.find("mp-map: reading standard input failed: "), std::string::npos)
      << result.err;
}

TEST_P(MpMapTest, ItemsAndOutputsHoldingNewlinesStayWhole) {
  auto result = map({"--format", "jsonl", "--exec", "printf '%s\\n\\n' {}", ":::", "a\nb", "c"});
  ASSERT_EQ(result.exit_status, 0) << result.err;
  EXPECT_EQ(result.out,
            "{\"input\": \"a\\nb\", \"output\": \"a\\nb\\n\", \"ok\": true, \"error\": null}\n"
            "{\"input\": \"c\", \"output\": \"c\\n\", \"ok\": true, \"error\": null}\n");
  auto plain = map({"--exec", "printf '%s\\n\\n' {}", ":::", "a\nb", "c"});
  ASSERT_EQ(plain.exit_status, 0) << plain.err;
  EXPECT_EQ(plain.out, "a\nb\n\nc\n\n");
}

TEST_P(MpMapTest, ItemsAfterTripleColon) {
  auto result = map({"square", ":::", "3", "-4", "3037000500"});
  ASSERT_EQ(result.exit_status, 0) << result.err;
  EXPECT_EQ(result.out, "9\n16\n9223372037000250000\n");  // past int64: exact, as Python
}

TEST_P(MpMapTest, BuiltInFunctions) {
  struct Case {
    std::string function, item, expected;
  };
  const std::vector<Case> cases = {
      {"isprime", "97", "true"},
      {"isprime", "18446744073709551557", "true"},  // the largest 64-bit prime
      {"isprime", "1", "false"},
      {"count-primes", "1000000", "78498"},
      {"count-primes", "2", "0"},
      {"fib", "0", "0"},
      {"fib", "100", "354224848179261915075"},
      {"factor", "600851475143", "71 839 1471 6857"},
      {"factor", "18446744073709551615", "3 5 17 257 641 65537 6700417"},
      {"sha256", "abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"},
      {"sleep", "0.01", "0.01"},
  };
  for (const auto& c : cases) {
    auto result = map({c.function, ":::", c.item});
    EXPECT_EQ(result.exit_status, 0) << c.function << " " << c.item << ": " << result.err;
    EXPECT_EQ(result.out, c.expected + "\n") << c.function << " " << c.item;
  }
}

TEST_P(MpMapTest, BadItemsAreNamedAndTheOthersStillProcessed) {
  auto result = map({"-j", "2", "square"}, "1\nabc\n3\n\n5\n");
  EXPECT_EQ(result.exit_status, 1);
  EXPECT_EQ(result.out, "1\n9\n25\n");
  EXPECT_NE(result.err.find("line 2: 'abc': square: not an integer"), std::string::npos)
      << result.err;
  EXPECT_NE(result.err.find("line 4: '': square: not an integer"), std::string::npos) << result.err;
}

TEST_P(MpMapTest, HaltOnErrorStopsAtTheFirstFailure) {
  auto result = map({"-j", "1", "--chunksize", "1", "--halt-on-error", "square"}, "1\nx\n3\n");
  EXPECT_EQ(result.exit_status, 1);
  EXPECT_EQ(result.out, "1\n");
  EXPECT_NE(result.err.find("line 2: 'x'"), std::string::npos) << result.err;
}

TEST_P(MpMapTest, UsageErrorsExitTwo) {
  for (const auto& args : std::vector<std::vector<std::string>>{
           {"nosuchfunction"},
           {},
           {"--jobs", "0", "square"},
           {"--format", "xml", "square"},
           {"--bogus", "square"},
           {"square", "extra"},
           {"--exec", "/no/such/program {}"},
       }) {
    auto result = map(args, "1\n");
    EXPECT_EQ(result.exit_status, 2) << ::testing::PrintToString(args) << result.err;
    EXPECT_EQ(result.out, "");
    EXPECT_NE(result.err.find("mp-map: "), std::string::npos);
  }
  auto unknown = map({"nosuchfunction"});
  EXPECT_NE(unknown.err.find("unknown function 'nosuchfunction'"), std::string::npos);
}

TEST_P(MpMapTest, EmptyInputPrintsNothing) {
  auto result = map({"square"}, "");
  EXPECT_EQ(result.exit_status, 0) << result.err;
  EXPECT_EQ(result.out, "");
  EXPECT_EQ(result.err, "");
}

TEST_P(MpMapTest, UnorderedGivesEveryResultOnce) {
  auto result = map({"-j", "4", "--unordered", "--chunksize", "7", "square"}, numbers(1, 500));
  ASSERT_EQ(result.exit_status, 0) << result.err;
  auto lines = lines_of(result.out);
  std::multiset<std::string> got(lines.begin(), lines.end());
  std::multiset<std::string> expected;
  for (int i = 1; i <= 500; ++i) expected.insert(std::to_string(i * i));
  EXPECT_EQ(got, expected);
}

TEST_P(MpMapTest, FormatsTsvAndJsonl) {
  auto tsv = map({"--format", "tsv", "square", ":::", "2", "a\tb"});
  EXPECT_EQ(tsv.exit_status, 1);
  EXPECT_EQ(tsv.out,
            "2\t4\ttrue\t\n"
            "a\\tb\t\tfalse\tsquare: not an integer\n");
  auto jsonl = map({"--format", "jsonl", "square", ":::", "2", "x\"y"});
  EXPECT_EQ(jsonl.exit_status, 1);
  EXPECT_EQ(jsonl.out,
            "{\"input\": \"2\", \"output\": \"4\", \"ok\": true, \"error\": null}\n"
            "{\"input\": \"x\\\"y\", \"output\": null, \"ok\": false, "
            "\"error\": \"square: not an integer\"}\n");
}

TEST_P(MpMapTest, ExecCapturesOutputAndQuotesItems) {
  auto result =
      map({"-j", "2", "--exec", "printf '%s|' {}"}, "plain\nwith space\nit's $HOME\n`x`\n");
  ASSERT_EQ(result.exit_status, 0) << result.err;
  EXPECT_EQ(result.out, "plain|\nwith space|\nit's $HOME|\n`x`|\n");
  // Without a shell (no special characters): the item is one argument.
  auto direct = map({"--exec", "echo", ":::", "a b", "c"});
  ASSERT_EQ(direct.exit_status, 0) << direct.err;
  EXPECT_EQ(direct.out, "a b\nc\n");
}

TEST_P(MpMapTest, ExecNonZeroExitFailsThatItem) {
  auto result = map({"-j", "2", "--exec", "test {} != 2 && echo ok-{}"}, "1\n2\n3\n");
  EXPECT_EQ(result.exit_status, 1);
  EXPECT_EQ(result.out, "ok-1\nok-3\n");
  EXPECT_NE(result.err.find("line 2: '2': the command failed: exit status 1"), std::string::npos)
      << result.err;
}

TEST_P(MpMapTest, TimeoutFailsOnlyTheSlowItem) {
  auto result = map({"-j", "2", "--timeout", "0.5", "sleep"}, "0\n30\n0.01\n");
  EXPECT_EQ(result.exit_status, 1);
  EXPECT_EQ(result.out, "0\n0.01\n");
  EXPECT_NE(result.err.find("line 2: '30': timed out"), std::string::npos) << result.err;
  auto exec = map({"-j", "2", "--timeout", "0.5", "--exec", "sleep {}; echo done"}, "0\n30\n");
  EXPECT_EQ(exec.exit_status, 1);
  EXPECT_EQ(exec.out, "done\n");
  EXPECT_NE(exec.err.find("line 2: '30': timed out after 0.5 s"), std::string::npos) << exec.err;
}

TEST_P(MpMapTest, AWorkerThatDiesFailsOnlyItsItem) {
  // The command kills the worker that runs it (its parent) when the item is 3.
  auto result = map({"-j", "2", "--exec", "if [ {} = 3 ]; then kill -9 $PPID; else echo {}; fi"},
                    numbers(1, 6));
  EXPECT_EQ(result.exit_status, 1) << result.err;
  EXPECT_EQ(result.out, "1\n2\n4\n5\n6\n");
  EXPECT_NE(result.err.find("line 3: '3': "), std::string::npos) << result.err;
  // A worker lost in the middle of a chunk of built-in work: only that item fails.
  auto chunked = map({"-j", "2", "--chunksize", "4", "--exec",
                      "if [ {} = 5 ]; then kill -9 $PPID; else echo {}; fi"},
                     numbers(1, 8));
  EXPECT_EQ(chunked.exit_status, 1) << chunked.err;
  EXPECT_EQ(chunked.out, "1\n2\n3\n4\n6\n7\n8\n");
}

TEST_P(MpMapTest, ProgressGoesToStderrOnly) {
  auto result = map({"--progress", "square"}, numbers(1, 100));
  ASSERT_EQ(result.exit_status, 0) << result.err;
  EXPECT_EQ(lines_of(result.out).size(), 100u);
  EXPECT_EQ(result.out.find('\r'), std::string::npos);
  EXPECT_NE(result.err.find("items/s"), std::string::npos) << result.err;
}

INSTANTIATE_TEST_SUITE_P(StartMethods, MpMapTest, ::testing::ValuesIn(mp_test::start_methods()),
                         mp_test::method_name);

TEST(MpMap, HelpAndVersion) {
  auto help = mp_test::run_command({MP_MAP_PATH, "--help"});
  EXPECT_EQ(help.exit_status, 0);
  for (const char* word :
       {"square", "isprime", "count-primes", "fib", "factor", "sha256", "sleep", "--exec", "--jobs",
        "--unordered", "--timeout", "--halt-on-error", "--progress", "--format", "--start-method"})
    EXPECT_NE(help.out.find(word), std::string::npos) << word;
  auto version = mp_test::run_command({MP_MAP_PATH, "--version"});
  EXPECT_EQ(version.exit_status, 0);
  EXPECT_EQ(version.out.rfind("mp-map ", 0), 0u);
}

}  // namespace
