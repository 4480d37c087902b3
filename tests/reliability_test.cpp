// Reliability tests of Process and pickle:
//   - PickleBadInput: systematic corruption of representative pickles (every
//     truncation, every byte replaced by a few values, a byte inserted or deleted
//     everywhere): loads throws mp::UnpicklingError or returns a value, nothing else.
//     (The fuzzer, fuzz/pickle_loads_fuzzer.cpp, does the same at random, at length.)
//   - ResourceLeak: starting, joining, killing and closing many processes leaves this
//     process's fd table (/proc/self/fd) as it was.
//   - KillParent: SIGKILL an mp child that has children of its own: its daemon children
//     die with it (mp's promise); its non-daemon children keep running, as in Python.
//   - ClosedStdio: a program started with stdin, stdout or stderr closed uses the heap,
//     children and a Pool normally (mp's fds never take the numbers 0, 1, 2), and mp-map
//     so started fails cleanly instead of reading from or writing into its pool.
// The suite-wide leak check (no stray process, nothing new in /dev/shm) is
// tests/leak_check.sh, run by ctest before and after all other tests.
// Figures go to README's Reliability section through mp_test::record_figure.
#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <sstream>
#include <string>
#include <tuple>
#include <variant>
#include <vector>

#include <mp/context.hpp>
#include <mp/errors.hpp>
#include <mp/pickle.hpp>
#include <mp/process.hpp>

#include "figures.hpp"
#include "pickle_samples.hpp"
#include "test_util.hpp"

using namespace std::chrono_literals;

namespace {

constexpr auto kJoinLimit = 30s;

// ---- PickleBadInput --------------------------------------------------------------------

void never_called(int) { std::abort(); }

// Every corruption of `good` that the sweep tries.
std::vector<std::string> corruptions(const std::string& good) {
  std::vector<std::string> out;
  for (std::size_t cut = 0; cut < good.size(); ++cut) out.push_back(good.substr(0, cut));
  for (std::size_t at = 0; at < good.size(); ++at) {
    for (unsigned char value : {0x00, 0x01, 0x7F, 0x80, 0xFF}) {
      std::string bad = good;
      bad[at] = static_cast<char>(value);
      if (bad != good) out.push_back(bad);
    }
    std::string flipped = good;
    flipped[at] = static_cast<char>(flipped[at] ^ 0x04);
    out.push_back(flipped);
    out.push_back(good.substr(0, at) + good.substr(at + 1));       // deleted
    out.push_back(good.substr(0, at) + '\xFF' + good.substr(at));  // inserted
  }
  out.push_back(good + '\0');  // trailing byte
  return out;
}

// Loads every corruption of a pickle of `value` as T; counts how each ended.
struct SweepCounts {
  std::int64_t tried = 0;
  std::int64_t rejected = 0;  // mp::UnpicklingError
  std::int64_t loaded = 0;    // the edit hit a value byte
};

template <class T>
void sweep(const T& value, SweepCounts& counts) {
  for (const std::string& bad : corruptions(mp::pickle::dumps(value))) {
    ++counts.tried;
    try {
      const T loaded = mp::pickle::loads<T>(bad);
      // Whatever loaded must pickle and load again.
      (void)mp::pickle::loads<T>(mp::pickle::dumps(loaded));
      ++counts.loaded;
    } catch (const mp::UnpicklingError&) {
      ++counts.rejected;
    }
    // Anything else escapes and fails the test; a crash fails it too.
  }
}

TEST(PickleBadInput, EveryCorruptionThrowsUnpicklingErrorOrLoads) {
  SweepCounts counts;
  using namespace pickle_samples;
  sweep<Int>(-5, counts);
  sweep<String>("hello, pickle", counts);
  sweep<Strings>({"a", "", "ccc"}, counts);
  sweep<Table>({{"one", {1}}, {"three", {1, 2, 3}}}, counts);
  sweep<MaybeChoice>(std::string("seven"), counts);
  sweep<Record>({-2.5, "b", {0, 255}}, counts);
  sweep<Account>({"ann", {5, -3}, 250.0}, counts);
  sweep<Callback>(&never_called, counts);
  EXPECT_GT(counts.rejected, counts.tried / 2);  // most corruptions must be caught
  EXPECT_EQ(counts.rejected + counts.loaded, counts.tried);
  mp_test::record_figure("pickle_inputs_tried", counts.tried);
  mp_test::record_figure("pickle_inputs_rejected", counts.rejected);
  mp_test::record_figure("pickle_inputs_loaded", counts.loaded);
}

// ---- ResourceLeak ----------------------------------------------------------------------

using mp_test::do_nothing;
using mp_test::open_fd_count;

void exit_three() { std::exit(3); }
void throw_error() { throw std::runtime_error("expected by the fd-leak test"); }
void sleep_forever() {
  for (;;) ::pause();
}

class ResourceLeak : public ::testing::TestWithParam<std::string> {
 protected:
  // A first process creates what mp keeps for the life of the process (the module
  // table, the shared heap): not a leak, so it belongs in the baseline.
  void SetUp() override {
    mp::Process warm({.start_method = GetParam()}, &do_nothing);
    warm.start();
    ASSERT_TRUE(warm.join(kJoinLimit));
    ASSERT_EQ(warm.exitcode(), 0);
  }
};

TEST_P(ResourceLeak, ManyProcessesLeaveTheFdTableAsItWas) {
  constexpr int kRounds = 8;
  constexpr int kPerRound = 8;
  mp_test::CaptureStderr quiet;  // throw_error's report (its fds are in the baseline)
  const int before = open_fd_count();
  ASSERT_GT(before, 0);
  int started = 0;
  for (int round = 0; round < kRounds; ++round) {
    std::vector<mp::Process> children;
    for (int i = 0; i < kPerRound; ++i) {
      void (*target)() = i % 4 == 0   ? &exit_three
                         : i % 4 == 1 ? &throw_error
                         : i % 4 == 2 ? &sleep_forever
                                      : &do_nothing;
      children.emplace_back(mp::ProcessOptions{.start_method = GetParam()}, target);
    }
    for (auto& child : children) child.start();
    started += kPerRound;
    for (std::size_t i = 0; i < children.size(); ++i) {
      if (i % 4 == 2) children[i].kill();
      ASSERT_TRUE(children[i].join(kJoinLimit)) << children[i].repr();
    }
    // Joined but not closed: each handle may still hold its sentinel (a pidfd)...
    EXPECT_LE(open_fd_count(), before + kPerRound);
    // ...and close() gives it back, as Python's close() releases the sentinel.
    if (round % 2 == 0)
      for (auto& child : children) child.close();
    // Odd rounds: the destructors release them instead.
  }
  EXPECT_EQ(open_fd_count(), before) << "file descriptors leaked by " << started << " processes";
  mp_test::record_figure("processes_started", started);
  mp_test::record_figure("fds_leaked", open_fd_count() - before);
}

TEST_P(ResourceLeak, CloseReleasesTheSentinel) {
  mp::Process p({.start_method = GetParam()}, &do_nothing);
  const int before = open_fd_count();
  p.start();
  ASSERT_TRUE(p.join(kJoinLimit));
  (void)p.sentinel();
  p.close();
  EXPECT_EQ(open_fd_count(), before);
}

INSTANTIATE_TEST_SUITE_P(StartMethods, ResourceLeak, ::testing::ValuesIn(mp_test::start_methods()),
                         mp_test::method_name);

// ---- KillParent ------------------------------------------------------------------------

void sleeper_writing_pid(std::string path) {
  mp_test::write_file(path, std::to_string(::getpid()));
  sleep_forever();
}

// The intermediate parent: starts one child per (daemon, start method), each writing its
// pid to dir/<daemon|nondaemon>-<method>, then writes dir/ready and sleeps.
void parent_with_children(std::string dir) {
  std::vector<mp::Process> children;
  for (bool daemon : {true, false}) {
    for (const std::string& method : mp_test::start_methods()) {
      const std::string path = dir + "/" + (daemon ? "daemon-" : "nondaemon-") + method;
      children.emplace_back(mp::ProcessOptions{.daemon = daemon, .start_method = method},
                            &sleeper_writing_pid, path);
      children.back().start();
    }
  }
  for (bool daemon : {true, false})
    for (const std::string& method : mp_test::start_methods())
      (void)mp_test::wait_for_file(dir + "/" + (daemon ? "daemon-" : "nondaemon-") + method);
  mp_test::write_file(dir + "/ready", "ready");
  sleep_forever();
}

class KillParent : public ::testing::TestWithParam<std::string> {};

// mp promises (process.hpp, DESIGN.md) that daemon children never outlive their parent,
// even when it is SIGKILLed. Non-daemon children are independent processes in Python
// and in mp today: they keep running, adopted by init or a subreaper. That is pinned
// here so that a change is a decision, not an accident (see README's Reliability).
TEST_P(KillParent, DaemonChildrenDieNonDaemonChildrenKeepRunning) {
  mp_test::TempDir dir;
  const std::string base = dir.file("");
  mp::Process parent({.start_method = GetParam()}, &parent_with_children, base);
  parent.start();
  // On a failed assertion, leave no process behind (the suite's leak check would report
  // it, and a running non-daemon child would hold up this process's exit).
  std::vector<pid_t> to_kill;
  struct KillOnExit {
    mp::Process& parent;
    std::vector<pid_t>& pids;
    ~KillOnExit() {
      parent.kill();
      (void)parent.join(kJoinLimit);
      for (pid_t pid : pids)
        if (::kill(pid, SIGKILL) == 0) (void)mp_test::wait_gone(pid, 10s);
    }
  } kill_on_exit{parent, to_kill};
  ASSERT_TRUE(mp_test::wait_for_file(base + "/ready")) << "the parent never got its children going";
  std::map<std::string, pid_t> children;
  for (const char* kind : {"daemon", "nondaemon"})
    for (const std::string& method : mp_test::start_methods()) {
      auto text = mp_test::read_file(base + "/" + kind + "-" + method);
      ASSERT_TRUE(text);
      children[std::string(kind) + "-" + method] = std::stoi(*text);
      to_kill.push_back(std::stoi(*text));
    }

  parent.kill();
  ASSERT_TRUE(parent.join(kJoinLimit));
  EXPECT_EQ(parent.exitcode(), -SIGKILL);

  int daemons = 0;
  int daemons_gone = 0;
  int nondaemons_running = 0;
  for (const auto& [name, pid] : children) {
    const bool daemon = name.rfind("daemon-", 0) == 0;
    daemons += daemon;
    if (daemon) {
      const bool gone = mp_test::wait_gone(pid, 10s);
      EXPECT_TRUE(gone) << name << " (pid " << pid << ") outlived its SIGKILLed parent";
      daemons_gone += gone;
    } else {
      const bool running = !mp_test::wait_gone(pid, 200ms);
      EXPECT_TRUE(running) << name << " ended with its parent: Python keeps it running";
      nondaemons_running += running;
    }
  }
  mp_test::record_figure("parents_killed", 1);
  // One child of each kind per start method.
  mp_test::record_figure("daemon_children", daemons);
  mp_test::record_figure("daemon_children_gone", daemons_gone);
  mp_test::record_figure("nondaemon_children",
                         static_cast<std::int64_t>(children.size()) - daemons);
  mp_test::record_figure("nondaemon_children_still_running", nondaemons_running);
}

INSTANTIATE_TEST_SUITE_P(StartMethods, KillParent, ::testing::ValuesIn(mp_test::start_methods()),
                         mp_test::method_name);

// ---- ClosedStdio -----------------------------------------------------------------------

struct Finished {
  bool ended = false;  // false: still running at the limit (then killed)
  int status = -1;     // exit code, or -signal
};

// Runs `argv` with fd `closed` (0, 1 or 2) closed, the other stdio numbers on the files
// `stdio[i]` (stdin read, the others written), and waits for it at most `limit`.
Finished run_with_stdio_closed(const std::vector<std::string>& argv, int closed,
                               const std::string (&stdio)[3], std::chrono::seconds limit) {
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  for (int fd = 0; fd <= 2; ++fd) {
    if (fd == closed) {
      posix_spawn_file_actions_addclose(&actions, fd);
    } else {
      const int flags = fd == 0 ? O_RDONLY : O_WRONLY | O_CREAT | O_TRUNC;
      posix_spawn_file_actions_addopen(&actions, fd, stdio[fd].c_str(), flags, 0600);
    }
  }
  std::vector<char*> args;
  for (auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  pid_t pid = 0;
  const int rc = ::posix_spawn(&pid, args[0], &actions, nullptr, args.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  if (rc != 0) throw std::runtime_error("posix_spawn failed for " + argv[0]);
  Finished result;
  const int pidfd = static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
  struct pollfd watch = {pidfd, POLLIN, 0};
  result.ended = pidfd >= 0 && ::poll(&watch, 1, static_cast<int>(limit.count() * 1000)) == 1;
  if (pidfd >= 0) ::close(pidfd);
  if (!result.ended) ::kill(pid, SIGKILL);
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  result.status = WIFEXITED(status) ? WEXITSTATUS(status) : -WTERMSIG(status);
  return result;
}

constexpr auto kProgramLimit = 180s;

class ClosedStdio : public ::testing::TestWithParam<std::string> {
 protected:
  // Runs tests/programs/closed_stdio.cpp with `closed` closed; it reports "ok" when the
  // heap, a child (and its spawned grandchild) and a Pool all worked.
  void expect_library_works(int closed) {
    mp_test::TempDir dir;
    const std::string stdio[3] = {"/dev/null", dir.file("out"), dir.file("err")};
    const std::string result_path = dir.file("result");
    const auto run = run_with_stdio_closed({MP_CLOSED_STDIO_PATH, GetParam(), result_path}, closed,
                                           stdio, kProgramLimit);
    const std::string out = mp_test::read_file(stdio[1]).value_or("");
    const std::string err = mp_test::read_file(stdio[2]).value_or("");
    const std::string report = mp_test::read_file(result_path).value_or("(no result file)\n");
    ASSERT_TRUE(run.ended) << "still running after " << kProgramLimit.count() << " s\n" << report;
    EXPECT_EQ(run.status, 0) << report << "stderr: " << err;
    EXPECT_EQ(report.substr(0, 3), "ok\n") << report << "stderr: " << err;
    // What the program printed went where it belongs, and nothing else did.
    const char* when[] = {"heap made", "child started", "pool made", "pool done"};
    std::string expected_out, expected_err;
    for (const char* w : when) {
      expected_out += std::string("stdout: ") + w + "\n";
      expected_err += std::string("stderr: ") + w + "\n";
    }
    if (closed != 1) {
      EXPECT_EQ(out, expected_out);
    }
    if (closed != 2) {
      EXPECT_EQ(err, expected_err);
    }
  }

  // Runs mp-map (square, from standard input) with `closed` closed, `input` as stdin.
  Finished run_mp_map(int closed, const std::string& input, std::string& err) {
    mp_test::TempDir dir;
    mp_test::write_file(dir.file("in"), input);
    const std::string stdio[3] = {dir.file("in"), dir.file("out"), dir.file("err")};
    const auto run =
        run_with_stdio_closed({MP_MAP_PATH, "--start-method", GetParam(), "-j", "2", "square"},
                              closed, stdio, kProgramLimit);
    err = mp_test::read_file(stdio[2]).value_or("");
    return run;
  }
};

TEST_P(ClosedStdio, LibraryWorksWithStdinClosed) { expect_library_works(0); }
TEST_P(ClosedStdio, LibraryWorksWithStdoutClosed) { expect_library_works(1); }
TEST_P(ClosedStdio, LibraryWorksWithStderrClosed) { expect_library_works(2); }

// With its pool's socket on fd 0, mp-map read its input from its own pool and hung.
TEST_P(ClosedStdio, MpMapWithStdinClosedFailsCleanly) {
  std::string err;
  const auto run = run_mp_map(0, "", err);
  ASSERT_TRUE(run.ended) << "mp-map hung with stdin closed";
  EXPECT_GT(run.status, 0) << err;
  EXPECT_NE(err, "");
}

// With a library fd on fd 1, mp-map wrote its results into it: a long input then hung
// (a socket of its pool filled up). Whether mp-map reports the failed writes (exit 1)
// is mp-map's part; the library's is that the writes fail instead of landing in its fds.
TEST_P(ClosedStdio, MpMapWithStdoutClosedEnds) {
  std::string input;
  for (int i = 1; i <= 200000; ++i) input += std::to_string(i) + "\n";
  std::string err;
  const auto run = run_mp_map(1, input, err);
  ASSERT_TRUE(run.ended) << "mp-map hung with stdout closed";
  // A closed stdout is a write error, as for seq or sort: a message and exit status 1.
  EXPECT_EQ(run.status, 1) << err;
  EXPECT_NE(err.find("mp-map: "), std::string::npos) << err;
}

INSTANTIATE_TEST_SUITE_P(StartMethods, ClosedStdio, ::testing::ValuesIn(mp_test::start_methods()),
                         mp_test::method_name);

}  // namespace
