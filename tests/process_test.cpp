// Tests for <mp/process.hpp>: every test runs once per start method (fork, spawn).
// Children report through files (a channel that works with both start methods) and
// through their exit codes; every child is joined with a bound.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <functional>
#include <map>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <mp/context.hpp>
#include <mp/detail/code_ref.hpp>
#include <mp/detail/heap.hpp>
#include <mp/pickle.hpp>
#include <mp/process.hpp>
#include <mp/synchronize.hpp>

#include "exception_text.hpp"
#include "forkserver.hpp"
#include "heap_arena.hpp"
#include "posix/fd.hpp"
#include "process_state.hpp"
#include "test_util.hpp"

using namespace std::chrono_literals;
using mp_test::read_file;
using mp_test::TempDir;
using mp_test::wait_for_file;
using mp_test::write_file;

namespace {

// ---- Helpers shared by the start methods ----

struct CustomError {};

TEST(ExceptionText, TypeAndMessageOfTheCurrentException) {
  auto describe = [](auto thrower) {
    try {
      thrower();
    } catch (...) {
      return mp::detail::describe_current_exception();
    }
    return mp::detail::ExceptionText{};
  };
  auto text = describe([] { throw std::runtime_error("boom"); });
  EXPECT_EQ(text.type, "std::runtime_error");
  EXPECT_EQ(text.message, "boom");
  EXPECT_EQ(text.line(), "std::runtime_error: boom");
  text = describe([] { throw 42; });
  EXPECT_EQ(text.type, "int");
  EXPECT_EQ(text.line(), "int");
  text = describe([] { throw CustomError{}; });
  EXPECT_EQ(text.type, "(anonymous namespace)::CustomError");
  EXPECT_EQ(text.message, "");
  EXPECT_EQ(mp::detail::demangle("not a mangled name!"), "not a mangled name!");
  EXPECT_EQ(mp::detail::demangle(""), "");
}

TEST(KillAndReap, LeavesNoZombie) {
  const pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    for (;;) ::pause();
  }
  mp::detail::kill_and_reap(pid);
  errno = 0;
  EXPECT_EQ(::waitpid(pid, nullptr, WNOHANG), -1);
  EXPECT_EQ(errno, ECHILD) << "the child was not reaped";
}

constexpr auto kJoinLimit = 30s;

// ---- child-side functions (free functions: they work with spawn) ----

using mp_test::do_nothing;

void exit_with(int code) { std::exit(code); }

void throw_runtime_error(std::string message) { throw std::runtime_error(message); }

void throw_int() { throw 42; }

void write_to_stdout_and_stderr(std::string text) {
  (void)!::write(1, text.data(), text.size());
  (void)!::write(2, text.data(), text.size());
}

void sleep_forever() {
  for (;;) ::pause();
}

void write_identity(std::string path) {
  auto& self = mp::current_process();
  const mp::Process* parent = mp::parent_process();
  std::string text = self.name() + "\n" + std::to_string(self.pid()) + "\n" +
                     std::to_string(::getpid()) + "\n" +
                     (parent ? parent->name() + "\n" + std::to_string(parent->pid()) + "\n" +
                                   (parent->is_alive() ? "alive" : "dead")
                             : std::string("none"));
  write_file(path, text);
}

struct Point {
  int x;
  double y;
};

void check_arguments(std::string text, std::vector<int> numbers, Point point,
                     std::map<std::string, int> table) {
  bool ok = text == "hello, world" && numbers == std::vector<int>{1, 2, 3} && point.x == 7 &&
            point.y == 2.5 && table.size() == 2 && table.at("a") == 1 && table.at("b") == 2;
  std::exit(ok ? 0 : 3);
}

// Tries to start a child from a daemon process; exits 42 if start() refused.
void daemon_tries_to_have_children(std::string method) {
  mp::Process child({.start_method = method}, &do_nothing);
  try {
    child.start();
  } catch (const std::logic_error&) {
    std::exit(42);
  }
  child.join();
  std::exit(0);
}

// Starts a grandchild (daemon or not) that writes its pid to `path` and sleeps; if
// `from_thread`, the grandchild is started from a thread that has ended before this
// function goes on. Then sleeps too if `then_sleep`.
void sleeper_writing_pid(std::string path) {
  write_file(path, std::to_string(::getpid()));
  sleep_forever();
}

void start_grandchild(std::string method, bool daemon, bool from_thread, std::string path,
                      bool then_sleep) {
  std::optional<mp::Process> grandchild;
  auto start = [&] {
    grandchild.emplace(mp::ProcessOptions{.daemon = daemon, .start_method = method},
                       &sleeper_writing_pid, path);
    grandchild->start();
  };
  if (from_thread) {
    // The thread ends only once the grandchild runs (has written its pid): a
    // PR_SET_PDEATHSIG tied to this thread would fire then and kill it.
    std::thread([&] {
      start();
      (void)mp_test::wait_for_file(path);
    }).join();
  } else {
    start();
  }
  if (then_sleep) sleep_forever();
}

// Waits for SIGINT with its default action (a shell may have started the test with
// SIGINT ignored, which children inherit).
void wait_for_interrupt(mp::Event ready) {
  ::signal(SIGINT, SIG_DFL);
  ready.set();
  for (;;) ::pause();
}

volatile sig_atomic_t interrupted = 0;
// Python: a child that catches KeyboardInterrupt and exits on its own terms.
void catch_interrupt(mp::Event ready) {
  ::signal(SIGINT, [](int) { interrupted = 1; });
  ready.set();
  while (!interrupted) ::pause();
  std::exit(7);
}

void exit_after_a_while() { std::this_thread::sleep_for(200ms); }

void write_after_a_while(std::string path) {
  std::this_thread::sleep_for(200ms);
  write_file(path, "done");
}

void start_non_daemon_and_return(std::string method, std::string path) {
  mp::Process grandchild({.daemon = false, .start_method = method}, &write_after_a_while, path);
  grandchild.start();
  // Returning without join(): the child's exit must still wait for its grandchild.
}

void start_daemon_and_return(std::string method, std::string pid_path) {
  mp::Process grandchild({.daemon = true, .start_method = method}, &sleep_forever);
  grandchild.start();
  write_file(pid_path, std::to_string(grandchild.pid()));
}

// A function object with state; picklable through serialize().
struct ExitWithSum {
  int a = 0;
  int b = 0;
  void operator()(int c) const { std::exit(a + b + c); }
  template <class Archive>
  void serialize(Archive& ar) {
    ar(a, b);
  }
};

class ProcessTest : public ::testing::TestWithParam<std::string> {
 protected:
  mp::ProcessOptions options() const { return {.start_method = GetParam()}; }

  static void join_checked(mp::Process& p) {
    ASSERT_TRUE(p.join(kJoinLimit)) << p.repr() << " did not end within the limit";
  }

  // Runs f(start method, path) in a child, which starts children of its own and returns;
  // expects that child to end with exit code 0.
  void run_parent(void (*f)(std::string, std::string), const std::string& path) const {
    mp::Process parent(options(), f, GetParam(), path);
    parent.start();
    join_checked(parent);
    EXPECT_EQ(parent.exitcode(), 0);
  }
};

TEST_P(ProcessTest, StartJoinExitcodeZero) {
  mp::Process p(options(), &do_nothing);
  EXPECT_EQ(p.pid(), 0);
  EXPECT_FALSE(p.exitcode().has_value());
  EXPECT_FALSE(p.is_alive());
  p.start();
  EXPECT_GT(p.pid(), 0);
  EXPECT_EQ(p.start_method(), GetParam());
  join_checked(p);
  EXPECT_EQ(p.exitcode(), 0);
  EXPECT_FALSE(p.is_alive());
  // Reaped: no zombie left behind.
  EXPECT_EQ(::waitpid(p.pid(), nullptr, WNOHANG), -1);
  EXPECT_EQ(errno, ECHILD);
}

// The child's first argument string (what `ps` shows) and its comm (what `top` shows)
// name it: "prog: Process-N", comm the same when it fits 15 characters, else the name.
void exit_unless_titled(std::string program) {
  const std::string name = mp::current_process().name();
  const std::string cmdline = mp_test::read_file("/proc/self/cmdline").value_or("");
  std::string comm = mp_test::read_file("/proc/self/comm").value_or("");
  if (!comm.empty() && comm.back() == '\n') comm.pop_back();
  const std::string title = program + ": " + name;
  if (cmdline.substr(0, cmdline.find('\0')) != title) std::_Exit(1);
  if (comm != (title.size() <= 15 ? title : name)) std::_Exit(2);
  std::_Exit(0);
}

TEST_P(ProcessTest, PsAndTopShowTheProcessName) {
  // The child's own program_invocation_short_name points into its retitled argv.
  mp::Process p(options(), &exit_unless_titled, std::string(program_invocation_short_name));
  p.start();
  join_checked(p);
  EXPECT_EQ(p.exitcode(), 0) << "1: wrong argv title, 2: wrong comm";
}

TEST_P(ProcessTest, TheLargestJoinTimeoutWaits) {
  // now() + nanoseconds::max() overflows into the past: join must wait, not return.
  mp::Process p(options(), &exit_after_a_while);
  p.start();
  EXPECT_TRUE(p.join(std::chrono::nanoseconds::max())) << p.repr();
  EXPECT_EQ(p.exitcode(), 0);
}

TEST_P(ProcessTest, ExitCodeOfExit) {
  for (int code : {0, 3, 77, 255}) {
    mp::Process p(options(), &exit_with, code);
    p.start();
    join_checked(p);
    EXPECT_EQ(p.exitcode(), code);
  }
}

TEST_P(ProcessTest, UncaughtExceptionPrintsAndExitsOne) {
  mp_test::CaptureStderr capture;
  mp::Process p(options(), &throw_runtime_error, std::string("boom"));
  p.start();
  join_checked(p);
  std::string err = capture.text();
  EXPECT_EQ(p.exitcode(), 1);
  EXPECT_NE(err.find("Process " + p.name() + ":\n"), std::string::npos) << err;
  EXPECT_NE(err.find("std::runtime_error: boom"), std::string::npos) << err;
}

// A child writes where its parent's stdout and stderr point when it starts, also when
// the parent moved them after its first child (a fork server started by then was
// started with the old ones).
TEST_P(ProcessTest, ChildWritesToTheParentsCurrentStdoutAndStderr) {
  mp::Process first(options(), &do_nothing);
  first.start();
  join_checked(first);
  const std::string text = "from the child " + GetParam() + "\n";
  const int out_file = ::memfd_create("mp_test_stdout", MFD_CLOEXEC);
  ASSERT_GE(out_file, 0);
  std::fflush(stdout);
  const int saved_out = ::dup(1);
  ::dup2(out_file, 1);
  std::string err;
  {
    mp_test::CaptureStderr capture;
    mp::Process p(options(), &write_to_stdout_and_stderr, text);
    p.start();
    join_checked(p);
    err = capture.text();
    EXPECT_EQ(p.exitcode(), 0);
  }
  ::dup2(saved_out, 1);
  ::close(saved_out);
  char buffer[256] = {};
  const ssize_t got = ::pread(out_file, buffer, sizeof buffer - 1, 0);
  ::close(out_file);
  EXPECT_EQ(std::string(buffer, got > 0 ? static_cast<std::size_t>(got) : 0), text);
  EXPECT_NE(err.find(text), std::string::npos) << err;
}

TEST_P(ProcessTest, NonStandardExceptionExitsOne) {
  mp_test::CaptureStderr capture;
  mp::Process p(options(), &throw_int);
  p.start();
  join_checked(p);
  std::string err = capture.text();
  EXPECT_EQ(p.exitcode(), 1);
  EXPECT_NE(err.find("int"), std::string::npos) << err;
}

TEST_P(ProcessTest, TerminateGivesMinus15) {
  mp::Process p(options(), &sleep_forever);
  p.start();
  EXPECT_TRUE(p.is_alive());
  p.terminate();
  join_checked(p);
  EXPECT_EQ(p.exitcode(), -SIGTERM);
  // Signalling an ended process is harmless.
  p.terminate();
  p.kill();
}

TEST_P(ProcessTest, InterruptSendsSigintWhichTheChildMayHandle) {
  // Default action: the child ends with -SIGINT. A handler: the child decides (7).
  for (auto [target, exitcode] :
       {std::pair(&wait_for_interrupt, -SIGINT), std::pair(&catch_interrupt, 7)}) {
    mp::Event ready;
    mp::Process p(options(), target, ready);
    p.start();
    ASSERT_TRUE(ready.wait(30s));
    p.interrupt();
    join_checked(p);
    EXPECT_EQ(p.exitcode(), exitcode);
    p.interrupt();  // harmless once ended
  }
}

TEST_P(ProcessTest, KillGivesMinus9) {
  mp::Process p(options(), &sleep_forever);
  p.start();
  p.kill();
  join_checked(p);
  EXPECT_EQ(p.exitcode(), -SIGKILL);
}

TEST_P(ProcessTest, JoinTimeoutOnChildThatOutlivesIt) {
  mp::Process p(options(), &sleep_forever);
  p.start();
  auto before = std::chrono::steady_clock::now();
  EXPECT_FALSE(p.join(50ms));
  EXPECT_GE(std::chrono::steady_clock::now() - before, 50ms);  // never returns early
  EXPECT_TRUE(p.is_alive());
  EXPECT_FALSE(p.exitcode().has_value());
  p.kill();
  join_checked(p);
  EXPECT_EQ(p.exitcode(), -SIGKILL);
}

TEST_P(ProcessTest, ChildSeesItsNameAndParent) {
  TempDir dir;
  mp::Process p(options(), &write_identity, dir.file("id"));
  p.start();
  join_checked(p);
  ASSERT_EQ(p.exitcode(), 0);
  auto text = read_file(dir.file("id"));
  ASSERT_TRUE(text);
  std::string expected = p.name() + "\n" + std::to_string(p.pid()) + "\n" +
                         std::to_string(p.pid()) + "\n" + mp::current_process().name() + "\n" +
                         std::to_string(::getpid()) + "\nalive";
  EXPECT_EQ(*text, expected);
  EXPECT_EQ(mp::current_process().name(), "MainProcess");
  EXPECT_EQ(mp::parent_process(), nullptr);
}

TEST_P(ProcessTest, DefaultAndCustomNames) {
  mp::Process a(options(), &do_nothing);
  mp::Process b(options(), &do_nothing);
  EXPECT_EQ(a.name().rfind("Process-", 0), 0u) << a.name();
  EXPECT_NE(a.name(), b.name());
  mp::Process named({.name = "worker-7", .start_method = GetParam()}, &write_identity,
                    std::string("/dev/null"));
  EXPECT_EQ(named.name(), "worker-7");
  named.set_name("renamed");
  EXPECT_EQ(named.name(), "renamed");
  TempDir dir;
  mp::Process child({.name = "custom", .start_method = GetParam()}, &write_identity,
                    dir.file("id"));
  child.start();
  join_checked(child);
  auto text = read_file(dir.file("id"));
  ASSERT_TRUE(text);
  EXPECT_EQ(text->substr(0, 7), "custom\n");
}

TEST_P(ProcessTest, ArgumentsOfManyTypesArrive) {
  mp::Process p(options(), &check_arguments, std::string("hello, world"), std::vector<int>{1, 2, 3},
                Point{7, 2.5}, std::map<std::string, int>{{"a", 1}, {"b", 2}});
  p.start();
  join_checked(p);
  EXPECT_EQ(p.exitcode(), 0);
}

TEST_P(ProcessTest, CaptureLessLambdaAndFunctionObject) {
  mp::Process lambda(
      options(), [](int code) { std::exit(code); }, 5);
  lambda.start();
  join_checked(lambda);
  EXPECT_EQ(lambda.exitcode(), 5);

  mp::Process functor(options(), ExitWithSum{10, 20}, 3);
  functor.start();
  join_checked(functor);
  EXPECT_EQ(functor.exitcode(), 33);
}

TEST_P(ProcessTest, CapturingLambda) {
  int code = 9;
  mp::Process p(options(), [code] { std::exit(code); });
  if (GetParam() == "fork") {
    p.start();  // a forked child has the parent's memory: any callable works
    join_checked(p);
    EXPECT_EQ(p.exitcode(), 9);
  } else {
    try {
      p.start();
      FAIL() << "start() should refuse a capturing lambda with spawn";
    } catch (const std::invalid_argument& e) {
      EXPECT_NE(std::string(e.what()).find("capturing lambda"), std::string::npos) << e.what();
    }
    EXPECT_EQ(p.pid(), 0);
    EXPECT_TRUE(mp::active_children().empty());
  }
}

class ExitingSubclass : public mp::Process {
 public:
  using mp::Process::Process;
  void run() override { std::exit(12); }
};

TEST_P(ProcessTest, SubclassOverridingRun) {
  ExitingSubclass p(options());
  if (GetParam() == "fork") {
    p.start();
    join_checked(p);
    EXPECT_EQ(p.exitcode(), 12);
  } else {
    EXPECT_THROW(p.start(), std::logic_error);
  }
}

TEST_P(ProcessTest, MisuseThrows) {
  mp::Process p(options(), &sleep_forever);
  EXPECT_THROW(p.join(), std::logic_error);                 // join before start
  EXPECT_THROW((void)p.sentinel(), std::invalid_argument);  // sentinel before start
  p.start();
  EXPECT_THROW(p.start(), std::logic_error);                     // start twice
  EXPECT_THROW(p.set_daemon(true), std::logic_error);            // daemon after start
  EXPECT_THROW(p.close(), std::invalid_argument);                // close while running
  EXPECT_THROW(mp::current_process().join(), std::logic_error);  // join yourself
  p.kill();
  join_checked(p);
  p.close();
  EXPECT_THROW((void)p.exitcode(), std::invalid_argument);  // closed
  EXPECT_THROW(p.start(), std::invalid_argument);
  EXPECT_THROW((void)p.is_alive(), std::invalid_argument);
  p.close();  // closing twice is fine, as in Python
}

TEST_P(ProcessTest, DaemonCannotHaveChildren) {
  mp::Process p({.daemon = true, .start_method = GetParam()}, &daemon_tries_to_have_children,
                GetParam());
  EXPECT_TRUE(p.daemon());
  p.start();
  join_checked(p);
  EXPECT_EQ(p.exitcode(), 42);
}

TEST_P(ProcessTest, SentinelBecomesReadableWhenChildEnds) {
  mp::Process p(options(), &sleep_forever);
  p.start();
  struct pollfd fd = {p.sentinel(), POLLIN, 0};
  EXPECT_EQ(::poll(&fd, 1, 0), 0);
  p.terminate();
  EXPECT_EQ(::poll(&fd, 1, 30'000), 1);
  join_checked(p);
  EXPECT_EQ(p.exitcode(), -SIGTERM);
}

TEST_P(ProcessTest, ActiveChildren) {
  mp::Process p(options(), &sleep_forever);
  p.start();
  auto children = mp::active_children();
  ASSERT_EQ(children.size(), 1u);
  EXPECT_EQ(children[0].pid(), p.pid());
  EXPECT_TRUE(children[0].is_alive());
  children[0].kill();  // a handle from active_children() controls the same child
  join_checked(p);
  EXPECT_TRUE(mp::active_children().empty());
}

TEST_P(ProcessTest, ManyChildrenAtOnceAllReaped) {
  std::vector<mp::Process> children;
  for (int i = 0; i < 16; ++i) children.emplace_back(options(), &exit_with, i);
  for (auto& p : children) p.start();
  for (int i = 0; i < 16; ++i) {
    join_checked(children[i]);
    EXPECT_EQ(children[i].exitcode(), i);
  }
  // No zombie children; the fork server, if one runs, is the only child left.
  if (mp::detail::forkserver_pid() != 0) {
    EXPECT_EQ(::waitpid(-1, nullptr, WNOHANG), 0);
  } else {
    EXPECT_EQ(::waitpid(-1, nullptr, WNOHANG), -1);
    EXPECT_EQ(errno, ECHILD);
  }
}

TEST_P(ProcessTest, DestroyedHandleChildIsStillReaped) {
  pid_t pid = 0;
  {
    mp::Process p(options(), &exit_with, 4);
    p.start();
    pid = p.pid();
  }
  // The registry still knows the child: active_children() reaps it once it has ended.
  ASSERT_TRUE(mp_test::wait_gone(pid, 30s));
  EXPECT_TRUE(mp::active_children().empty());
  EXPECT_EQ(::waitpid(pid, nullptr, WNOHANG), -1);
}

TEST_P(ProcessTest, DaemonChildDiesWhenParentIsKilled) {
  for (bool from_thread : {false, true}) {
    SCOPED_TRACE(from_thread ? "daemon started from a thread" : "daemon started from main thread");
    TempDir dir;
    mp::Process parent(options(), &start_grandchild, GetParam(), true, from_thread, dir.file("pid"),
                       true);
    parent.start();
    auto text = wait_for_file(dir.file("pid"));
    ASSERT_TRUE(text) << "grandchild never reported";
    pid_t grandchild = std::stoi(*text);
    // Started from a thread that has ended, the daemon must still be running.
    EXPECT_FALSE(mp_test::wait_gone(grandchild, 100ms));
    parent.kill();
    join_checked(parent);
    EXPECT_EQ(parent.exitcode(), -SIGKILL);
    const bool gone = mp_test::wait_gone(grandchild, 10s);
    EXPECT_TRUE(gone) << "daemon grandchild outlived its parent";
    if (!gone) ::kill(grandchild, SIGKILL);  // never leave a stray behind a failed test
  }
}

TEST_P(ProcessTest, NonDaemonChildrenAreJoinedAtExit) {
  TempDir dir;
  ASSERT_NO_FATAL_FAILURE(run_parent(&start_non_daemon_and_return, dir.file("done")));
  // The parent's exit waited for the grandchild, so its file is there now.
  EXPECT_EQ(read_file(dir.file("done")), "done");
}

TEST_P(ProcessTest, DaemonChildrenAreTerminatedAtExit) {
  TempDir dir;
  ASSERT_NO_FATAL_FAILURE(run_parent(&start_daemon_and_return, dir.file("pid")));
  auto text = read_file(dir.file("pid"));
  ASSERT_TRUE(text);
  EXPECT_TRUE(mp_test::wait_gone(std::stoi(*text), 10s));
}

// A main program that returns from main() with children still running: non-daemon
// children are joined, daemon children terminated (tests/programs/exit_with_children.cpp).
TEST_P(ProcessTest, MainExitJoinsNonDaemonChildren) {
  TempDir dir;
  auto result =
      mp_test::run_command({MP_EXIT_WITH_CHILDREN_PATH, "nondaemon", GetParam(), dir.file("done")});
  ASSERT_EQ(result.exit_status, 0) << result.err;
  EXPECT_EQ(read_file(dir.file("done")), "done");
}

TEST_P(ProcessTest, MainExitTerminatesDaemonChildren) {
  TempDir dir;
  auto result =
      mp_test::run_command({MP_EXIT_WITH_CHILDREN_PATH, "daemon", GetParam(), dir.file("pid")});
  ASSERT_EQ(result.exit_status, 0) << result.err;
  auto text = read_file(dir.file("pid"));
  ASSERT_TRUE(text);
  const pid_t daemon = std::stoi(*text);
  const bool gone = mp_test::wait_gone(daemon, 10s);
  EXPECT_TRUE(gone) << "daemon child outlived the normal exit of its parent";
  if (!gone) ::kill(daemon, SIGKILL);
}

TEST_P(ProcessTest, ReprLikePython) {
  mp::Process p({.name = "r", .start_method = GetParam()}, &exit_with, 2);
  EXPECT_EQ(p.repr(), "<Process name='r' initial>");
  p.start();
  join_checked(p);
  EXPECT_EQ(p.repr(), "<Process name='r' pid=" + std::to_string(p.pid()) +
                          " parent=" + std::to_string(::getpid()) + " stopped exitcode=2>");
}

INSTANTIATE_TEST_SUITE_P(StartMethods, ProcessTest, ::testing::ValuesIn(mp_test::start_methods()),
                         mp_test::method_name);

}  // namespace

// stdout is fully buffered into a pipe. Python flushes it before fork so that a child
// does not print the parent's pending output a second time; with threads that is not
// enough (another thread can write between the flush and the fork), so a forked child
// also drops what it inherited in its stdio buffers.
TEST(ProcessFork, ChildNeverRepeatsTheParentsBufferedOutput) {
  auto result = mp_test::run_command({MP_FORK_WHILE_PRINTING_PATH});
  ASSERT_EQ(result.exit_status, 0) << result.err;
  std::istringstream in(result.out);
  int expected = 0;
  for (std::string line; std::getline(in, line); ++expected)
    ASSERT_EQ(line, "line " + std::to_string(expected)) << "a line repeated or lost";
  EXPECT_EQ(expected, 300000);
}

// ---- atexit in children ------------------------------------------------------------------
// Python 3.12+ runs the atexit handlers that a forked child's target registered when the
// child exits, and never the ones its parent registered before the fork. A spawned child
// is a program of its own: its handlers run, the parent's were never registered in it.

namespace {

std::string g_atexit_log;     // where the handlers below write (set before they can run)
pid_t g_registering_pid = 0;  // the test process, which registered parent_handler

void append_to_atexit_log(const char* line) {
  const int fd = ::open(g_atexit_log.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0) return;
  (void)!::write(fd, line, std::strlen(line));
  ::close(fd);
}

void first_child_handler() { append_to_atexit_log("child handler 1\n"); }
void second_child_handler() { append_to_atexit_log("child handler 2\n"); }

// Registered by the test process; inert there, it reports any run in another process.
void parent_handler() {
  if (::getpid() != g_registering_pid && !g_atexit_log.empty())
    append_to_atexit_log("parent handler\n");
}

void register_handlers(std::string log) {
  g_atexit_log = log;
  std::atexit(first_child_handler);
  std::atexit(second_child_handler);
}

void register_handlers_and_exit(std::string log, int code) {
  register_handlers(log);
  std::exit(code);
}

class ChildAtexit : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    static const bool registered = [] {
      g_registering_pid = ::getpid();
      return std::atexit(parent_handler) == 0;
    }();
    ASSERT_TRUE(registered);
    g_atexit_log = dir_.file("log");  // a forked child inherits it
  }
  std::string log() const { return dir_.file("log"); }

  TempDir dir_;
};

TEST_P(ChildAtexit, TargetsHandlersRunAtNormalExitNotTheParents) {
  mp::Process p({.start_method = GetParam()}, &register_handlers, log());
  p.start();
  ASSERT_TRUE(p.join(kJoinLimit));
  EXPECT_EQ(p.exitcode(), 0);
  // Last registered, first run, as at any exit.
  EXPECT_EQ(read_file(log()).value_or("(none ran)\n"), "child handler 2\nchild handler 1\n");
}

TEST_P(ChildAtexit, ExitInTargetRunsItsHandlersAndKeepsItsCode) {
  mp::Process p({.start_method = GetParam()}, &register_handlers_and_exit, log(), 7);
  p.start();
  ASSERT_TRUE(p.join(kJoinLimit));
  EXPECT_EQ(p.exitcode(), 7);
  EXPECT_EQ(read_file(log()).value_or("(none ran)\n"), "child handler 2\nchild handler 1\n");
}

TEST_P(ChildAtexit, ExceptionInTargetStillRunsItsHandlers) {
  mp::Process p(
      {.start_method = GetParam()},
      [](std::string log) {
        register_handlers(log);
        throw std::runtime_error("after registering");
      },
      log());
  mp_test::CaptureStderr quiet;
  p.start();
  ASSERT_TRUE(p.join(kJoinLimit));
  EXPECT_EQ(p.exitcode(), 1);
  EXPECT_EQ(read_file(log()).value_or("(none ran)\n"), "child handler 2\nchild handler 1\n");
}

INSTANTIATE_TEST_SUITE_P(StartMethods, ChildAtexit, ::testing::ValuesIn(mp_test::start_methods()),
                         mp_test::method_name);

// ---- hostile spawn bootstrap -------------------------------------------------------------
// A spawned child reads its bootstrap from the fd named by `--mp-spawn N`. Whatever
// arrives there, it must end with a message on stderr and exit code 1: no abort, no
// memory taken for what a frame only claims to hold.

struct BootstrapRun {
  bool ended = false;
  int status = -1;        // exit code, or -signal
  long max_rss_kib = -1;  // the child's peak resident memory
  std::string err;
};

// Runs this test binary as a spawned child (`--mp-spawn 3`) with what `feed` sends (and
// then end of file) on fd 3, stderr captured.
BootstrapRun run_bootstrap(const std::function<void(int socket)>& feed) {
  TempDir dir;
  const std::string err_path = dir.file("err");
  int pair[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair) != 0)
    throw std::runtime_error("socketpair failed");
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&actions, 2, err_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC,
                                   0600);
  posix_spawn_file_actions_adddup2(&actions, pair[1], 3);
  // This very binary (not MP_TESTS_BINARY_PATH): a good start must carry its module id.
  const std::string self = std::filesystem::read_symlink("/proc/self/exe").string();
  const char* argv[] = {self.c_str(), "--mp-spawn", "3", nullptr};
  pid_t pid = 0;
  const int rc = ::posix_spawn(&pid, argv[0], &actions, nullptr, const_cast<char**>(argv), environ);
  posix_spawn_file_actions_destroy(&actions);
  ::close(pair[1]);
  if (rc != 0) {
    ::close(pair[0]);
    throw std::runtime_error("posix_spawn failed");
  }
  feed(pair[0]);
  ::shutdown(pair[0], SHUT_WR);
  BootstrapRun run;
  const int pidfd = static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
  struct pollfd watch = {pidfd, POLLIN, 0};
  run.ended = pidfd >= 0 && ::poll(&watch, 1, 60'000) == 1;
  if (pidfd >= 0) ::close(pidfd);
  if (!run.ended) ::kill(pid, SIGKILL);
  int status = 0;
  struct rusage usage {};
  while (::wait4(pid, &status, 0, &usage) < 0 && errno == EINTR) {
  }
  ::close(pair[0]);
  run.status = WIFEXITED(status) ? WEXITSTATUS(status) : -WTERMSIG(status);
  run.max_rss_kib = usage.ru_maxrss;
  run.err = read_file(err_path).value_or("");
  return run;
}

// Sends `bytes`; the child may stop reading early (that is the point): no SIGPIPE.
void send_bytes(int socket, const std::string& bytes) { (void)mp::posix::write_all(socket, bytes); }

BootstrapRun run_bootstrap(const std::string& bootstrap) {
  return run_bootstrap([&bootstrap](int socket) { send_bytes(socket, bootstrap); });
}

std::string frame_header(std::uint64_t length) {
  return std::string(reinterpret_cast<const char*>(&length), sizeof length);
}

TEST(SpawnBootstrap, HugeDeclaredLengthIsReportedNotAborted) {
  // 32 GiB claimed (under the refusal limit), 5 bytes sent.
  const auto run = run_bootstrap(frame_header(std::uint64_t{1} << 35) + "hello");
  ASSERT_TRUE(run.ended);
  EXPECT_EQ(run.status, 1) << run.err;
  EXPECT_NE(run.err.find("truncated bootstrap"), std::string::npos) << run.err;
}

TEST(SpawnBootstrap, DeclaredLengthTakesNoMemoryUntilTheDataArrives) {
  if (mp_test::kAddressSanitizer)
    GTEST_SKIP() << "AddressSanitizer's shadow memory and quarantine exceed the memory bound";
  // 512 MiB claimed, nothing sent: the child must not reserve (and zero) that much.
  const auto run = run_bootstrap(frame_header(std::uint64_t{512} << 20));
  ASSERT_TRUE(run.ended);
  EXPECT_EQ(run.status, 1) << run.err;
  EXPECT_LT(run.max_rss_kib, 128 * 1024) << "peak resident memory in KiB";
  EXPECT_NE(run.err.find("truncated bootstrap"), std::string::npos) << run.err;
}

TEST(SpawnBootstrap, HugeSecondFrameAfterAGoodStartIsReported) {
  if (mp_test::kAddressSanitizer)
    GTEST_SKIP() << "AddressSanitizer's shadow memory and quarantine exceed the memory bound";
  // A correct start (module id, shared heap, no passed fds), then a header frame that
  // claims 32 GiB and holds 1 byte.
  mp::detail::heap_ensure();
  const auto run = run_bootstrap([](int socket) {
    const std::string module_id = mp::pickle::dumps(mp::detail::main_module_id());
    send_bytes(socket, frame_header(module_id.size()) + module_id);
    ASSERT_FALSE(mp::posix::send_fd(socket, 'H', mp::detail::heap_main_fd()));
    const std::uint32_t passed_fds = 0;
    send_bytes(socket, std::string(reinterpret_cast<const char*>(&passed_fds), sizeof passed_fds));
    send_bytes(socket, frame_header(std::uint64_t{1} << 35) + "x");
  });
  ASSERT_TRUE(run.ended);
  EXPECT_EQ(run.status, 1) << run.err;
  EXPECT_LT(run.max_rss_kib, 128 * 1024) << "peak resident memory in KiB";
  EXPECT_NE(run.err.find("truncated bootstrap"), std::string::npos) << run.err;
}

TEST(SpawnBootstrap, RefusedLengthIsReported) {
  const auto run = run_bootstrap(frame_header(~std::uint64_t{0}));
  ASSERT_TRUE(run.ended);
  EXPECT_EQ(run.status, 1) << run.err;
  EXPECT_NE(run.err.find("corrupt bootstrap"), std::string::npos) << run.err;
}

}  // namespace
