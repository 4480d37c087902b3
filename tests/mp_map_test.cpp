// Runs the real mp-map binary on real input and checks what it prints and its exit
// status, per start method, failure cases included.
#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdlib.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <mp/context.hpp>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "process_state.hpp"
#include "test_util.hpp"

namespace {

using mp_test::lines_of;

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
  EXPECT_NE(
      result.err.find("line 200001: '" + std::string(80, '1') + "... (3145728 bytes)': square: "),
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

// mp-map replaces a worker from its pool's result thread while its main thread prints:
// with fork asked for, that replacement comes from the fork server, never from a fork of
// the threaded mp-map (its log names each worker as it starts).
TEST_P(MpMapTest, AReplacementWorkerIsNeverForkedFromTheThreadedMapper) {
  auto result = mp_test::run_command({"/usr/bin/env", "MP_LOG_LEVEL=info", MP_MAP_PATH,
                                      "--start-method", GetParam(), "-j", "1", "--timeout", "0.3",
                                      "sleep", ":::", "30", "0", "0"});
  EXPECT_EQ(result.exit_status, 1) << result.err;
  EXPECT_EQ(result.out, "0\n0\n");
  const auto replaced = result.err.find("(the worker was killed and replaced)");
  ASSERT_NE(replaced, std::string::npos) << result.err;
  const std::string method = GetParam() == "fork" ? "forkserver" : GetParam();
  std::string replacement = mp::detail::pool_worker_name(method, 2);
  replacement.pop_back();  // "ForkServerPoolWorker-"
  EXPECT_NE(result.err.find("[INFO/" + replacement, replaced), std::string::npos) << result.err;
  EXPECT_EQ(result.err.find("[INFO/ForkPoolWorker-", replaced), std::string::npos) << result.err;
}

TEST_P(MpMapTest, AWorkerThatDiesFailsOnlyItsItem) {
  // The command kills the worker that runs it (its grandparent: the parent is the worker's
  // launcher) when the item is 3.
  const std::string kill_worker = "kill -9 $(cut -d' ' -f4 /proc/$PPID/stat)";
  auto result =
      map({"-j", "2", "--exec", "if [ {} = 3 ]; then " + kill_worker + "; else echo {}; fi"},
          numbers(1, 6));
  EXPECT_EQ(result.exit_status, 1) << result.err;
  EXPECT_EQ(result.out, "1\n2\n4\n5\n6\n");
  EXPECT_NE(result.err.find("line 3: '3': "), std::string::npos) << result.err;
  // A worker lost in the middle of a chunk of built-in work: only that item fails.
  auto chunked = map({"-j", "2", "--chunksize", "4", "--exec",
                      "if [ {} = 5 ]; then " + kill_worker + "; else echo {}; fi"},
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
  EXPECT_EQ(version.out, "mp-map " MP_PROJECT_VERSION "\n");
  // The start methods are the library's, default first (mp::get_start_method() would
  // fix this process's default).
  std::string choices;
  const auto methods = mp::get_all_start_methods();
  for (std::size_t i = 0; i < methods.size(); ++i)
    choices += (i == 0 ? "" : i + 1 == methods.size() ? " or " : ", ") + methods[i];
  EXPECT_NE(
      help.out.find("--start-method M     " + choices + " (default: " + methods.front() + ")"),
      std::string::npos)
      << help.out;
  auto bad = mp_test::run_command({MP_MAP_PATH, "--start-method", "vfork", "square"});
  EXPECT_EQ(bad.exit_status, 2);
  EXPECT_NE(bad.err.find("--start-method must be " + choices + ", got 'vfork'"), std::string::npos)
      << bad.err;
}

// ---- --exec: the processes it starts, terminals, templates and items ----

// A `sleep` argument that no other process uses: 313.<this process's pid><a counter>.
std::string marked_seconds() {
  static int counter = 0;
  return "313." + std::to_string(::getpid()) + std::to_string(++counter);
}

// The running `sleep SECONDS` processes, found by their command lines in /proc.
std::vector<pid_t> sleeps_with(const std::string& seconds) {
  std::vector<pid_t> found;
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator("/proc", ec)) {
    const std::string name = entry.path().filename().string();
    if (name.find_first_not_of("0123456789") != std::string::npos) continue;
    const auto cmdline = mp_test::read_file((entry.path() / "cmdline").string());
    if (!cmdline) continue;
    std::vector<std::string> args;
    std::istringstream in(*cmdline);
    for (std::string arg; std::getline(in, arg, '\0');) args.push_back(arg);
    if (args.size() >= 2 && std::filesystem::path(args[0]).filename() == "sleep" &&
        args[1] == seconds)
      found.push_back(static_cast<pid_t>(std::stol(name)));
  }
  return found;
}

// Polls (up to 60 s) until at least `count` such sleeps run; true if they do.
bool wait_for_sleeps(const std::string& seconds, std::size_t count) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (std::chrono::steady_clock::now() < deadline) {
    if (sleeps_with(seconds).size() >= count) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return false;
}

// Polls (up to 60 s) until no such sleep runs; kills and returns those still running.
std::vector<pid_t> sleeps_left(const std::string& seconds) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  std::vector<pid_t> left = sleeps_with(seconds);
  while (!left.empty() && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
    left = sleeps_with(seconds);
  }
  for (pid_t pid : left) ::kill(pid, SIGKILL);
  return left;
}

// mp-map running in the background, stdout and stderr to a file.
class Background {
 public:
  explicit Background(const std::vector<std::string>& args) : output_(dir_.file("output")) {
    std::vector<std::string> argv_strings = args;
    std::vector<char*> argv;
    for (std::string& arg : argv_strings) argv.push_back(arg.data());
    argv.push_back(nullptr);
    pid_ = ::fork();
    if (pid_ == 0) {
      const int in = ::open("/dev/null", O_RDONLY);
      const int out = ::open(output_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
      if (in < 0 || out < 0 || ::dup2(in, 0) < 0 || ::dup2(out, 1) < 0 || ::dup2(out, 2) < 0)
        ::_exit(126);
      ::execv(argv[0], argv.data());
      ::_exit(127);
    }
  }
  ~Background() {
    if (pid_ > 0 && !status_) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
  }
  pid_t pid() const { return pid_; }
  // Waits up to 60 s: the exit code or -signal, or nullopt (then kills it).
  std::optional<int> wait() {
    if (!mp_test::wait_gone(pid_, std::chrono::seconds(60))) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
      status_ = -SIGKILL;
      return std::nullopt;
    }
    int raw = 0;
    ::waitpid(pid_, &raw, 0);
    status_ = WIFEXITED(raw) ? WEXITSTATUS(raw) : -WTERMSIG(raw);
    return status_;
  }
  std::string output() const { return mp_test::read_file(output_).value_or(""); }

 private:
  mp_test::TempDir dir_;
  std::string output_;
  pid_t pid_ = -1;
  std::optional<int> status_;
};

class MpMapExecTest : public MpMapTest {
 protected:
  std::vector<std::string> argv(std::vector<std::string> args) {
    std::vector<std::string> all = {MP_MAP_PATH, "--start-method", GetParam()};
    all.insert(all.end(), args.begin(), args.end());
    return all;
  }

  // mp-map, killed with `sig` while its commands sleep, leaves none of them running.
  void expect_nothing_outlives(int sig) {
    const std::string seconds = marked_seconds();
    Background map(
        argv({"-j", "3", "--exec", "sleep " + seconds + "; echo {}", ":::", "a", "b", "c"}));
    ASSERT_TRUE(wait_for_sleeps(seconds, 3)) << map.output();
    ::kill(map.pid(), sig);
    ASSERT_TRUE(map.wait()) << "mp-map did not end after signal " << sig;
    EXPECT_EQ(sleeps_left(seconds), std::vector<pid_t>{}) << "signal " << sig;
  }
};

TEST_P(MpMapExecTest, NothingOutlivesSigterm) { expect_nothing_outlives(SIGTERM); }
TEST_P(MpMapExecTest, NothingOutlivesSigint) { expect_nothing_outlives(SIGINT); }
TEST_P(MpMapExecTest, NothingOutlivesSigkill) { expect_nothing_outlives(SIGKILL); }

TEST_P(MpMapExecTest, NothingOutlivesHaltOnError) {
  // Item x fails once the sleeps of a and b run; the halt then terminates their workers.
  mp_test::TempDir dir;
  const std::string seconds = marked_seconds();
  const std::string flag = dir.file("");
  Background map(argv({"-j", "3", "--halt-on-error", "--exec",
                       "case {} in x) while [ ! -e " + flag + "a ] || [ ! -e " + flag +
                           "b ]; do sleep 0.01; done; exit 1;; *) sleep " + seconds + " & touch " +
                           flag + "{}; wait; echo {};; esac",
                       ":::", "x", "a", "b"}));
  const auto status = map.wait();
  ASSERT_TRUE(status) << "mp-map did not end";
  EXPECT_EQ(*status, 1) << map.output();
  EXPECT_EQ(sleeps_left(seconds), std::vector<pid_t>{});
}

TEST_P(MpMapExecTest, NothingOutlivesANormalExit) {
  // A background job that keeps the output pipe open, and one that does not.
  const std::string holding = marked_seconds();
  const std::string detached = marked_seconds();
  Background map(argv({"-j", "2", "--exec",
                       "sleep " + holding + " & sleep " + detached + " >/dev/null 2>&1 & echo {}",
                       ":::", "a", "b"}));
  const auto status = map.wait();
  ASSERT_TRUE(status) << "mp-map did not end";
  EXPECT_EQ(*status, 0);
  EXPECT_EQ(map.output(), "a\nb\n");
  EXPECT_EQ(sleeps_left(holding), std::vector<pid_t>{});
  EXPECT_EQ(sleeps_left(detached), std::vector<pid_t>{});
}

TEST_P(MpMapExecTest, CommandsCanUseTheTerminal) {
  // mp-map as the session leader of a pseudo-terminal with `stty tostop`: commands that
  // change the terminal's settings and write to it must run, not stop (as under xargs).
  const int master = ::posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
  if (master < 0) GTEST_SKIP() << "no pseudo-terminal here: " << std::strerror(errno);
  ASSERT_EQ(::grantpt(master), 0);
  ASSERT_EQ(::unlockpt(master), 0);
  // Opened before the fork, so that some descriptor of the slave side is open from then
  // on: the master reads EIO once none is.
  const int slave = ::open(::ptsname(master), O_RDWR | O_NOCTTY | O_CLOEXEC);
  ASSERT_GE(slave, 0);
  std::vector<std::string> strings =
      argv({"--no-progress", "-j", "2", "--exec",
            "stty -echo </dev/tty && stty echo </dev/tty && stty size </dev/tty >/dev/null "
            "&& echo err-{} >&2 && echo out-{}",
            ":::", "a", "b"});
  std::vector<char*> args;
  for (std::string& s : strings) args.push_back(s.data());
  args.push_back(nullptr);
  const pid_t pid = ::fork();
  if (pid == 0) {
    ::setsid();
    if (::ioctl(slave, TIOCSCTTY, 0) != 0) ::_exit(126);
    termios settings{};
    ::tcgetattr(slave, &settings);
    settings.c_lflag |= TOSTOP;
    ::tcsetattr(slave, TCSANOW, &settings);
    ::dup2(slave, 0);
    ::dup2(slave, 1);
    ::dup2(slave, 2);
    ::execv(args[0], args.data());
    ::_exit(127);
  }
  ::close(slave);
  ASSERT_GT(pid, 0);
  // Read the terminal until every descriptor of its slave side is closed (EIO), then
  // wait for mp-map's exit; both within 60 s.
  std::string output;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  bool hung_up = false;
  while (!hung_up && std::chrono::steady_clock::now() < deadline) {
    pollfd fd{master, POLLIN, 0};
    if (::poll(&fd, 1, 100) <= 0) continue;
    char buffer[4096];
    const ssize_t n = ::read(master, buffer, sizeof buffer);
    if (n > 0)
      output.append(buffer, static_cast<std::size_t>(n));
    else
      hung_up = true;
  }
  const bool exited = hung_up && mp_test::wait_gone(pid, std::chrono::seconds(60));
  int raw = 0;
  if (!exited) ::kill(-pid, SIGKILL);  // mp-map's process group, stopped commands included
  ::waitpid(pid, &raw, 0);
  ::close(master);
  ASSERT_TRUE(exited) << "mp-map did not end; the terminal showed: " << output;
  EXPECT_TRUE(WIFEXITED(raw) && WEXITSTATUS(raw) == 0) << output;
  for (const char* text : {"out-a", "out-b", "err-a", "err-b"})
    EXPECT_NE(output.find(text), std::string::npos) << text << " in " << output;
}

TEST_P(MpMapExecTest, StartErrorsNameWhatFailed) {
  // The program exists, but its interpreter does not: execv fails in the child.
  mp_test::TempDir dir;
  const std::string program = dir.file("broken");
  mp_test::write_file(program, "#!/nonexistent/interpreter\n");
  ASSERT_EQ(::chmod(program.c_str(), 0755), 0);
  auto result = map({"--exec", program + " {}", ":::", "a"});
  EXPECT_EQ(result.exit_status, 1);
  EXPECT_NE(result.err.find("argument 1: 'a': starting the command: execv " + program +
                            ": No such file or directory"),
            std::string::npos)
      << result.err;
}

// Runs `argv` with at most `tasks` processes and threads for its user (RLIMIT_NPROC);
// returns its exit status and stderr. The limit binds root too: as root, the command
// runs as a user id of its own (its own processes are then all that count); otherwise
// the limit is set above what the user runs already.
mp_test::CommandResult run_with_few_processes(const std::vector<std::string>& argv, int tasks) {
  rlim_t limit = static_cast<rlim_t>(tasks);
  const bool root = ::geteuid() == 0;
  if (!root) {
    // Threads and processes of this user now (the limit counts both).
    std::size_t running = 0;
    std::error_code ec;
    for (const auto& entry : std::filesystem::directory_iterator("/proc", ec)) {
      struct stat info {};
      if (::stat(entry.path().c_str(), &info) == 0 && info.st_uid == ::getuid()) {
        const auto status = mp_test::read_file((entry.path() / "status").string());
        const auto at = status ? status->find("Threads:") : std::string::npos;
        running += at == std::string::npos ? 1 : std::stoul(status->substr(at + 8));
      }
    }
    limit += running;
  }
  int err[2];
  if (::pipe2(err, O_CLOEXEC) != 0) throw std::runtime_error("pipe2 failed");
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  const uid_t uid = 60000 + static_cast<uid_t>(::getpid() % 5000);
  const pid_t pid = ::fork();
  if (pid == 0) {
    const int null = ::open("/dev/null", O_RDWR);
    ::dup2(null, 0);
    ::dup2(null, 1);
    ::dup2(err[1], 2);
    const rlimit few{limit, limit};
    if (::setrlimit(RLIMIT_NPROC, &few) != 0) ::_exit(120);
    if (root && (::setgroups(0, nullptr) != 0 || ::setgid(uid) != 0 || ::setuid(uid) != 0))
      ::_exit(121);
    ::execv(args[0], args.data());
    ::_exit(122);
  }
  ::close(err[1]);
  mp_test::CommandResult result;
  char buffer[4096];
  ssize_t n;
  while ((n = ::read(err[0], buffer, sizeof buffer)) > 0)
    result.err.append(buffer, static_cast<std::size_t>(n));
  ::close(err[0]);
  int status = 0;
  ::waitpid(pid, &status, 0);
  result.exit_status = WIFEXITED(status) ? WEXITSTATUS(status) : -WTERMSIG(status);
  return result;
}

TEST_P(MpMapExecTest, AWorkerThatCannotStartIsNamed) {
  // Room for mp-map and three workers: the fourth cannot start.
  auto result = run_with_few_processes(argv({"-j", "8", "square", ":::", "1", "2", "3", "4", "5",
                                             "6", "7", "8", "9", "10", "11", "12"}),
                                       4);
  ASSERT_NE(result.exit_status, 120) << "setrlimit failed";
  ASSERT_NE(result.exit_status, 121) << "cannot change user";
  if (result.exit_status == 122 && ::geteuid() == 0)
    GTEST_SKIP() << "mp-map cannot be run by another user here (a directory above it is "
                    "not open to others)";
  EXPECT_EQ(result.exit_status, 1) << result.err;
  const std::string step = GetParam() == "spawn" ? "posix_spawn " : "fork";
  std::string worker = mp::detail::pool_worker_name(GetParam(), 1);
  worker.pop_back();  // "ForkPoolWorker-"
  const auto at = result.err.find("mp-map: starting " + worker);
  ASSERT_NE(at, std::string::npos) << result.err;
  EXPECT_NE(result.err.find(": " + step, at), std::string::npos) << result.err;
  EXPECT_NE(result.err.find("Resource temporarily unavailable\n", at), std::string::npos)
      << result.err;
}

TEST_P(MpMapExecTest, QuotedPlaceholdersAreRefused) {
  mp_test::TempDir dir;
  const std::string victim = dir.file("touched");
  const std::string item = "$(touch " + victim + ")";
  for (const std::string& command :
       {std::string("echo '{}'"), std::string("echo \"{}\""), std::string("echo \"x {} y\""),
        std::string("echo 'a'\"b{}\""), std::string("echo \\{}"), std::string("echo ${}"),
        std::string("echo \"$(echo a)\" \"{}\""), std::string("cat <<EOF\n{}\nEOF")}) {
    auto result = map({"--exec", command, ":::", item});
    EXPECT_EQ(result.exit_status, 2) << command << ": " << result.err;
    EXPECT_NE(result.err.find("leave {} unquoted"), std::string::npos) << command << result.err;
    EXPECT_EQ(result.out, "");
  }
  // Quotes elsewhere, {} inside $(...) within quotes, {} in a comment: accepted.
  for (const std::string& command :
       {std::string("printf '%s\\n' {}"), std::string("echo \"$(echo {})\""),
        std::string("echo {} # not '{}'")}) {
    auto result = map({"--exec", command, ":::", item});
    EXPECT_EQ(result.exit_status, 0) << command << ": " << result.err;
    EXPECT_EQ(result.out, item + "\n") << command;
  }
  EXPECT_FALSE(std::filesystem::exists(victim));
}

TEST_P(MpMapExecTest, AnItemHoldingANulByteFailsAlone) {
  const std::string input = std::string("keep.txt\0.bak", 13) + "\nother\n";
  for (const std::string& command : {std::string("echo rm {}"), std::string("echo rm {} | cat")}) {
    auto result = map({"--exec", command}, input);
    EXPECT_EQ(result.exit_status, 1) << command;
    EXPECT_EQ(result.out, "rm other\n") << command;
    EXPECT_NE(result.err.find("line 1: 'keep.txt\\x00.bak': the item holds a NUL byte"),
              std::string::npos)
        << result.err;
  }
}

TEST_P(MpMapExecTest, AnItemTooLongForACommandArgumentFailsAlone) {
  // One argument holds at most 128 KiB (MAX_ARG_STRLEN); the item beside it still runs.
  const std::string fits(100000, 'f');
  const std::string too_long(200000, 'x');
  for (const std::string& command : {std::string("echo {}"), std::string("echo {} | wc -c")}) {
    auto result = map({"--exec", command}, fits + "\n" + too_long + "\nshort\n");
    EXPECT_EQ(result.exit_status, 1) << command << ": " << result.err;
    const auto lines = lines_of(result.out);
    ASSERT_EQ(lines.size(), 2u) << command << ": " << result.err;
    EXPECT_EQ(lines[1], command == "echo {}" ? "short" : "6") << command;
    EXPECT_NE(result.err.find("line 2: 'xxx"), std::string::npos) << result.err;
    EXPECT_NE(result.err.find("the item is too long to pass to a command"), std::string::npos)
        << result.err;
    EXPECT_EQ(result.err.find("line 1"), std::string::npos) << result.err;
    EXPECT_EQ(result.err.find("line 3"), std::string::npos) << result.err;
  }
}

TEST_P(MpMapExecTest, AChunkWithLargeOutputsRunsEachItemOnce) {
  // Four items in one chunk, 1.2 MB of outputs: the chunk's result comes back whole (a
  // result mp-map could not load would make it retry the items one by one).
  mp_test::TempDir dir;
  const std::string log = dir.file("log");
  auto result = map({"-j", "1", "--chunksize", "4", "--exec",
                     "echo {} >> " + log + "; head -c 300000 /dev/zero | tr '\\0' {}", ":::", "a",
                     "b", "c", "d"});
  ASSERT_EQ(result.exit_status, 0) << result.err;
  EXPECT_EQ(result.out, std::string(300000, 'a') + "\n" + std::string(300000, 'b') + "\n" +
                            std::string(300000, 'c') + "\n" + std::string(300000, 'd') + "\n");
  EXPECT_EQ(mp_test::read_file(log).value_or(""), "a\nb\nc\nd\n");
}

TEST_P(MpMapExecTest, ProgramsAreFoundAsExecvpFindsThem) {
  mp_test::TempDir dir;
  // A directory named echo early in PATH does not shadow the real echo.
  std::filesystem::create_directories(dir.file("bin") + "/echo");
  const char* path = std::getenv("PATH");
  auto shadowed = mp_test::run_command(
      {"/usr/bin/env", "PATH=" + dir.file("bin") + ":" + (path ? path : "/usr/bin:/bin"),
       MP_MAP_PATH, "--start-method", GetParam(), "--exec", "echo {}", ":::", "hi"});
  EXPECT_EQ(shadowed.exit_status, 0) << shadowed.err;
  EXPECT_EQ(shadowed.out, "hi\n");
  auto directory = map({"--exec", "/tmp {}", ":::", "a"});
  EXPECT_EQ(directory.exit_status, 2);
  EXPECT_NE(directory.err.find("cannot run /tmp: is a directory"), std::string::npos)
      << directory.err;
  mp_test::write_file(dir.file("plain"), "echo hi\n");
  auto not_executable = map({"--exec", dir.file("plain") + " {}", ":::", "a"});
  EXPECT_EQ(not_executable.exit_status, 2);
  EXPECT_NE(not_executable.err.find("not executable"), std::string::npos) << not_executable.err;
  auto missing = map({"--exec", "no-such-program-mp-map {}", ":::", "a"});
  EXPECT_EQ(missing.exit_status, 2);
  EXPECT_NE(missing.err.find("command not found: no-such-program-mp-map"), std::string::npos)
      << missing.err;
}

TEST_P(MpMapExecTest, BuiltInNumbersAreASignAndDigits) {
  for (const auto& [function, item] :
       std::vector<std::pair<std::string, std::string>>{{"square", "+-5"},
                                                        {"square", "-+5"},
                                                        {"square", "--5"},
                                                        {"square", "5-"},
                                                        {"square", "+"},
                                                        {"isprime", "+-7"},
                                                        {"isprime", "-7"},
                                                        {"fib", "+-3"},
                                                        {"factor", "+-6"},
                                                        {"count-primes", "+-10"},
                                                        {"sleep", "1e-3"},
                                                        {"sleep", "inf"},
                                                        {"sleep", "-0"},
                                                        {"sleep", "+-0"},
                                                        {"sleep", "."}}) {
    auto result = map({function, ":::", item});
    EXPECT_EQ(result.exit_status, 1) << function << " " << item << ": " << result.out;
    EXPECT_EQ(result.out, "") << function << " " << item;
  }
  auto good = map({"square", ":::", "+5", "-5", " 7 "});
  EXPECT_EQ(good.exit_status, 0) << good.err;
  EXPECT_EQ(good.out, "25\n25\n49\n");
  auto seconds = map({"sleep", ":::", "0.01", "+0", "0."});
  EXPECT_EQ(seconds.exit_status, 0) << seconds.err;
}

TEST_P(MpMapExecTest, LongAndControlValuesAreCutAndEscapedInMessages) {
  const std::string huge(100000, 'x');
  for (const auto& args : std::vector<std::vector<std::string>>{
           {"--jobs", huge, "square"},
           {huge},
           {"--format", huge, "square"},
           {"--exec", huge + " {}"},
       }) {
    auto result = map(args, "1\n");
    EXPECT_EQ(result.exit_status, 2);
    EXPECT_LT(result.err.size(), 1000u) << result.err.substr(0, 200);
    EXPECT_NE(result.err.find(std::string(80, 'x') + "... (100000 bytes)"), std::string::npos)
        << result.err.substr(0, 300);
  }
  auto item = map({"square"}, huge + "\n");
  EXPECT_EQ(item.exit_status, 1);
  EXPECT_LT(item.err.size(), 1000u);
  EXPECT_NE(item.err.find("... (100000 bytes)': square: not an integer"), std::string::npos)
      << item.err.substr(0, 300);
  // Control bytes: escaped in messages; raw in plain output; escaped by jsonl.
  const std::string colored = "a\x1b[31mb";
  auto bad = map({"square", ":::", colored});
  EXPECT_NE(bad.err.find("'a\\x1b[31mb'"), std::string::npos) << bad.err;
  EXPECT_EQ(bad.err.find('\x1b'), std::string::npos);
  auto plain = map({"--exec", "echo", ":::", colored});
  EXPECT_EQ(plain.out, colored + "\n");
  auto jsonl = map({"--format", "jsonl", "--exec", "echo", ":::", colored});
  EXPECT_NE(jsonl.out.find("\"output\": \"a\\u001b[31mb\""), std::string::npos) << jsonl.out;
}

TEST_P(MpMapExecTest, HelpShowsHowToQuote) {
  auto help = mp_test::run_command({MP_MAP_PATH, "--help"});
  EXPECT_NE(help.out.find("leave {} unquoted"), std::string::npos);
  EXPECT_NE(help.out.find("'rm -- {}'"), std::string::npos);
  // With --, an item that starts with '-' stays an argument.
  auto dashed = map({"--exec", "basename -- {}", ":::", "-n"});
  EXPECT_EQ(dashed.exit_status, 0) << dashed.err;
  EXPECT_EQ(dashed.out, "-n\n");
}

INSTANTIATE_TEST_SUITE_P(StartMethods, MpMapExecTest, ::testing::ValuesIn(mp_test::start_methods()),
                         mp_test::method_name);

}  // namespace

// ---- streams: live input, long lines, write errors, signals, per-item timeouts ----

namespace streams {

// mp-map running with its stdin a pipe the test holds open, and its stdout a pipe the
// test reads (or a file). Every wait has a generous deadline; nothing sleeps to order
// events.
class Running {
 public:
  explicit Running(const std::vector<std::string>& argv, const std::string& stdout_file = "") {
    const mp_test::SpawnedChild child = mp_test::spawn_with_pipes(argv, stdout_file);
    pid_ = child.pid;
    in_ = child.in;
    out_ = child.out;
    err_ = child.err;
  }
  ~Running() {
    close_input();
    close_output();
    if (err_ >= 0) ::close(err_);
    if (pid_ > 0 && !reaped_) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
  }

  pid_t pid() const { return pid_; }

  // Writes all of `text` to mp-map's stdin in pieces of `piece` bytes.
  void write(const std::string& text, std::size_t piece = 1 << 16) {
    for (std::size_t done = 0; done < text.size();) {
      const ssize_t n = ::write(in_, text.data() + done, std::min(piece, text.size() - done));
      if (n <= 0) throw std::runtime_error("write to mp-map failed");
      done += static_cast<std::size_t>(n);
    }
  }
  void close_input() {
    if (in_ >= 0) ::close(in_);
    in_ = -1;
  }
  void close_output() {
    if (out_ >= 0) ::close(out_);
    out_ = -1;
  }

  // Reads stdout until what was read (since the start) ends with `until`, at most
  // `limit`; returns everything read.
  std::string read_until(const std::string& until,
                         std::chrono::seconds limit = std::chrono::seconds(60)) {
    const auto deadline = std::chrono::steady_clock::now() + limit;
    while (out_text_.size() < until.size() ||
           out_text_.compare(out_text_.size() - until.size(), until.size(), until) != 0) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0) break;
      pollfd fd{out_, POLLIN, 0};
      if (::poll(&fd, 1, static_cast<int>(left.count())) <= 0) continue;
      char buffer[4096];
      const ssize_t n = ::read(out_, buffer, sizeof buffer);
      if (n <= 0) break;
      out_text_.append(buffer, static_cast<std::size_t>(n));
    }
    return out_text_;
  }

  // Waits for the exit (at most `limit`): the exit status, -signal, or nullopt if it
  // is still running. Reads stderr meanwhile.
  std::optional<int> wait(std::chrono::seconds limit = std::chrono::seconds(60)) {
    if (!mp_test::wait_gone(pid_, limit)) return std::nullopt;
    int status = 0;
    ::waitpid(pid_, &status, 0);
    reaped_ = true;
    char buffer[4096];
    ssize_t n;
    while ((n = ::read(err_, buffer, sizeof buffer)) > 0)
      err_text_.append(buffer, static_cast<std::size_t>(n));
    return WIFEXITED(status) ? WEXITSTATUS(status) : -WTERMSIG(status);
  }
  const std::string& err() const { return err_text_; }

  // The pids of mp-map's children (its workers) now.
  std::vector<pid_t> children() const {
    std::vector<pid_t> pids;
    auto text = mp_test::read_file("/proc/" + std::to_string(pid_) + "/task/" +
                                   std::to_string(pid_) + "/children");
    std::istringstream in(text.value_or(""));
    for (pid_t child; in >> child;) pids.push_back(child);
    return pids;
  }

 private:
  pid_t pid_ = 0;
  bool reaped_ = false;
  int in_ = -1, out_ = -1, err_ = -1;
  std::string out_text_, err_text_;
};

class MpMapStreamTest : public ::testing::TestWithParam<std::string> {
 protected:
  std::vector<std::string> argv(std::vector<std::string> args) const {
    std::vector<std::string> out = {MP_MAP_PATH, "--start-method", GetParam(), "--no-progress"};
    out.insert(out.end(), args.begin(), args.end());
    return out;
  }
  // Runs mp-map through sh, for redirections: `redirect` follows the command.
  mp_test::CommandResult map_sh(const std::vector<std::string>& args, const std::string& redirect,
                                const std::string& input = "") const {
    std::string command = "exec";
    for (const auto& a : argv(args)) command += " '" + a + "'";
    return mp_test::run_command({"/bin/sh", "-c", command + " " + redirect}, input);
  }
};

void expect_all_gone(const std::vector<pid_t>& pids) {
  for (pid_t pid : pids)
    EXPECT_TRUE(mp_test::wait_gone(pid, std::chrono::milliseconds(60000)))
        << "process " << pid << " is still running";
}

TEST_P(MpMapStreamTest, ResultsAppearWhileTheInputIsStillOpen) {
  // Each step writes some input, then waits for the whole output so far; the input is
  // closed only after the last step.
  struct Step {
    std::string input;
    std::string output_so_far;
  };
  const auto run_steps = [&](const std::vector<std::string>& args, const std::vector<Step>& steps) {
    Running mp_map(argv(args));
    for (const Step& step : steps) {
      mp_map.write(step.input);
      EXPECT_EQ(mp_map.read_until(step.output_so_far), step.output_so_far);
    }
    mp_map.close_input();
    EXPECT_EQ(mp_map.wait(), 0) << mp_map.err();
  };
  run_steps({"-j", "2", "square"}, {{"2\n3\n", "4\n9\n"}, {"4\n", "4\n9\n16\n"}});
  run_steps({"-j", "2", "--unordered", "square"}, {{"2\n", "4\n"}, {"3\n", "4\n9\n"}});
}

TEST_P(MpMapStreamTest, ALongLineArrivingInSmallWritesIsOneItem) {
  const std::string long_line(6 << 20, 'x');
  const std::vector<std::string> lines = {"first", long_line, "", "last"};
  std::string expected;
  for (const auto& line : lines) {
    auto sum = mp_test::run_command({"/usr/bin/sha256sum"}, line);
    ASSERT_EQ(sum.exit_status, 0);
    expected += sum.out.substr(0, 64) + "\n";
  }
  Running mp_map(argv({"-j", "2", "sha256"}));
  for (const auto& line : lines) mp_map.write(line + "\n", 4000);
  mp_map.close_input();
  EXPECT_EQ(mp_map.read_until(expected), expected);
  EXPECT_EQ(mp_map.wait(), 0) << mp_map.err();
}

TEST_P(MpMapStreamTest, ALongLineTakesAtMostTwoCopiesOfMemory) {
  // A 64 MiB line (the last, without its '\n'): mp-map holds it while it reads it and
  // while it hands it over, its worker reads it in place. A line copied for pickling
  // and transport would take four copies or more.
  if (mp_test::kAddressSanitizer)
    GTEST_SKIP() << "AddressSanitizer keeps freed blocks in quarantine and adds shadow memory: "
                    "mp-map's peak resident memory means nothing here";
  constexpr std::size_t kLine = 64 << 20;
  mp_test::TempDir dir;
  const std::string input = dir.file("line");
  mp_test::write_file(input, std::string(kLine, 'a'));
  auto sum = mp_test::run_command({"/usr/bin/sha256sum", input});
  ASSERT_EQ(sum.exit_status, 0);
  const std::string output = dir.file("output");
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 0, input.c_str(), O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&actions, 1, output.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  const auto args = argv({"-j", "2", "sha256"});
  std::vector<char*> pointers;
  for (const auto& a : args) pointers.push_back(const_cast<char*>(a.c_str()));
  pointers.push_back(nullptr);
  pid_t pid = 0;
  ASSERT_EQ(::posix_spawn(&pid, pointers[0], &actions, nullptr, pointers.data(), environ), 0);
  posix_spawn_file_actions_destroy(&actions);
  int status = 0;
  rusage usage{};
  ASSERT_EQ(::wait4(pid, &status, 0, &usage), pid);
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
  EXPECT_EQ(mp_test::read_file(output).value_or(""), sum.out.substr(0, 64) + "\n");
  // The peak of mp-map and of each worker (kilobytes): two copies and a margin for the
  // program itself.
  const long limit_kb = static_cast<long>(2 * kLine + (64 << 20)) / 1024;
  EXPECT_LT(usage.ru_maxrss, limit_kb) << "peak resident memory, KiB";
}

TEST_P(MpMapStreamTest, AFailedWriteToStdoutIsAnError) {
  for (const auto& [redirect, message] : std::vector<std::pair<std::string, std::string>>{
           {"> /dev/full", "mp-map: write error: No space left on device"},
           {">&-", "mp-map: write error: Bad file descriptor"}}) {
    auto few = map_sh({"square", ":::", "1", "2", "3"}, redirect);
    EXPECT_EQ(few.exit_status, 1) << redirect;
    EXPECT_NE(few.err.find(message), std::string::npos) << redirect << ": " << few.err;
    auto many = map_sh({"-j", "2", "square"}, redirect, numbers(1, 100000));
    EXPECT_EQ(many.exit_status, 1) << redirect;
    EXPECT_NE(many.err.find(message), std::string::npos) << redirect << ": " << many.err;
  }
  // Nothing to write: nothing fails.
  auto none = map_sh({"square"}, ">&-", "");
  EXPECT_EQ(none.exit_status, 0) << none.err;
}

TEST_P(MpMapStreamTest, AClosedPipeEndsItQuietlyWithWorkersStopped) {
  Running mp_map(argv({"-j", "2", "--chunksize", "1", "sleep"}));
  mp_map.write("0\n0\n");  // the input stays open: mp-map would wait for more
  EXPECT_EQ(mp_map.read_until("0\n0\n"), "0\n0\n");
  const auto workers = mp_map.children();
  EXPECT_FALSE(workers.empty());
  mp_map.close_output();
  mp_map.write("0\n");  // its result meets the closed pipe
  EXPECT_EQ(mp_map.wait(), -SIGPIPE) << mp_map.err();
  EXPECT_EQ(mp_map.err(), "");
  expect_all_gone(workers);
}

TEST_P(MpMapStreamTest, ASignalPrintsTheCompleteResultsFirst) {
  mp_test::TempDir dir;
  for (int sig : {SIGINT, SIGTERM, SIGHUP}) {
    const std::string out = dir.file("out" + std::to_string(sig));
    Running mp_map(argv({"-j", "4", "sleep", ":::", "0", "0.1", "0.2", "100"}), out);
    // Waits until the three short items are in the file (they are printed as soon as
    // they are next in order), then interrupts the fourth.
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
    while (mp_test::read_file(out).value_or("") != "0\n0.1\n0.2\n" &&
           std::chrono::steady_clock::now() < deadline)
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    ASSERT_EQ(mp_test::read_file(out).value_or(""), "0\n0.1\n0.2\n") << strsignal(sig);
    const auto workers = mp_map.children();
    ::kill(mp_map.pid(), sig);
    EXPECT_EQ(mp_map.wait(), -sig) << strsignal(sig) << ": " << mp_map.err();
    EXPECT_EQ(mp_test::read_file(out).value_or(""), "0\n0.1\n0.2\n") << strsignal(sig);
    expect_all_gone(workers);
  }
}

TEST_P(MpMapStreamTest, ATimeoutFailsTheOverdueItemNotItsChunk) {
  auto result = mp_test::run_command(argv(
      {"-j", "2", "--chunksize", "4", "--timeout", "1.5", "sleep", ":::", "0", "5", "0", "0"}));
  EXPECT_EQ(result.exit_status, 1) << result.err;
  EXPECT_EQ(result.out, "0\n0\n0\n");
  EXPECT_NE(result.err.find("argument 2: '5': timed out after 1.5 s"), std::string::npos)
      << result.err;
  EXPECT_EQ(result.err.find("argument 1"), std::string::npos) << result.err;
  EXPECT_EQ(result.err.find("argument 3"), std::string::npos) << result.err;
}

TEST(MpMapStreams, JobsAboveTheCapIsAUsageError) {
  for (const char* jobs : {"1025", "100000", "99999999999999999999"}) {
    auto result = mp_test::run_command({MP_MAP_PATH, "-j", jobs, "square", ":::", "1"});
    EXPECT_EQ(result.exit_status, 2) << jobs;
    EXPECT_NE(result.err.find(std::string("-j: at most 1024 worker processes, got ") + jobs),
              std::string::npos)
        << result.err;
  }
  auto most = mp_test::run_command({MP_MAP_PATH, "-j", "1024", "square", ":::", "3"});
  EXPECT_EQ(most.exit_status, 0) << most.err;
  EXPECT_EQ(most.out, "9\n");
}

INSTANTIATE_TEST_SUITE_P(StartMethods, MpMapStreamTest,
                         ::testing::ValuesIn(mp_test::start_methods()), mp_test::method_name);

}  // namespace streams
