// Tests for the forkserver start method's own promises (the per-method suites run every
// other test for it too), for start methods in threaded programs, and for the fork
// warning.
#include <pthread.h>
#include <signal.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <mp/mp.hpp>

#include "forkserver.hpp"
#include "process_state.hpp"
#include "test_util.hpp"

namespace {

using namespace std::chrono_literals;
using namespace mp_test;

void sleep_forever() {
  for (;;) ::pause();
}

// Starts a daemon and a non-daemon forkserver child, reports the server's pid and
// theirs, and waits to be killed.
void start_children_and_wait(std::string report) {
  auto ctx = mp::get_context("forkserver");
  auto daemon = ctx.process(mp::ProcessOptions{.daemon = true}, &sleep_forever);
  auto other = ctx.process(&sleep_forever);
  daemon.start();
  other.start();
  write_file(report, std::to_string(mp::detail::forkserver_pid()) + " " +
                         std::to_string(daemon.pid()) + " " + std::to_string(other.pid()));
  sleep_forever();
}

// The logical parent is SIGKILLed: its server goes, its daemon child goes with it (the
// server, the daemon's real parent, kills it), and its non-daemon child lives on, as
// with fork and spawn.
TEST(ForkServer, ServerAndDaemonChildrenGoWhenTheParentIsKilled) {
  TempDir dir;
  mp::Process parent(&start_children_and_wait, dir.file("pids"));
  parent.start();
  const auto text = wait_for_file(dir.file("pids"));
  ASSERT_TRUE(text);
  pid_t server = 0, daemon = 0, other = 0;
  ASSERT_EQ(std::sscanf(text->c_str(), "%d %d %d", &server, &daemon, &other), 3) << *text;
  ASSERT_GT(server, 0);
  parent.kill();
  ASSERT_TRUE(parent.join(30s));
  EXPECT_TRUE(mp_test::wait_gone(server, 10s)) << "the fork server outlived its parent";
  EXPECT_TRUE(mp_test::wait_gone(daemon, 10s)) << "a daemon child outlived its parent";
  EXPECT_FALSE(mp_test::wait_gone(other, 100ms)) << "a non-daemon child died with its parent";
  for (pid_t pid : {server, daemon, other}) ::kill(pid, SIGKILL);
}

int g_preloaded = 0;
void preload_one() { g_preloaded += 1; }
void preload_two() { g_preloaded += 10; }
void exit_with_preloaded() { std::exit(g_preloaded); }

// Preload functions run once, in the server: every child sees what they did.
void check_preload() {
  mp::set_forkserver_preload(&preload_one, &preload_two);
  auto ctx = mp::get_context("forkserver");
  for (int i = 0; i < 2; ++i) {
    auto child = ctx.process(&exit_with_preloaded);
    child.start();
    child.join();
    if (child.exitcode() != 11) std::exit(1);
  }
  std::exit(g_preloaded == 0 ? 0 : 2);  // not run in this process
}

TEST(ForkServer, PreloadRunsOnceInTheServer) {
  mp::Process p(&check_preload);  // a fresh process: its server is not started yet
  p.start();
  ASSERT_TRUE(p.join(60s));
  EXPECT_EQ(p.exitcode(), 0);
  EXPECT_THROW(mp::set_forkserver_preload(std::vector<void (*)()>{nullptr}), std::invalid_argument);
}

void exit_with(int code) { std::exit(code); }

// A server that died is replaced at the next start.
TEST(ForkServer, ADeadServerIsReplaced) {
  auto ctx = mp::get_context("forkserver");
  auto first = ctx.process(&exit_with, 3);
  first.start();
  ASSERT_TRUE(first.join(30s));
  EXPECT_EQ(first.exitcode(), 3);
  const pid_t server = mp::detail::forkserver_pid();
  ASSERT_GT(server, 0);
  ::kill(server, SIGKILL);
  ASSERT_TRUE(mp_test::wait_gone(server, 10s));
  auto second = ctx.process(&exit_with, 4);
  second.start();
  ASSERT_TRUE(second.join(30s));
  EXPECT_EQ(second.exitcode(), 4);
  EXPECT_NE(mp::detail::forkserver_pid(), server);
}

// ---- another thread holds a lock while a child is started --------------------------
// With fork the child inherits the lock held and deadlocks (the std::mutex case does;
// glibc's fork makes malloc and stdio safe by itself, other C libraries may not);
// forkserver and spawn children start from a single-threaded image. Runs for every
// method but fork.

std::vector<std::string> methods_without_fork() {
  std::vector<std::string> out;
  for (const auto& method : mp::get_all_start_methods())
    if (method != "fork") out.push_back(method);
  return out;
}

class LockedByAThread : public ::testing::TestWithParam<std::string> {
 protected:
  // Runs `hold` in a thread until the child started with `child` has ended; the child
  // must end with 0 within the limit.
  template <class Hold>
  void expect_child_finishes(Hold hold, void (*child)()) {
    std::fflush(stdout);  // start() flushes what is pending, which would wait for the lock
    std::atomic<bool> holding{false}, stop{false};
    std::thread holder([&] { hold(holding, stop); });
    while (!holding) std::this_thread::yield();
    mp::Process p({.start_method = GetParam()}, child);
    p.start();
    const bool ended = p.join(30s);
    stop = true;
    holder.join();
    if (!ended) p.kill(), p.join();
    EXPECT_TRUE(ended) << "the child deadlocked on a lock held by a thread of its parent";
    EXPECT_EQ(p.exitcode(), 0);
  }
};

std::mutex g_shared_mutex;

void take_shared_mutex() {
  std::lock_guard lock(g_shared_mutex);
  std::exit(0);
}

TEST_P(LockedByAThread, StdMutex) {
  expect_child_finishes(
      [](std::atomic<bool>& holding, std::atomic<bool>& stop) {
        std::lock_guard lock(g_shared_mutex);
        holding = true;
        while (!stop) std::this_thread::sleep_for(1ms);
      },
      &take_shared_mutex);
}

void malloc_heavy() {
  for (int i = 0; i < 100000; ++i) {
    void* p = std::malloc(static_cast<std::size_t>(16 + i % 4096));
    std::free(p);
  }
  std::exit(0);
}

TEST_P(LockedByAThread, MallocHeavyWork) {
  expect_child_finishes(
      [](std::atomic<bool>& holding, std::atomic<bool>& stop) {
        holding = true;
        std::vector<void*> blocks(64);
        for (unsigned i = 0; !stop; ++i) {
          std::free(blocks[i % 64]);
          blocks[i % 64] = std::malloc(16 + i % 8192);
        }
        for (void* b : blocks) std::free(b);
      },
      &malloc_heavy);
}

void print_to_stdout() {
  std::printf("child writes to stdout\n");
  std::fflush(stdout);
  std::exit(0);
}

TEST_P(LockedByAThread, StdioLock) {
  expect_child_finishes(
      [](std::atomic<bool>& holding, std::atomic<bool>& stop) {
        ::flockfile(stdout);
        holding = true;
        while (!stop) std::this_thread::sleep_for(1ms);
        ::funlockfile(stdout);
      },
      &print_to_stdout);
}

INSTANTIATE_TEST_SUITE_P(StartMethods, LockedByAThread, ::testing::ValuesIn(methods_without_fork()),
                         mp_test::method_name);

// ---- the fork warning -----------------------------------------------------------------

void exit_zero() { std::exit(0); }

// Starts two fork children while a thread is alive, with stderr on `path`.
void fork_twice_with_a_thread(std::string path, bool silenced) {
  std::FILE* err = std::freopen(path.c_str(), "w", stderr);
  if (!err) std::exit(3);
  if (silenced) mp::set_fork_warning(false);
  std::atomic<bool> stop{false};
  std::thread other([&] {
    while (!stop) std::this_thread::sleep_for(1ms);
  });
  for (int i = 0; i < 2; ++i) {
    mp::Process p({.start_method = "fork"}, &exit_zero);
    p.start();
    p.join();
  }
  stop = true;
  other.join();
  std::exit(0);
}

TEST(ForkWarning, OnceWhenOtherThreadsAreAliveUnlessSilenced) {
  for (bool silenced : {false, true}) {
    TempDir dir;
    mp::Process p(&fork_twice_with_a_thread, dir.file("err"), silenced);
    p.start();
    ASSERT_TRUE(p.join(60s));
    ASSERT_EQ(p.exitcode(), 0);
    const std::string err = read_file(dir.file("err")).value_or("");
    std::size_t count = 0;
    for (auto at = err.find("is multi-threaded"); at != std::string::npos;
         at = err.find("is multi-threaded", at + 1))
      ++count;
    EXPECT_EQ(count, silenced ? 0u : 1u) << err;
  }
}

TEST(ForkWarning, NotWithOneThread) {
  mp_test::CaptureStderr captured;
  mp::Process p({.start_method = "fork"}, &exit_zero);
  p.start();
  p.join();
  EXPECT_EQ(captured.text().find("multi-threaded"), std::string::npos);
}

TEST(ForkWarning, OtherThreadsAlive) {
  EXPECT_FALSE(mp::detail::other_threads_alive());
  std::atomic<bool> stop{false};
  std::thread other([&] {
    while (!stop) std::this_thread::sleep_for(1ms);
  });
  EXPECT_TRUE(mp::detail::other_threads_alive());
  stop = true;
  other.join();
}

// ---- pools in threaded programs --------------------------------------------------------

std::string worker_name(int) { return mp::current_process().name(); }

// A fork pool in a process with other threads alive starts its workers (and its
// replacements, from its result thread) with the fork server.
TEST(PoolInThreadedProgram, ForkWorkersComeFromTheForkServer) {
  mp::Pool single({.processes = 1, .start_method = "fork"});
  EXPECT_TRUE(single.apply(&worker_name, 0).starts_with("ForkPoolWorker-"));
  mp::Pool pool({.processes = 1, .maxtasksperchild = 1, .start_method = "fork"});
  // The first pool's result thread is alive: every worker of the second comes from
  // the fork server, the first as well as the replacements.
  for (int i = 0; i < 3; ++i)
    EXPECT_TRUE(pool.apply(&worker_name, i).starts_with("ForkServerPoolWorker-"));
}

// ---- contexts ----------------------------------------------------------------------------

int twice(int x) { return 2 * x; }

TEST(ContextFactories, PoolExecutorAndManagerUseTheContextsMethod) {
  for (const auto& method : mp::get_all_start_methods()) {
    SCOPED_TRACE(method);
    auto ctx = mp::get_context(method);
    auto pool = ctx.pool({.processes = 1});
    EXPECT_EQ(pool.apply(&twice, 21), 42);
    const std::string name = pool.apply(&worker_name, 0);
    EXPECT_TRUE(name.starts_with(mp::detail::pool_worker_name(method, 1).substr(0, 6))) << name;
    auto executor = ctx.executor({.max_workers = 1});
    EXPECT_EQ(executor.submit(&twice, 4).result(), 8);
    auto manager = ctx.manager({.segment_size = 1 << 20});
    auto dict = manager.dict<int, int>();
    dict.set(1, 2);
    EXPECT_EQ(dict.get(1), 2);
  }
}

}  // namespace

namespace {

// The server started by hand, with no parent behind fd 3: a clear message, exit 1.
TEST(ForkServer, StartedByHandRefuses) {
  auto result = mp_test::run_command(
      {"/bin/sh", "-c", "exec 3</dev/null; exec \"$0\" --mp-forkserver 3", MP_TESTS_BINARY_PATH});
  EXPECT_EQ(result.exit_status, 1) << result.err;
  EXPECT_NE(result.err.find("no greeting"), std::string::npos) << result.err;
}

}  // namespace
