// Tests for <mp/futures.hpp>, once per start method (fork, spawn). Tasks that must stay
// running wait on an mp::Event with a bound; nothing sleeps to synchronize.
#include <gtest/gtest.h>

#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <future>
#include <numeric>
#include <ranges>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <mp/futures.hpp>
#include <mp/synchronize.hpp>

#include "test_util.hpp"

using namespace std::chrono_literals;

namespace {

int square(int x) { return x * x; }
int add(int a, int b) { return a + b; }
int fail_with(int x) {
  if (x == 3) throw std::out_of_range("no three");
  return x;
}
int kill_self(int x) {
  ::kill(::getpid(), SIGKILL);
  return x;
}
int wait_for_event(mp::Event event) {
  (void)event.wait(60s);
  return 7;
}
int pid_of(int) { return static_cast<int>(::getpid()); }
// Tells the test it runs, then waits for `go` (at most a minute).
int started_then_wait(mp::Event started, mp::Event go) {
  started.set();
  (void)go.wait(60s);
  return 8;
}
int slow_identity(int x) {
  std::this_thread::sleep_for(200ms);
  return x;
}
int throw_a_mebibyte(int) { throw std::runtime_error(std::string(1 << 20, 'e')); }
// Tells the test it runs (with SIGTERM ignored if asked), then sleeps for a minute.
int sleep_a_minute(mp::Event running, bool ignore_sigterm) {
  if (ignore_sigterm) ::signal(SIGTERM, SIG_IGN);
  running.set();
  std::this_thread::sleep_for(60s);
  return 1;
}

class FuturesTest : public ::testing::TestWithParam<std::string> {
 protected:
  mp::ProcessPoolExecutorOptions options(int workers = 2) const {
    return {.max_workers = workers, .start_method = GetParam()};
  }
};

TEST_P(FuturesTest, SubmitAndResult) {
  mp::ProcessPoolExecutor executor(options());
  auto f = executor.submit(square, 9);
  EXPECT_EQ(f.result(), 81);
  EXPECT_TRUE(f.done());
  EXPECT_FALSE(f.running());
  EXPECT_FALSE(f.cancelled());
  EXPECT_EQ(f.exception(), nullptr);
  EXPECT_EQ(f.result(1s), 81);
  auto v = executor.submit([] {});
  v.result();
  EXPECT_TRUE(v.done());
}

TEST_P(FuturesTest, ExceptionArrivesAsRemoteError) {
  mp::ProcessPoolExecutor executor(options());
  auto f = executor.submit(fail_with, 3);
  auto error = f.exception(60s);
  ASSERT_NE(error, nullptr);
  try {
    std::rethrow_exception(error);
  } catch (const mp::RemoteError& e) {
    EXPECT_EQ(e.type_name(), "std::out_of_range");
    EXPECT_EQ(e.message(), "no three");
  }
  EXPECT_THROW(f.result(), mp::RemoteError);
  EXPECT_EQ(executor.submit(square, 2).result(), 4);
}

TEST_P(FuturesTest, ResultTimeoutRunningAndCancel) {
  mp::ProcessPoolExecutor executor(options(1));
  mp::Event started, go;
  auto blocked = executor.submit(started_then_wait, started, go);
  EXPECT_THROW(blocked.result(10ms), mp::TimeoutError);
  EXPECT_THROW((void)blocked.exception(1ms), mp::TimeoutError);
  ASSERT_TRUE(started.wait(60s));
  EXPECT_TRUE(blocked.running());
  EXPECT_FALSE(blocked.cancel());  // a worker has it
  // More tasks than a worker is ever handed at once: the last ones stay queued.
  std::vector<mp::Future<int>> queued;
  for (int i = 0; i < 300; ++i) queued.push_back(executor.submit(square, i));
  EXPECT_FALSE(queued.back().running());
  EXPECT_TRUE(queued.back().cancel());
  EXPECT_TRUE(queued.back().cancelled());
  EXPECT_TRUE(queued.back().done());
  EXPECT_TRUE(queued.back().cancel());  // again: still true
  EXPECT_THROW(queued.back().result(), mp::CancelledError);
  go.set();
  EXPECT_EQ(blocked.result(60s), 8);
  for (int i = 0; i < 299; ++i) EXPECT_EQ(queued[i].result(60s), i * i);
}

TEST_P(FuturesTest, DoneCallbacks) {
  mp::ProcessPoolExecutor executor(options());
  std::promise<int> seen;
  auto f = executor.submit(square, 5);
  f.add_done_callback([&](const mp::Future<int>& done) { seen.set_value(done.result()); });
  auto seen_future = seen.get_future();
  ASSERT_EQ(seen_future.wait_for(60s), std::future_status::ready);
  EXPECT_EQ(seen_future.get(), 25);
  // Registered after completion: runs at once, in this thread.
  bool immediate = false;
  f.add_done_callback([&](const mp::Future<int>&) { immediate = true; });
  EXPECT_TRUE(immediate);
}

TEST_P(FuturesTest, WaitReturnWhen) {
  // Three workers: the failing task must not queue behind a blocked one.
  mp::ProcessPoolExecutor executor(options(3));
  mp::Event go;
  std::vector<mp::Future<int>> fs{executor.submit(wait_for_event, go), executor.submit(square, 3)};
  auto first = mp::futures::wait(fs, 60s, mp::futures::FIRST_COMPLETED);
  ASSERT_EQ(first.done.size(), 1u);
  EXPECT_EQ(first.done[0].result(), 9);
  EXPECT_EQ(first.not_done.size(), 1u);
  auto timed_out = mp::futures::wait(fs, 10ms, mp::futures::ALL_COMPLETED);
  EXPECT_EQ(timed_out.not_done.size(), 1u);

  std::vector<mp::Future<int>> with_error{executor.submit(wait_for_event, go),
                                          executor.submit(fail_with, 3)};
  auto on_error = mp::futures::wait(with_error, 60s, mp::futures::FIRST_EXCEPTION);
  ASSERT_EQ(on_error.done.size(), 1u);
  EXPECT_NE(on_error.done[0].exception(), nullptr);

  go.set();
  auto all = mp::futures::wait(fs);
  EXPECT_EQ(all.done.size(), 2u);
  EXPECT_TRUE(all.not_done.empty());
}

TEST_P(FuturesTest, AsCompletedYieldsInCompletionOrder) {
  mp::ProcessPoolExecutor executor(options());
  mp::Event go;
  std::vector<mp::Future<int>> fs{executor.submit(wait_for_event, go), executor.submit(square, 4)};
  auto completed = mp::futures::as_completed(fs, 60s);
  auto first = completed.next();
  ASSERT_TRUE(first.has_value());
  EXPECT_EQ(first->result(), 16);
  go.set();
  auto second = completed.next();
  ASSERT_TRUE(second.has_value());
  EXPECT_EQ(second->result(), 7);
  EXPECT_FALSE(completed.next().has_value());

  mp::Event never;
  std::vector<mp::Future<int>> stuck{executor.submit(wait_for_event, never)};
  auto timing_out = mp::futures::as_completed(stuck, 10ms);
  EXPECT_THROW(timing_out.next(), mp::TimeoutError);
  never.set();
  int count = 0;
  for (const auto& f : mp::futures::as_completed(stuck)) count += f.result() == 7;
  EXPECT_EQ(count, 1);
}

TEST_P(FuturesTest, MapIsLazyAndOrdered) {
  mp::ProcessPoolExecutor executor(options());
  std::vector<int> got;
  for (int v : executor.map(square, mp_test::iota(0, 100), 3)) got.push_back(v);
  ASSERT_EQ(got.size(), 100u);
  for (int i = 0; i < 100; ++i) EXPECT_EQ(got[i], i * i);
  auto endless = executor.map(square, mp_test::iota(0), 1, 8);
  for (int i = 0; i < 50; ++i) EXPECT_EQ(endless.next(60s), i * i);
}

TEST_P(FuturesTest, MapOverSeveralIterablesZipsThemToTheShortest) {
  mp::ProcessPoolExecutor executor(options());
  // Python: list(executor.map(pow, [2, 3, 4], [5, 2])) == [32, 9]
  std::vector<long> got;
  for (long v : executor.map(
           [](long base, int exponent) {
             long out = 1;
             for (int i = 0; i < exponent; ++i) out *= base;
             return out;
           },
           std::vector<long>{2, 3, 4}, std::vector<int>{5, 2}))
    got.push_back(v);
  EXPECT_EQ(got, (std::vector<long>{32, 9}));
  // Three inputs, one of them endless and generated, one a temporary: lazy, in order.
  auto joined =
      executor.map([](int i, const std::string& s, char c) { return s + c + std::to_string(i); },
                   mp_test::iota(0), std::vector<std::string>{"a", "b", "c"}, std::string("xyz"));
  std::vector<std::string> strings;
  for (auto& s : joined) strings.push_back(s);
  EXPECT_EQ(strings, (std::vector<std::string>{"ax0", "by1", "cz2"}));
  // An empty input gives nothing; a task's exception arrives at its place.
  int calls = 0;
  for (int v : executor.map(add, std::vector<int>{}, mp_test::iota(0))) calls += v + 1;
  EXPECT_EQ(calls, 0);
  auto failing = executor.map(
      [](int a, int b) {
        if (b == 0) throw std::invalid_argument("division by zero");
        return a / b;
      },
      std::vector<int>{4, 1}, std::vector<int>{2, 0});
  EXPECT_EQ(failing.next(60s), 2);
  EXPECT_THROW(failing.next(60s), mp::RemoteError);
}

// Python 3.14's terminate_workers() and kill_workers(): pending tasks are cancelled,
// running ones fail at once, and no worker is left behind.
void check_forced_shutdown(const mp::ProcessPoolExecutorOptions& options, bool kill) {
  mp::ProcessPoolExecutor executor(options);
  mp::Event running;
  auto busy = executor.submit(sleep_a_minute, running, /*ignore_sigterm=*/kill);
  ASSERT_TRUE(running.wait(60s));
  // One worker, busy: these wait, the first few handed to it already (as Python's call
  // queue holds some), the others still in the executor.
  std::vector<mp::Future<int>> waiting;
  for (int i = 0; i < 20; ++i) waiting.push_back(executor.submit(square, i));
  const auto pids = executor.worker_pids();
  const auto start = std::chrono::steady_clock::now();
  if (kill)
    executor.kill_workers();
  else
    executor.terminate_workers();
  EXPECT_THROW(busy.result(30s), mp::BrokenProcessPool);
  int cancelled = 0;
  for (auto& f : waiting) {
    if (f.cancelled())
      ++cancelled;
    else
      EXPECT_THROW(f.result(30s), mp::BrokenProcessPool);
  }
  EXPECT_GT(cancelled, 0);
  EXPECT_THROW(executor.submit(square, 4), std::invalid_argument);
  executor.shutdown(true);
  // Bounded far above a loaded machine's scheduling delays, far below a hang (the
  // results above wait up to 30 s each).
  EXPECT_LT(std::chrono::steady_clock::now() - start, 60s);
  for (int pid : pids) EXPECT_TRUE(mp_test::wait_gone(pid, 10000ms)) << pid;
}

TEST_P(FuturesTest, MapTakesPythonsKeywordArguments) {
  mp::ProcessPoolExecutor executor(options());
  // Python: executor.map(add, xs, ys, chunksize=7, buffersize=2)
  std::vector<int> xs(100), ys(100);
  std::iota(xs.begin(), xs.end(), 0);
  std::iota(ys.begin(), ys.end(), 1000);
  auto sums = executor.map(add, {.chunksize = 7, .buffersize = 2}, xs, ys);
  int i = 0;
  for (int v : sums) EXPECT_EQ(v, 1000 + 2 * i++);
  EXPECT_EQ(i, 100);
  // One range, and an endless one: lazy with both.
  auto squares = executor.map(square, {.chunksize = 5}, mp_test::iota(0));
  for (int k = 0; k < 30; ++k) EXPECT_EQ(squares.next(60s), k * k);
}

TEST_P(FuturesTest, MapTimeoutCountsFromTheCall) {
  mp::ProcessPoolExecutor executor(options());
  // Both workers running first: the 300 ms below are for the tasks, and a spawned worker
  // of the sanitizer build takes longer than that to start.
  {
    mp::Event started_a, started_b, go;
    auto a = executor.submit(started_then_wait, started_a, go);
    auto b = executor.submit(started_then_wait, started_b, go);
    ASSERT_TRUE(started_a.wait(60s));
    ASSERT_TRUE(started_b.wait(60s));
    go.set();
    ASSERT_EQ(a.result(60s), 8);
    ASSERT_EQ(b.result(60s), 8);
  }
  mp::Event ready, never;
  ready.set();
  const auto start = std::chrono::steady_clock::now();
  // Python: executor.map(wait_for_event, [ready, never], timeout=0.3)
  auto results = executor.map(wait_for_event, {.timeout = 300ms}, std::vector{ready, never});
  EXPECT_EQ(results.next(), 7);
  EXPECT_THROW((void)results.next(), mp::TimeoutError);
  const auto waited = std::chrono::steady_clock::now() - start;
  EXPECT_GE(waited, 300ms);
  EXPECT_LT(waited, 20s);
  // next(timeout) waits on its own terms.
  never.set();
  EXPECT_EQ(results.next(60s), 7);
  EXPECT_EQ(results.next(), std::nullopt);
  // No timeout: no limit (and a huge one is no limit either).
  auto unlimited =
      executor.map(square, {.timeout = std::chrono::nanoseconds::max()}, std::vector<int>{3});
  EXPECT_EQ(unlimited.next(), 9);
}

TEST_P(FuturesTest, TerminateWorkersEndsRunningTasksAndCancelsTheRest) {
  check_forced_shutdown(options(1), /*kill=*/false);
}

TEST_P(FuturesTest, KillWorkersEndsEvenAWorkerThatIgnoresSigterm) {
  check_forced_shutdown(options(1), /*kill=*/true);
}

TEST_P(FuturesTest, LostWorkerFailsItsFutureButTheExecutorStaysUsable) {
  mp::ProcessPoolExecutor executor(options());
  auto lost = executor.submit(kill_self, 1);
  try {
    lost.result(60s);
    FAIL() << "result should have thrown";
  } catch (const mp::WorkerLostError& e) {
    EXPECT_EQ(e.exitcode(), -SIGKILL);
  }
  EXPECT_THROW(
      {
        try {
          std::rethrow_exception(lost.exception());
        } catch (const mp::BrokenProcessPool&) {
          throw;
        }
      },
      mp::BrokenProcessPool);
  std::vector<mp::Future<int>> fs;
  for (int i = 0; i < 20; ++i) fs.push_back(executor.submit(square, i));
  for (int i = 0; i < 20; ++i) EXPECT_EQ(fs[i].result(60s), i * i);
}

TEST_P(FuturesTest, MaxTasksPerChildAndShutdown) {
  mp::ProcessPoolExecutor executor(
      {.max_workers = 1, .max_tasks_per_child = 1, .start_method = GetParam()});
  std::set<int> pids;
  for (int i = 0; i < 3; ++i) pids.insert(executor.submit(pid_of, 0).result(60s));
  EXPECT_EQ(pids.size(), 3u);

  mp::ProcessPoolExecutor other(options(1));
  mp::Event started, go;
  auto running = other.submit(started_then_wait, started, go);
  ASSERT_TRUE(started.wait(60s));  // a task not started yet would be cancelled too
  std::vector<mp::Future<int>> queued;
  for (int i = 0; i < 300; ++i) queued.push_back(other.submit(square, i));
  other.shutdown(false, true);  // the queued tasks are cancelled, the running one goes on
  EXPECT_TRUE(queued.back().cancelled());
  EXPECT_THROW(other.submit(square, 1), std::invalid_argument);
  go.set();
  EXPECT_EQ(running.result(60s), 8);
  for (auto& f : queued) {
    EXPECT_TRUE(f.cancelled() || f.result(60s) >= 0);
    EXPECT_TRUE(f.done());
  }
}

TEST_P(FuturesTest, TasksHandedToABusyWorkerStayPendingAndCancellable) {
  mp::ProcessPoolExecutor executor(options(1));
  mp::Event started, go;
  auto busy = executor.submit(started_then_wait, started, go);
  ASSERT_TRUE(started.wait(60s));
  EXPECT_TRUE(busy.running());
  // Few enough that the worker is handed them all at once.
  std::vector<mp::Future<int>> queued;
  for (int i = 0; i < 6; ++i) queued.push_back(executor.submit(square, i));
  for (auto& f : queued) EXPECT_FALSE(f.running());
  EXPECT_TRUE(queued[1].cancel());
  EXPECT_TRUE(queued[4].cancel());
  EXPECT_TRUE(queued[1].cancelled());
  EXPECT_TRUE(queued[4].done());
  EXPECT_FALSE(busy.cancel());
  go.set();
  EXPECT_EQ(busy.result(60s), 8);
  for (int i : {0, 2, 3, 5}) EXPECT_EQ(queued[i].result(60s), i * i);
  EXPECT_THROW(queued[1].result(60s), mp::CancelledError);
  EXPECT_THROW(queued[4].result(60s), mp::CancelledError);
  EXPECT_FALSE(queued[0].running());  // finished
  // The worker carries on after skipping the cancelled tasks.
  EXPECT_EQ(executor.submit(square, 9).result(60s), 81);
}

TEST_P(FuturesTest, ShutdownCancelsEveryTaskThatHasNotStarted) {
  mp::ProcessPoolExecutor executor(options(1));
  mp::Event started, go;
  auto busy = executor.submit(started_then_wait, started, go);
  ASSERT_TRUE(started.wait(60s));
  std::vector<mp::Future<int>> queued;
  for (int i = 0; i < 6; ++i) queued.push_back(executor.submit(square, i));
  executor.shutdown(false, true);
  for (auto& f : queued) EXPECT_TRUE(f.cancelled());
  go.set();
  EXPECT_EQ(busy.result(60s), 8);
  executor.shutdown(true);
}

TEST_P(FuturesTest, MaxTasksPerChildWorkerSkippingCancelledTasksIsReplaced) {
  mp::ProcessPoolExecutor executor(
      {.max_workers = 1, .max_tasks_per_child = 3, .start_method = GetParam()});
  mp::Event started, go;
  auto busy = executor.submit(started_then_wait, started, go);
  ASSERT_TRUE(started.wait(60s));
  auto cancelled = executor.submit(square, 1);
  auto last = executor.submit(square, 2);
  EXPECT_TRUE(cancelled.cancel());
  go.set();
  EXPECT_EQ(busy.result(60s), 8);
  EXPECT_EQ(last.result(60s), 4);
  EXPECT_EQ(executor.submit(square, 3).result(60s), 9);  // a new worker serves
}

TEST_P(FuturesTest, TheLargestTimeoutWaitsInsteadOfTimingOut) {
  mp::ProcessPoolExecutor executor(options(1));
  constexpr auto forever = std::chrono::nanoseconds::max();
  EXPECT_EQ(executor.submit(slow_identity, 1).result(forever), 1);
  EXPECT_EQ(executor.submit(slow_identity, 2).exception(forever), nullptr);
  std::vector<mp::Future<int>> fs{executor.submit(slow_identity, 3)};
  auto waited = mp::futures::wait(fs, forever);
  EXPECT_EQ(waited.done.size(), 1u);
  EXPECT_TRUE(waited.not_done.empty());
  std::vector<mp::Future<int>> more{executor.submit(slow_identity, 4)};
  auto completed = mp::futures::as_completed(more, forever);
  auto first = completed.next();
  ASSERT_TRUE(first.has_value());
  EXPECT_EQ(first->result(), 4);
  auto mapped = executor.map(slow_identity, std::vector<int>{5});
  EXPECT_EQ(mapped.next(forever), 5);
}

TEST_P(FuturesTest, AFutureGivenTwiceIsYieldedAndListedOnce) {
  mp::ProcessPoolExecutor executor(options());
  auto a = executor.submit(square, 2);
  auto b = executor.submit(square, 3);
  std::vector<mp::Future<int>> fs{a, b, a, a};
  int yielded = 0;
  for (const auto& f : mp::futures::as_completed(fs, 60s)) yielded += f.result() > 0;
  EXPECT_EQ(yielded, 2);
  auto waited = mp::futures::wait(fs, 60s);
  EXPECT_EQ(waited.done.size(), 2u);
  EXPECT_TRUE(waited.not_done.empty());
  mp::Event never;
  auto stuck = executor.submit(wait_for_event, never);
  std::vector<mp::Future<int>> twice{stuck, stuck, a};
  auto partial = mp::futures::wait(twice, 10ms);
  EXPECT_EQ(partial.done.size(), 1u);
  EXPECT_EQ(partial.not_done.size(), 1u);
  never.set();
  EXPECT_EQ(stuck.result(60s), 7);
}

TEST_P(FuturesTest, MapChunksizeBelowOneIsRejected) {
  mp::ProcessPoolExecutor executor(options(1));
  const std::vector<int> xs{1, 2};
  EXPECT_THROW(executor.map(square, xs, 0), std::invalid_argument);
  EXPECT_THROW(executor.map(add, {.chunksize = 0}, xs, xs), std::invalid_argument);
  EXPECT_THROW(executor.map(square, {.chunksize = 0}, xs), std::invalid_argument);
}

TEST_P(FuturesTest, RemoteErrorCarriesTheWholeMessage) {
  mp::ProcessPoolExecutor executor(options(1));
  auto f = executor.submit(throw_a_mebibyte, 0);
  try {
    f.result(60s);
    FAIL() << "result should have thrown";
  } catch (const mp::RemoteError& e) {
    EXPECT_EQ(e.message().size(), std::size_t{1} << 20);
    EXPECT_EQ(e.message(), std::string(1 << 20, 'e'));
  }
}

INSTANTIATE_TEST_SUITE_P(StartMethods, FuturesTest, ::testing::ValuesIn(mp_test::start_methods()),
                         mp_test::method_name);

}  // namespace
