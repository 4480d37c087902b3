// Tests of mp::Pool and mp::ProcessPoolExecutor over MPI (<mp/mpi.hpp>), run by ctest
// under `mpirun -n 3 --oversubscribe`: rank 0 runs the tests, ranks 1 and 2 serve.
// Every result is compared with a local pool's. Run with one rank, the WorldOne tests
// check the fallback to a local pool and the others are skipped.
//
// Program modes (first argument), for the tests that end the job:
//   --kill-rank  rank 0 SIGKILLs the serving rank that runs a task; the job must end.
#include <gtest/gtest.h>

#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <numeric>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <tuple>
#include <utility>
#include <vector>

#include <mp/connection.hpp>
#include <mp/context.hpp>
#include <mp/errors.hpp>
#include <mp/futures.hpp>
#include <mp/mpi.hpp>
#include <mp/pool.hpp>
#include <mp/sharedctypes.hpp>

#include "../pool_tasks.hpp"
#include "mpi/mpi_session.hpp"

namespace {

mp::mpi::Session* session = nullptr;

#ifdef MP_MPI_TEST_OTHER
[[maybe_unused]] volatile int other_build = 1;  // another binary, other code
#endif

using pool_tasks::add;
using pool_tasks::fail_on_three;
using pool_tasks::kill_self_at;
using pool_tasks::square;
int sleep_ms(int ms) {
  std::this_thread::sleep_for(std::chrono::milliseconds(ms));
  return ms;
}
// The MPI rank whose local pool runs this task (the worker inherits its environment).
int serving_rank(int) {
  const char* rank = std::getenv("OMPI_COMM_WORLD_RANK");
  return rank ? std::atoi(rank) : -1;
}
int pid_of_worker(int) { return ::getpid(); }
int pid_of_serving_rank(int) { return ::getppid(); }
// Sleeps `ms` and returns the pid of the worker that ran it.
int pid_after_sleep(int ms) {
  sleep_ms(ms);
  return ::getpid();
}

// The parent of process `pid`, from /proc (-1 when it cannot be read).
int parent_of(int pid) {
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  std::getline(stat, line);
  const auto close = line.rfind(')');
  if (close == std::string::npos) return -1;
  std::istringstream rest(line.substr(close + 1));
  std::string state;
  int ppid = -1;
  rest >> state >> ppid;
  return ppid;
}
std::string echo_size(std::string s) { return s + std::to_string(s.size()); }

int read_shared(mp::Value<int> v) { return v.value(); }
int connection_fd(const mp::Connection& c) { return c.fileno(); }

int init_value = 0;
void set_init_value(int v) { init_value = v; }
int read_init_value(int) { return init_value; }

bool served() { return session && session->size() > 1; }

#define REQUIRE_SERVING_RANKS() \
  if (!served()) GTEST_SKIP() << "needs mpirun -n 2 or more"

std::vector<int> iota(int n) {
  std::vector<int> xs(static_cast<std::size_t>(n));
  std::iota(xs.begin(), xs.end(), 0);
  return xs;
}

TEST(MpiPool, WorkersLiveOnTheServingRanks) {
  REQUIRE_SERVING_RANKS();
  mp::Pool pool({.start_method = "mpi"});
  int expected = 0;
  for (int w : session->workers_per_rank()) expected += w;
  EXPECT_EQ(pool.processes(), expected);
  const auto ranks = pool.map(serving_rank, iota(200), 1);
  std::set<int> seen(ranks.begin(), ranks.end());
  EXPECT_EQ(seen.count(0), 0u) << "no task may run on rank 0";
  for (int r : seen) EXPECT_GE(r, 1);
  EXPECT_EQ(seen.size(), static_cast<std::size_t>(session->size() - 1)) << "every rank took work";
}

TEST(MpiPool, EveryMethodEqualsALocalPool) {
  REQUIRE_SERVING_RANKS();
  mp::Pool local({.processes = 2});
  mp::Pool remote({.start_method = "mpi"});
  const auto xs = iota(1000);
  EXPECT_EQ(remote.map(square, xs), local.map(square, xs));
  EXPECT_EQ(remote.map(square, xs, 7), local.map(square, xs, 7));
  std::vector<std::tuple<int, int>> pairs;
  for (int i = 0; i < 100; ++i) pairs.emplace_back(i, 2 * i);
  EXPECT_EQ(remote.starmap(add, pairs), local.starmap(add, pairs));
  std::vector<int> imapped, local_imapped;
  for (int v : remote.imap(square, xs, 5)) imapped.push_back(v);
  for (int v : local.imap(square, xs, 5)) local_imapped.push_back(v);
  EXPECT_EQ(imapped, local_imapped);
  std::vector<int> unordered;
  for (int v : remote.imap_unordered(square, xs, 3)) unordered.push_back(v);
  std::sort(unordered.begin(), unordered.end());
  EXPECT_EQ(unordered, local.map(square, xs));
  EXPECT_EQ(remote.apply(add, 20, 22), local.apply(add, 20, 22));
  EXPECT_EQ(remote.map_async(square, xs).get(), local.map(square, xs));

  std::atomic<int> called{0};
  auto r = remote.apply_async_with([&](const int& v) { called += v; }, {}, square, 9);
  EXPECT_EQ(r.get(), 81);
  EXPECT_EQ(called.load(), 81);
  std::atomic<bool> errored{false};
  auto e = remote.apply_async_with(
      {}, [&](std::exception_ptr) { errored = true; }, fail_on_three, 3);
  EXPECT_THROW(e.get(), mp::RemoteError);
  EXPECT_TRUE(errored.load());
}

TEST(MpiPool, ThrowingTaskGivesRemoteError) {
  REQUIRE_SERVING_RANKS();
  mp::Pool pool({.start_method = "mpi"});
  try {
    pool.map(fail_on_three, iota(10), 1);
    FAIL() << "no RemoteError";
  } catch (const mp::RemoteError& e) {
    EXPECT_NE(std::string(e.what()).find("three is not allowed"), std::string::npos) << e.what();
  }
  EXPECT_EQ(pool.apply(square, 5), 25);  // the pool goes on
}

TEST(MpiPool, TaskThatKillsItsWorkerGivesWorkerLostErrorAndTheJobGoesOn) {
  REQUIRE_SERVING_RANKS();
  mp::Pool pool({.start_method = "mpi"});
  EXPECT_THROW(pool.apply(kill_self_at, 1, 1), mp::WorkerLostError);
  EXPECT_EQ(pool.apply(kill_self_at, 2, 1), 2);
  EXPECT_EQ(pool.map(square, iota(100)), mp::Pool({.processes = 1}).map(square, iota(100)));
}

TEST(MpiPool, InitializerRunsInEachWorker) {
  REQUIRE_SERVING_RANKS();
  mp::Pool pool({.initializer = mp::initializer(set_init_value, 42), .start_method = "mpi"});
  for (int v : pool.map(read_init_value, iota(50), 1)) EXPECT_EQ(v, 42);
}

void failing_init(int) { throw std::runtime_error("no init today"); }

TEST(MpiPool, FailingInitializerBreaksThePoolWithItsMessage) {
  REQUIRE_SERVING_RANKS();
  mp::Pool pool({.initializer = mp::initializer(failing_init, 0), .start_method = "mpi"});
  try {
    pool.apply(square, 2);
    FAIL() << "no BrokenProcessPool";
  } catch (const mp::BrokenProcessPool& e) {
    EXPECT_NE(std::string(e.what()).find("no init today"), std::string::npos) << e.what();
  }
}

TEST(MpiPool, TerminateEndsRemoteWorkersAndFailsTheirTasks) {
  REQUIRE_SERVING_RANKS();
  mp::Pool pool({.start_method = "mpi"});
  auto running = pool.map_async(sleep_ms, std::vector<int>(20, 2000), 1);
  std::this_thread::sleep_for(std::chrono::milliseconds(300));  // the tasks run
  const auto start = std::chrono::steady_clock::now();
  pool.terminate();
  pool.join();
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(5));
  EXPECT_THROW(running.get(), mp::BrokenProcessPool);
}

TEST(MpiExecutor, CancelTakesBackTasksStillAtRankZero) {
  REQUIRE_SERVING_RANKS();
  mp::ProcessPoolExecutor ex({.max_workers = 1, .start_method = "mpi"});
  std::vector<mp::Future<int>> fs;
  for (int i = 0; i < 200; ++i) fs.push_back(ex.submit(sleep_ms, 20));
  EXPECT_TRUE(fs.back().cancel()) << "the last task cannot have left rank 0 yet";
  EXPECT_TRUE(fs.back().cancelled());
  ex.shutdown(true, true);
  EXPECT_EQ(fs.front().result(), 20);
}

// CPU time (user + system) of process `pid` so far, in clock ticks.
long cpu_ticks(int pid) {
  std::FILE* f = std::fopen(("/proc/" + std::to_string(pid) + "/stat").c_str(), "r");
  if (!f) return -1;
  char buffer[1024] = {};
  const std::size_t n = std::fread(buffer, 1, sizeof buffer - 1, f);
  std::fclose(f);
  const char* after_name = std::strrchr(buffer, ')');
  if (!after_name || n == 0) return -1;
  long utime = 0, stime = 0;
  // Fields after the name: state, then 10 numbers, then utime and stime.
  if (std::sscanf(after_name + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %ld %ld", &utime,
                  &stime) != 2)
    return -1;
  return utime + stime;
}

TEST(MpiPool, IdleRanksBackOffInsteadOfSpinning) {
  REQUIRE_SERVING_RANKS();
  mp::Pool pool({.start_method = "mpi"});
  const int rank_pid = pool.apply(pid_of_serving_rank, 0);  // a serving rank, same machine
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  const long before = cpu_ticks(rank_pid);
  ASSERT_GE(before, 0);
  std::this_thread::sleep_for(std::chrono::seconds(1));
  const long used = cpu_ticks(rank_pid) - before;
  // A spinning rank would use the whole second (100 ticks); backing off, a few.
  EXPECT_LT(used, 15) << "an idle serving rank used " << used << " ticks of CPU in 1 s";
}

// The names of the abstract UNIX sockets process `pid` holds (from /proc: its fds'
// socket inodes, looked up in /proc/net/unix).
std::vector<std::string> abstract_sockets_of(int pid) {
  std::set<std::string> inodes;
  const std::string fd_dir = "/proc/" + std::to_string(pid) + "/fd/";
  for (int fd = 0; fd < 1024; ++fd) {
    char target[256] = {};
    const ssize_t n = ::readlink((fd_dir + std::to_string(fd)).c_str(), target, sizeof target - 1);
    const std::string link(target, n > 0 ? static_cast<std::size_t>(n) : 0);
    if (link.rfind("socket:[", 0) == 0) inodes.insert(link.substr(8, link.size() - 9));
  }
  std::vector<std::string> names;
  std::ifstream table("/proc/net/unix");
  std::string line;
  std::getline(table, line);  // the header
  while (std::getline(table, line)) {
    // Num RefCount Protocol Flags Type St Inode Path
    std::istringstream fields(line);
    std::string skip, inode, path;
    for (int i = 0; i < 6; ++i) fields >> skip;
    fields >> inode >> path;
    if (inodes.count(inode) && !path.empty() && path[0] == '@') names.push_back(path.substr(1));
  }
  return names;
}

TEST(MpiPool, ServingRanksOnThisMachineSleepOnADoorbell) {
  REQUIRE_SERVING_RANKS();
  mp::Pool pool({.start_method = "mpi"});
  const int rank_pid = pool.apply(pid_of_serving_rank, 0);
  std::vector<std::string> bells;
  for (const std::string& name : abstract_sockets_of(rank_pid))
    if (name.rfind("mp-mpi-", 0) == 0) bells.push_back(name);
  const char* env = std::getenv("MP_MPI_DOORBELL");
  if (env && std::string(env) == "0") {
    EXPECT_TRUE(bells.empty()) << "MP_MPI_DOORBELL=0, yet the rank has " << bells.front();
  } else {
    EXPECT_EQ(bells.size(), 1u) << "a serving rank on rank 0's machine has one doorbell";
    // Starting the workers rang every rank (nothing had been sent to them for a while):
    // each bell was bound in time, so rank 0 keeps ringing them all.
    for (int rank = 1; rank < session->size(); ++rank)
      EXPECT_TRUE(mp::detail::mpi::hub_rings(rank)) << "rank 0 stopped ringing rank " << rank;
  }
  // Pools work either way (without a bell, or when ringing fails, the rank only polls).
  const auto squares = pool.map(square, iota(100), 3);
  for (int i = 0; i < 100; ++i) ASSERT_EQ(squares[static_cast<std::size_t>(i)], i * i);
}

TEST(MpiPool, ARemoteWorkerHoldsFewLongTasksBehindARunningOne) {
  REQUIRE_SERVING_RANKS();
  mp::Pool pool({.processes = 2, .start_method = "mpi"});
  (void)pool.map(sleep_ms, std::vector<int>(8, 10), 1);  // the pool learns: tasks of 10 ms
  // A task handed to a serving rank cannot be taken back: those queued behind the long
  // first task wait for it, while the other worker runs all the rest in far less time.
  std::vector<int> tasks(40, 10);
  tasks[0] = 1000;
  const auto pids = pool.map(pid_after_sleep, tasks, 1);
  const auto stuck = std::count(pids.begin(), pids.end(), pids[0]);
  EXPECT_LE(stuck, 4) << "the worker of the long task was handed " << stuck - 1
                      << " tasks behind it";
}

TEST(MpiPool, MaxTasksPerChildReplacesWorkers) {
  REQUIRE_SERVING_RANKS();
  mp::Pool pool({.processes = 2, .maxtasksperchild = 1, .start_method = "mpi"});
  const auto pids = pool.map(pid_of_worker, iota(8), 1);
  EXPECT_EQ(std::set<int>(pids.begin(), pids.end()).size(), pids.size());
}

TEST(MpiPool, TaskTimeoutKillsTheTaskNotTheJob) {
  REQUIRE_SERVING_RANKS();
  mp::Pool pool(
      {.processes = 2, .start_method = "mpi", .task_timeout = std::chrono::milliseconds(300)});
  EXPECT_THROW(pool.apply(sleep_ms, 10000), mp::TimeoutError);
  EXPECT_EQ(pool.apply(sleep_ms, 1), 1);
}

TEST(MpiPool, AsyncResultTimeout) {
  REQUIRE_SERVING_RANKS();
  mp::Pool pool({.start_method = "mpi"});
  auto r = pool.apply_async(sleep_ms, 300);
  EXPECT_THROW(r.get(std::chrono::milliseconds(10)), mp::TimeoutError);
  EXPECT_EQ(r.get(), 300);
}

TEST(MpiPool, MessagesLargerThanOnePartAndTheRing) {
  REQUIRE_SERVING_RANKS();
  // ctest sets MP_MPI_MAX_PART small, so these travel in many MPI messages; 1 MiB
  // inputs also go through the serving rank's shared heap to its worker.
  mp::Pool pool({.start_method = "mpi"});
  std::vector<std::string> inputs;
  for (int i = 0; i < 6; ++i) inputs.push_back(std::string(std::size_t{1} << (10 + 2 * i), 'x'));
  const auto out = pool.map(echo_size, inputs, 1);
  for (std::size_t i = 0; i < inputs.size(); ++i)
    EXPECT_EQ(out[i], inputs[i] + std::to_string(inputs[i].size()));
}

TEST(MpiPool, MachineLocalHandlesFailToPickle) {
  REQUIRE_SERVING_RANKS();
  mp::Pool pool({.start_method = "mpi"});
  mp::Value<int> shared(7);
  EXPECT_THROW(pool.apply(read_shared, shared), mp::PicklingError);
  EXPECT_THROW(pool.map(read_shared, std::vector<mp::Value<int>>{shared}), mp::PicklingError);
  EXPECT_THROW(pool.imap(read_shared, std::vector<mp::Value<int>>{shared}).next(),
               mp::PicklingError);
  auto [reader, writer] = mp::Pipe();
  EXPECT_THROW(pool.apply(connection_fd, std::move(reader)), mp::PicklingError);
  mp::ProcessPoolExecutor ex({.start_method = "mpi"});
  EXPECT_THROW(ex.submit(read_shared, shared), mp::PicklingError);
  // A local pool takes the same handle.
  EXPECT_EQ(mp::Pool({.processes = 1}).apply(read_shared, shared), 7);
}

void init_with_shared(mp::Value<int> v) { init_value = v.value(); }
void init_with_connection(const mp::Connection& c) { init_value = c.fileno(); }

TEST(MpiPool, MachineLocalHandlesInAnInitializerFailToPickleAtRankZero) {
  REQUIRE_SERVING_RANKS();
  mp::Value<int> shared(7);
  auto init = [&] { return mp::initializer(init_with_shared, shared); };
  try {
    mp::Pool pool({.initializer = init(), .start_method = "mpi"});
    FAIL() << "no PicklingError";
  } catch (const mp::PicklingError& e) {
    EXPECT_NE(std::string(e.what()).find("initializer"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("another machine"), std::string::npos) << e.what();
  }
  EXPECT_THROW(mp::ProcessPoolExecutor({.initializer = init(), .start_method = "mpi"}),
               mp::PicklingError);
  auto [reader, writer] = mp::Pipe();
  EXPECT_THROW(mp::Pool({.initializer = mp::initializer(init_with_connection, std::move(reader)),
                         .start_method = "mpi"}),
               mp::PicklingError);
  // A local pool takes the same initializer; a remote one plain values.
  EXPECT_EQ(mp::Pool({.processes = 1, .initializer = init()}).apply(read_init_value, 0), 7);
  EXPECT_EQ(mp::Pool({.initializer = mp::initializer(set_init_value, 5), .start_method = "mpi"})
                .apply(read_init_value, 0),
            5);
}

// Every fd the link to the serving ranks creates stays above stdio, so a program started
// with stdin closed does not find a pool's fd as its stdin.
TEST(MpiPool, FdsStayAboveStdio) {
  REQUIRE_SERVING_RANKS();
  const int saved = ::dup(0);
  ASSERT_GE(saved, 0);
  ::close(0);
  bool fd0_taken = false;
  {
    mp::Pool pool({.start_method = "mpi"});
    EXPECT_EQ(pool.map(square, iota(10), 1), mp::Pool({.processes = 1}).map(square, iota(10)));
    fd0_taken = ::fcntl(0, F_GETFD) != -1;
  }
  ::dup2(saved, 0);
  ::close(saved);
  EXPECT_FALSE(fd0_taken) << "a pool's fd became fd 0";
}

TEST(MpiExecutor, SubmitMapWaitAsCompleted) {
  REQUIRE_SERVING_RANKS();
  mp::ProcessPoolExecutor ex({.start_method = "mpi"});
  std::vector<mp::Future<int>> fs;
  for (int i = 0; i < 20; ++i) fs.push_back(ex.submit(square, i));
  auto [done, not_done] = mp::futures::wait(fs);
  EXPECT_EQ(done.size(), 20u);
  EXPECT_TRUE(not_done.empty());
  int sum = 0;
  for (auto f : mp::futures::as_completed(fs)) sum += f.result();
  EXPECT_EQ(sum, 2470);
  std::vector<int> mapped;
  for (int v : ex.map(square, mp::MapOptions{.chunksize = 8}, iota(100))) mapped.push_back(v);
  EXPECT_EQ(mapped, mp::Pool({.processes = 1}).map(square, iota(100)));
  auto bad = ex.submit(fail_on_three, 3);
  EXPECT_THROW(bad.result(), mp::RemoteError);
  ex.shutdown();
}

TEST(MpiWorldOne, FallsBackToALocalPool) {
  if (served()) GTEST_SKIP() << "needs one rank";
  mp::Pool pool({.start_method = "mpi"});
  EXPECT_EQ(pool.processes(), mp::cpu_count());
  EXPECT_EQ(pool.map(square, iota(10)), (std::vector<int>{0, 1, 4, 9, 16, 25, 36, 49, 64, 81}));
  // A local worker's parent is us, or, since MPI's threads are alive, our fork server.
  const int parent = pool.apply(pid_of_serving_rank, 0);
  EXPECT_TRUE(parent == ::getpid() || parent_of(parent) == ::getpid()) << parent;
}

// --kill-rank: a serving rank dies under a running map; Open MPI must end the job.
int kill_a_rank() {
  mp::Pool pool({.start_method = "mpi"});
  const int victim = pool.apply(pid_of_serving_rank, 0);
  auto running = pool.map_async(sleep_ms, std::vector<int>(40, 100), 1);
  ::kill(victim, SIGKILL);
  running.wait();  // never returns: the job is aborted
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  mp::freeze_support(argc, argv);
  mp::mpi::Session mpi(argc, argv);  // ranks other than 0 serve here and exit
  session = &mpi;
  if (argc > 1 && std::strcmp(argv[1], "--kill-rank") == 0) return kill_a_rank();
  testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}
