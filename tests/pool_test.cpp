// Tests for <mp/pool.hpp>, once per start method (fork, spawn). Tasks are free functions
// and captureless lambdas, so that they cross into spawned workers. Nothing sleeps to
// synchronize: tasks that must block wait on an mp::Event with a bound, and workers
// that must die kill themselves at a known task.
#include <gtest/gtest.h>

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <numeric>
#include <optional>
#include <ranges>
#include <set>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <tuple>
#include <variant>
#include <vector>

#include <mp/pool.hpp>
#include <mp/sharedctypes.hpp>
#include <mp/synchronize.hpp>

#include "figures.hpp"
#include "heap_arena.hpp"
#include "pool_tasks.hpp"
#include "test_util.hpp"

using namespace std::chrono_literals;

namespace {

using pool_tasks::add;
using pool_tasks::fail_on_three;
using pool_tasks::kill_self_at;
using pool_tasks::square;

std::string greet(std::string name, int times) {
  std::string out;
  for (int i = 0; i < times; ++i) out += "hi " + name + ";";
  return out;
}
int worker_pid_of(int) { return static_cast<int>(::getpid()); }
std::int64_t square64(std::int64_t x) { return x * x; }
int kill_self_at_170000(int x) { return kill_self_at(x, 170'000); }
int exit_at(int x) {
  if (x == 2) std::exit(3);
  return x;
}
// A crash. The default action is restored first: a sanitizer's handler would turn the
// signal into an ordinary exit.
void crash() {
  ::signal(SIGSEGV, SIG_DFL);
  ::raise(SIGSEGV);
}
int crash_at(int x) {
  if (x == 2) crash();
  return x;
}
// Blocks until `event` is set (at most a minute): a task that outlives a timeout.
int wait_for_event(mp::Event event) {
  (void)event.wait(60s);
  return 1;
}

// Blocks on `event` (at most a minute) for item 0; returns other items at once.
struct WaitOnZero {
  mutable mp::Event event;
  int operator()(int x) const {
    if (x == 0) (void)event.wait(60s);
    return x;
  }
  template <class Archive>
  void serialize(Archive& ar) {
    ar(event);
  }
};

// A picklable function object with state.
template <class T>
struct Halve {
  T operator()(T x) const { return static_cast<T>(x / 2); }
};

struct Scale {
  int factor = 1;
  int operator()(int x) const { return x * factor; }
  template <class Archive>
  void serialize(Archive& ar) {
    ar(factor);
  }
};

int init_value = 0;
void set_init_value(int value) { init_value = value; }
int read_init_value(int) { return init_value; }
void throwing_initializer() { throw std::runtime_error("initializer refuses"); }
void crashing_initializer() { crash(); }

// The E that pool.map(f, [0, n), chunksize) throws; nullopt (and a test failure) if it
// returns instead.
template <class E, class F>
std::optional<E> map_error(mp::Pool& pool, F f, int n, std::size_t chunksize = 1) {
  try {
    pool.map(f, mp_test::iota(0, n), chunksize);
  } catch (const E& e) {
    return e;
  }
  ADD_FAILURE() << "map should have thrown";
  return std::nullopt;
}

// Reads an imap iterator to its end: the values, and how many chunks failed with
// `Error`.
template <class Error, class It>
std::pair<std::vector<int>, int> drain_counting(It& it) {
  std::vector<int> got;
  int failed = 0;
  for (;;) {
    try {
      auto v = it.next(60s);
      if (!v) break;
      got.push_back(*v);
    } catch (const Error&) {
      ++failed;
    }
  }
  return {got, failed};
}

// Returns x after a fifth of a second: a result that is not ready when the caller
// starts waiting for it.
int slow_identity(int x) {
  std::this_thread::sleep_for(200ms);
  return x;
}
void slow_void(int) { std::this_thread::sleep_for(200ms); }
int throw_a_mebibyte(int) { throw std::runtime_error(std::string(1 << 20, 'm')); }
void record_in(mp::Value<int> total, int x) {
  total.update([x](int& n) { n += x; });
}
void ignore_item(int) {}
int identity(int x) { return x; }

// An input range whose iterator throws when it reaches `fail_at` (dereferenced or
// advanced), as a Python generator that raises.
class ThrowingRange {
 public:
  explicit ThrowingRange(int fail_at) : fail_at_(fail_at) {}
  class iterator {
   public:
    using value_type = int;
    using difference_type = std::ptrdiff_t;
    iterator() = default;
    explicit iterator(int at, int fail_at) : at_(at), fail_at_(fail_at) {}
    int operator*() const {
      if (at_ == fail_at_) throw std::domain_error("the input broke at " + std::to_string(at_));
      return at_;
    }
    iterator& operator++() {
      ++at_;
      return *this;
    }
    void operator++(int) { ++*this; }
    bool operator==(std::default_sentinel_t) const { return false; }

   private:
    int at_ = 0;
    int fail_at_ = 0;
  };
  iterator begin() const { return iterator(0, fail_at_); }
  std::default_sentinel_t end() const { return {}; }

 private:
  int fail_at_;
};
static_assert(std::ranges::input_range<ThrowingRange>);

class PoolTest : public ::testing::TestWithParam<std::string> {
 protected:
  mp::PoolOptions options(int processes = 2) const {
    return mp::PoolOptions{.processes = processes, .start_method = GetParam()};
  }

  // Starts a pool whose initializer fails and returns what its first apply() says; such a
  // pool refuses map() too.
  std::string broken_pool_message(void (*failing_initializer)()) const {
    auto opts = options();
    opts.initializer = mp::initializer(failing_initializer);
    mp::Pool pool(opts);
    std::string what;
    try {
      pool.apply(square, 2);
      ADD_FAILURE() << "apply should have thrown";
    } catch (const mp::BrokenProcessPool& e) {
      what = e.what();
    }
    EXPECT_THROW(pool.map(square, std::vector<int>{1, 2}), mp::BrokenProcessPool);
    return what;
  }
};

TEST_P(PoolTest, ApplyRunsInAWorker) {
  mp::Pool pool(options());
  EXPECT_EQ(pool.apply(square, 7), 49);
  EXPECT_EQ(pool.apply(add, 2, 40), 42);
  EXPECT_EQ(pool.apply(greet, std::string("bob"), 2), "hi bob;hi bob;");
  EXPECT_EQ(pool.apply([](int x) { return x + 1; }, 1), 2);
  EXPECT_EQ(pool.apply(Scale{3}, 5), 15);
  EXPECT_NE(pool.apply(worker_pid_of, 0), static_cast<int>(::getpid()));
  pool.apply([] {});  // void
}

TEST_P(PoolTest, ApplyAsyncAndAsyncResult) {
  mp::Pool pool(options());
  auto result = pool.apply_async(square, 9);
  EXPECT_EQ(result.get(), 81);
  EXPECT_TRUE(result.ready());
  EXPECT_TRUE(result.successful());
  EXPECT_EQ(result.get(10s), 81);  // get() again returns the same value
  result.wait();
  EXPECT_TRUE(result.wait(1s));

  auto failing = pool.apply_async(fail_on_three, 3);
  failing.wait();
  EXPECT_TRUE(failing.ready());
  EXPECT_FALSE(failing.successful());
  EXPECT_THROW(failing.get(), mp::RemoteError);

  mp::Event never;
  auto blocked = pool.apply_async(wait_for_event, never);
  EXPECT_THROW(blocked.get(10ms), mp::TimeoutError);
  EXPECT_FALSE(blocked.wait(1ms));
  EXPECT_FALSE(blocked.ready());
  EXPECT_THROW((void)blocked.successful(), std::logic_error);
  never.set();
  EXPECT_EQ(blocked.get(60s), 1);
}

TEST_P(PoolTest, ApplyAsyncCallbacksRunBeforeGetReturns) {
  mp::Pool pool(options());
  std::atomic<int> value{0};
  auto ok = pool.apply_async_with([&](const int& v) { value = v; }, {}, square, 6);
  EXPECT_EQ(ok.get(), 36);
  EXPECT_EQ(value.load(), 36);

  std::atomic<bool> error_seen{false};
  std::string error_type;
  auto bad = pool.apply_async_with(
      {},
      [&](std::exception_ptr e) {
        try {
          std::rethrow_exception(e);
        } catch (const mp::RemoteError& r) {
          error_type = r.type_name();
        }
        error_seen = true;
      },
      fail_on_three, 3);
  bad.wait();
  EXPECT_TRUE(error_seen.load());
  EXPECT_EQ(error_type, "std::invalid_argument");

  std::atomic<int> void_calls{0};
  pool.apply_async_with([&](const int&) { ++void_calls; }, {}, [] {}).get();
  EXPECT_EQ(void_calls.load(), 1);
}

TEST_P(PoolTest, MapAsyncAndStarmapAsyncCallbacks) {
  mp::Pool pool(options());
  std::vector<int> seen;
  auto squares = pool.map_async_with([&](const std::vector<int>& v) { seen = v; }, {}, square,
                                     std::vector<int>{1, 2, 3}, 1);
  EXPECT_EQ(squares.get(), (std::vector<int>{1, 4, 9}));
  EXPECT_EQ(seen, (std::vector<int>{1, 4, 9}));  // ran before get() returned

  std::vector<int> sums;
  pool.starmap_async_with([&](const std::vector<int>& v) { sums = v; }, {}, add,
                          std::vector<std::tuple<int, int>>{{1, 2}, {3, 4}})
      .wait();
  EXPECT_EQ(sums, (std::vector<int>{3, 7}));

  // The first failure goes to error_callback; callback does not run.
  std::atomic<int> successes{0};
  std::string error_type;
  auto bad = pool.map_async_with([&](const std::vector<int>&) { ++successes; },
                                 [&](std::exception_ptr e) {
                                   try {
                                     std::rethrow_exception(e);
                                   } catch (const mp::RemoteError& r) {
                                     error_type = r.type_name();
                                   }
                                 },
                                 fail_on_three, std::vector<int>{1, 2, 3, 4});
  bad.wait();
  EXPECT_EQ(error_type, "std::invalid_argument");
  EXPECT_EQ(successes.load(), 0);
  EXPECT_THROW(bad.get(), mp::RemoteError);

  // Nothing to map: the callback runs at once with no results. Void functions give
  // std::monostate, as map does.
  std::atomic<int> empty_calls{0};
  pool.map_async_with([&](const std::vector<int>& v) { empty_calls += v.empty() ? 1 : 100; }, {},
                      square, std::vector<int>{})
      .get();
  EXPECT_EQ(empty_calls.load(), 1);
  std::size_t voids = 0;
  pool.map_async_with([&](const std::vector<std::monostate>& v) { voids = v.size(); }, {},
                      ignore_item, std::vector<int>{5, 6})
      .get();
  EXPECT_EQ(voids, 2u);
}

TEST_P(PoolTest, MapReturnsResultsInOrder) {
  mp::Pool pool(options());
  std::vector<int> inputs(1000);
  std::iota(inputs.begin(), inputs.end(), 0);
  auto squares = pool.map([](int x) { return x * x; }, inputs);
  ASSERT_EQ(squares.size(), inputs.size());
  for (int i = 0; i < 1000; ++i) EXPECT_EQ(squares[i], i * i);
  EXPECT_EQ(pool.map(square, inputs, 1).size(), 1000u);
  EXPECT_EQ(pool.map(square, inputs, 7)[999], 999 * 999);
  EXPECT_TRUE(pool.map(square, std::vector<int>{}).empty());
  EXPECT_EQ(pool.map(Scale{2}, mp_test::iota(0, 10))[9], 18);
  auto strings =
      pool.map([](const std::string& s) { return s + "!"; }, std::vector<std::string>{"a", "b"});
  EXPECT_EQ(strings, (std::vector<std::string>{"a!", "b!"}));
}

// Maps of numbers take a shorter way through the pickles (chunks built from their
// items' bytes, results appended in place): every size of number, a function object
// with state, chunks below and above the size that goes through the shared heap.
template <class T>
void expect_halves_mapped(mp::Pool& pool, std::size_t count, std::optional<std::size_t> chunksize) {
  std::vector<T> inputs(count);
  for (std::size_t i = 0; i < count; ++i) inputs[i] = static_cast<T>(i % 100);
  const auto halves = pool.map(Halve<T>{}, inputs, chunksize);
  ASSERT_EQ(halves.size(), count);
  for (std::size_t i = 0; i < count; ++i)
    ASSERT_EQ(halves[i], static_cast<T>(inputs[i] / 2)) << "item " << i;
}

TEST_P(PoolTest, MapsOfNumbersOfEverySizeComeBackWhole) {
  mp::Pool pool(options());
  for (const std::size_t count : {1u, 5u, 3000u, 70'000u}) {
    for (const std::optional<std::size_t> chunksize : {std::optional<std::size_t>{}, {1}, {3}}) {
      if (count > 3000 && chunksize && *chunksize < 3) continue;  // many tiny tasks: slow
      expect_halves_mapped<std::uint8_t>(pool, count, chunksize);
      expect_halves_mapped<std::int16_t>(pool, count, chunksize);
      expect_halves_mapped<float>(pool, count, chunksize);
      expect_halves_mapped<std::int64_t>(pool, count, chunksize);
      expect_halves_mapped<double>(pool, count, chunksize);
    }
  }
  const auto scaled = pool.map(Scale{3}, mp_test::iota(0, 50'000));
  ASSERT_EQ(scaled.size(), 50'000u);
  EXPECT_EQ(scaled[49'999], 3 * 49'999);
  const auto bools = pool.map([](int x) { return x % 2 == 0; }, mp_test::iota(0, 40'000));
  ASSERT_EQ(bools.size(), 40'000u);
  EXPECT_TRUE(bools[39'998]);
  EXPECT_FALSE(bools[39'999]);
}

TEST(PoolChunksize, DefaultIsPythons) {
  // chunksize, extra = divmod(len, 4 * processes); chunksize += bool(extra)
  EXPECT_EQ(mp::detail::default_chunksize(1000000, 2), 125000u);
  EXPECT_EQ(mp::detail::default_chunksize(1001, 2), 126u);
  EXPECT_EQ(mp::detail::default_chunksize(3, 4), 1u);
  EXPECT_EQ(mp::detail::default_chunksize(0, 4), 0u);
}

TEST_P(PoolTest, MapAsyncStarmapStarmapAsync) {
  mp::Pool pool(options());
  auto async = pool.map_async(square, std::vector<int>{1, 2, 3});
  EXPECT_EQ(async.get(), (std::vector<int>{1, 4, 9}));
  std::vector<std::tuple<int, int>> pairs{{1, 2}, {3, 4}, {5, 6}};
  EXPECT_EQ(pool.starmap(add, pairs), (std::vector<int>{3, 7, 11}));
  EXPECT_EQ(pool.starmap_async(add, pairs, 1).get(), (std::vector<int>{3, 7, 11}));
}

TEST_P(PoolTest, MapFailsWithTheTasksException) {
  mp::Pool pool(options());
  const auto e = map_error<mp::RemoteError>(pool, fail_on_three, 10);
  ASSERT_TRUE(e);
  EXPECT_EQ(e->type_name(), "std::invalid_argument");
  EXPECT_EQ(e->message(), "three is not allowed");
  EXPECT_EQ(e->task(), "map item 3");
  EXPECT_EQ(pool.apply(square, 3), 9);  // the pool carries on
}

TEST_P(PoolTest, RemoteErrorNamesTheFailedItemOrCall) {
  mp::Pool pool(options());
  for (std::size_t chunksize : {std::size_t{1}, std::size_t{2}, std::size_t{4}}) {
    const auto mapped = map_error<mp::RemoteError>(pool, fail_on_three, 10, chunksize);
    ASSERT_TRUE(mapped);
    EXPECT_EQ(mapped->task(), "map item 3") << "chunksize " << chunksize;
    EXPECT_NE(std::string(mapped->what()).find("[in map item 3]"), std::string::npos)
        << mapped->what();
    std::string task;
    for (auto it = pool.imap(fail_on_three, mp_test::iota(0, 10), chunksize);;) {
      try {
        if (!it.next(60s)) break;
      } catch (const mp::RemoteError& e) {
        task = e.task();
      }
    }
    EXPECT_EQ(task, "map item 3") << "imap, chunksize " << chunksize;
  }
  try {
    pool.apply(fail_on_three, 3);
    FAIL() << "apply should have thrown";
  } catch (const mp::RemoteError& e) {
    EXPECT_EQ(e.task(), "the submitted call");
    EXPECT_TRUE(e.traceback().empty()) << "mp_tests does not link mp::stacktrace";
  }
}

#ifdef MP_TRACEBACK_PATH
// With mp::stacktrace linked, what() carries the worker's stack at the throw.
TEST_P(PoolTest, RemoteErrorCarriesTheStackOfTheThrow) {
  if (mp_test::kAddressSanitizer)
    GTEST_SKIP() << "AddressSanitizer intercepts __cxa_throw, which mp::stacktrace replaces";
  auto result = mp_test::run_command({MP_TRACEBACK_PATH, GetParam()});
  ASSERT_EQ(result.exit_status, 0) << result.err;
  EXPECT_NE(result.out.find("std::invalid_argument: item five is not allowed [in map item 5]"),
            std::string::npos)
      << result.out;
  EXPECT_NE(result.out.find("Remote traceback (most recent call first):"), std::string::npos)
      << result.out;
  EXPECT_NE(result.out.find("check_item"), std::string::npos) << result.out;
  // A Process's uncaught exception: its child prints the stack of the throw too.
  EXPECT_NE(result.err.find("Process Process-"), std::string::npos) << result.err;
  EXPECT_NE(result.err.find("std::invalid_argument: item five is not allowed\n"
                            "Traceback (most recent call first):\n"),
            std::string::npos)
      << result.err;
  EXPECT_NE(result.err.find("check_item"), std::string::npos) << result.err;
  // A crashed worker: the task fails with WorkerLostError, its stack is on stderr.
  EXPECT_NE(result.out.find("killed by SIGSEGV"), std::string::npos) << result.out;
  EXPECT_NE(result.err.find("Fatal signal 11 (SIGSEGV) in process "), std::string::npos)
      << result.err;
  EXPECT_NE(result.err.find("crash_here"), std::string::npos) << result.err;
}
#endif

TEST_P(PoolTest, ImapInOrderAndUnordered) {
  mp::Pool pool(options());
  std::vector<int> got;
  for (int v : pool.imap(square, mp_test::iota(0, 50))) got.push_back(v);
  ASSERT_EQ(got.size(), 50u);
  for (int i = 0; i < 50; ++i) EXPECT_EQ(got[i], i * i);

  std::multiset<int> unordered;
  auto it = pool.imap_unordered(square, mp_test::iota(0, 50), 4);
  while (auto v = it.next()) unordered.insert(*v);
  std::multiset<int> expected;
  for (int i = 0; i < 50; ++i) expected.insert(i * i);
  EXPECT_EQ(unordered, expected);
  EXPECT_FALSE(it.next().has_value());  // stays at the end
}

TEST_P(PoolTest, ImapNextWithTimeout) {
  mp::Pool pool(options());
  mp::Event go;
  auto it = pool.imap(wait_for_event, std::vector<mp::Event>{go});
  EXPECT_THROW(it.next(10ms), mp::TimeoutError);
  go.set();
  EXPECT_EQ(it.next(60s), 1);
  EXPECT_FALSE(it.next(60s).has_value());
}

TEST_P(PoolTest, ImapConsumesAnEndlessInputLazily) {
  mp::Pool pool(options());
  // 10^12 items: eager consumption would need terabytes.
  auto endless = mp_test::iota(std::int64_t{0}, std::int64_t{1000000000000});
  auto it = pool.imap([](std::int64_t x) { return x * 2; }, endless, 3);
  for (std::int64_t i = 0; i < 1000; ++i) {
    auto v = it.next(60s);
    ASSERT_TRUE(v.has_value());
    ASSERT_EQ(*v, 2 * i);
  }
  std::int64_t seen = 0;
  auto unordered = pool.imap_unordered([](std::int64_t x) { return x; }, endless);
  for (std::int64_t v : unordered) {
    (void)v;
    if (++seen == 1000) break;
  }
  EXPECT_EQ(seen, 1000);
}

TEST_P(PoolTest, ImapFedByAGeneratorFunction) {
  mp::Pool pool(options());
  // Python: pool.imap(square, (x for x in range(50)))
  int next = 0;
  std::vector<int> got;
  for (int v : pool.imap(
           square,
           [&]() -> std::optional<int> {
             if (next == 50) return std::nullopt;
             return next++;
           },
           4))
    got.push_back(v);
  ASSERT_EQ(got.size(), 50u);
  for (int i = 0; i < 50; ++i) EXPECT_EQ(got[static_cast<std::size_t>(i)], i * i);
  // Called lazily: an endless generator is read only as far as results are taken.
  long calls = 0;
  auto endless = pool.imap_unordered(identity, [&]() -> std::optional<int> {
    ++calls;
    return 1;
  });
  for (int k = 0; k < 100; ++k) EXPECT_EQ(endless.next(60s), 1);
  EXPECT_LT(calls, 10000);
  // A generator that is empty at once, and one that throws: the error comes out of next()
  // after the results before it.
  auto none = pool.imap(square, []() -> std::optional<int> { return std::nullopt; });
  EXPECT_EQ(none.next(60s), std::nullopt);
  int given = 0;
  auto failing = pool.imap(square, [&]() -> std::optional<int> {
    if (given == 3) throw std::runtime_error("generator failed");
    return given++;
  });
  EXPECT_EQ(failing.next(60s), 0);
  EXPECT_EQ(failing.next(60s), 1);
  EXPECT_EQ(failing.next(60s), 4);
  EXPECT_THROW((void)failing.next(60s), std::runtime_error);
  // Generated is an input range for the other calls too.
  int n = 0;
  EXPECT_EQ(pool.map(square, mp::Generated([&]() -> std::optional<int> {
                       return n < 3 ? std::optional<int>(n++) : std::nullopt;
                     })),
            (std::vector<int>{0, 1, 4}));
}

TEST_P(PoolTest, ImapDeliversOtherResultsAfterAFailedChunk) {
  mp::Pool pool(options());
  auto it = pool.imap(fail_on_three, mp_test::iota(0, 6));
  const auto [got, failures] = drain_counting<mp::RemoteError>(it);
  EXPECT_EQ(failures, 1);
  EXPECT_EQ(got, (std::vector<int>{0, 1, 2, 4, 5}));
}

TEST_P(PoolTest, WorkerKilledInTheMiddleOfMapFailsExactlyItsTask) {
  mp::Pool pool(options());
  const auto pids_before = pool.worker_pids();
  // starmap: the whole call fails with WorkerLostError naming the pid and the signal.
  std::vector<std::tuple<int, int>> args;
  for (int i = 0; i < 20; ++i) args.emplace_back(i, 7);
  try {
    pool.starmap(kill_self_at, args, 1);
    FAIL() << "starmap should have thrown";
  } catch (const mp::WorkerLostError& e) {
    EXPECT_EQ(e.exitcode(), -SIGKILL);
    EXPECT_NE(std::string(e.what()).find(std::to_string(e.pid())), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("SIGKILL"), std::string::npos) << e.what();
  }
  // imap shows that exactly that task failed and every other one completed.
  auto it = pool.imap([](int x) { return kill_self_at(x, 7); }, mp_test::iota(0, 20));
  const auto [got, lost] = drain_counting<mp::WorkerLostError>(it);
  EXPECT_EQ(lost, 1);
  std::vector<int> expected;
  for (int i = 0; i < 20; ++i)
    if (i != 7) expected.push_back(i);
  EXPECT_EQ(got, expected);
  // Later submissions work, on replaced workers.
  EXPECT_EQ(pool.map(square, mp_test::iota(0, 100)).size(), 100u);
  EXPECT_EQ(pool.worker_pids().size(), 2u);
  EXPECT_NE(pool.worker_pids(), pids_before);
}

// Chunks of about 1 MB travel through the shared heap, read and written there in place;
// every block is given back, so repeated maps reuse the same blocks instead of growing
// the heap.
TEST_P(PoolTest, LargeChunksGoThroughTheSharedHeapAndAreGivenBack) {
  mp::Pool pool(options());
  constexpr std::int64_t n = 1'000'000;  // 8 chunks of 125,000 int64s
  const auto map_once = [&] {
    const auto squares = pool.map(square64, mp_test::iota(std::int64_t{0}, n));
    ASSERT_EQ(squares.size(), static_cast<std::size_t>(n));
    for (std::int64_t i = 0; i < n; i += 997) ASSERT_EQ(squares[i], i * i);
    EXPECT_EQ(squares.back(), (n - 1) * (n - 1));
  };
  map_once();
  const int fd = ::dup(mp::detail::heap_main_fd());
  ASSERT_GE(fd, 0);
  auto heap = mp::detail::Arena::attach(mp::posix::unique_fd(fd));
  const std::uint64_t used = heap.bump_used();
  for (int i = 0; i < 5; ++i) map_once();
  // A leak would be 16 blocks of 1 MiB per map.
  EXPECT_LE(heap.bump_used(), used + (std::uint64_t{8} << 20));
}

// A worker killed in the middle of a large chunk fails that chunk only; the chunks it
// had not started are sent again from their heap blocks and come back intact.
TEST_P(PoolTest, WorkerKilledDuringLargeChunksFailsOnlyItsChunk) {
  mp::Pool pool(options());
  constexpr int n = 400'000, chunk = 50'000;  // 200 KB per chunk, in the heap
  auto it = pool.imap(kill_self_at_170000, mp_test::iota(0, n), chunk, 8);
  const auto [got, lost] = drain_counting<mp::WorkerLostError>(it);
  EXPECT_EQ(lost, 1);
  std::vector<int> expected;
  for (int i = 0; i < n; ++i)
    if (i / chunk != 170'000 / chunk) expected.push_back(i);
  EXPECT_EQ(got, expected);
}

// Workers are sent a few tasks ahead. A worker left idle takes back the tasks queued
// behind a long one in another worker: they do not wait for it.
TEST_P(PoolTest, IdleWorkerTakesOverTasksQueuedBehindALongOne) {
  mp::Pool pool(options());
  mp::Event event;
  auto it = pool.imap_unordered(WaitOnZero{event}, mp_test::iota(0, 8), 1, 8);
  std::set<int> got;
  for (int i = 0; i < 7; ++i) {
    auto v = it.next(30s);  // a TimeoutError here: a task stayed behind item 0
    ASSERT_TRUE(v.has_value());
    got.insert(*v);
  }
  EXPECT_EQ(got, (std::set<int>{1, 2, 3, 4, 5, 6, 7}));
  event.set();
  EXPECT_EQ(it.next(30s), std::optional<int>(0));
  EXPECT_EQ(it.next(30s), std::nullopt);
}

// A worker holds back the result of a map's task while more of that map's tasks wait
// in its queue (nobody needs it sooner), never the result of another job.
TEST_P(PoolTest, AResultIsDeliveredAtOnceWhileOtherJobsWaitBehindIt) {
  mp::Pool pool(options(1));
  mp::Event event;
  auto first = pool.apply_async(square, 7);
  auto blocked = pool.map_async(WaitOnZero{event}, std::vector<int>{5, 0, 6, 7}, 1);
  EXPECT_EQ(first.get(30s), 49);
  EXPECT_FALSE(blocked.ready());
  event.set();
  EXPECT_EQ(blocked.get(30s), (std::vector<int>{5, 0, 6, 7}));
  // And a map's results all arrive, whatever the worker held back.
  EXPECT_EQ(pool.map(square, mp_test::iota(0, 2000), 1).back(), 1999 * 1999);
}

// Many tiny tasks: workers hold back results, and idle workers take queued tasks back,
// thousands of times per map. A lost doorbell would leave the map waiting forever.
TEST_P(PoolTest, ManyTinyTasksNeverLoseAResult) {
  mp::Pool pool(options());
  for (int round = 0; round < 5; ++round) {
    auto result =
        pool.map_async(square64, mp_test::iota(std::int64_t{0}, std::int64_t{200'000}), 1);
    ASSERT_TRUE(result.wait(60s)) << "round " << round;
    EXPECT_EQ(result.get().back(), std::int64_t{199'999} * 199'999);
  }
}

TEST_P(PoolTest, TaskCallingExitOrCrashingFailsWithWorkerLostError) {
  mp::Pool pool(options());
  const auto exited = map_error<mp::WorkerLostError>(pool, exit_at, 4);
  ASSERT_TRUE(exited);
  EXPECT_EQ(exited->exitcode(), 3);
  const auto crashed = map_error<mp::WorkerLostError>(pool, crash_at, 4);
  ASSERT_TRUE(crashed);
  EXPECT_EQ(crashed->exitcode(), -SIGSEGV);
  EXPECT_NE(std::string(crashed->what()).find("SIGSEGV"), std::string::npos) << crashed->what();
  EXPECT_EQ(pool.apply(square, 4), 16);
}

TEST_P(PoolTest, TaskTimeoutKillsAndReplacesTheWorker) {
  auto opts = options(1);
  opts.task_timeout = 2s;  // square() on the new worker must fit too, on a loaded machine
  mp::Pool pool(opts);
  const auto pids_before = pool.worker_pids();
  mp::Event never;
  EXPECT_THROW(pool.apply(wait_for_event, never), mp::TimeoutError);
  EXPECT_EQ(pool.apply(square, 5), 25);
  EXPECT_NE(pool.worker_pids(), pids_before);
}

TEST_P(PoolTest, InitializerRunsInEveryWorker) {
  auto opts = options();
  opts.initializer = mp::initializer(set_init_value, 42);
  mp::Pool pool(opts);
  for (int v : pool.map(read_init_value, std::vector<int>(8, 0), 1)) EXPECT_EQ(v, 42);
}

TEST_P(PoolTest, InitializerThatThrowsBreaksThePoolClearly) {
  const std::string what = broken_pool_message(throwing_initializer);
  EXPECT_NE(what.find("initializer refuses"), std::string::npos) << what;
}

TEST_P(PoolTest, InitializerThatCrashesBreaksThePoolClearly) {
  const std::string what = broken_pool_message(crashing_initializer);
  EXPECT_NE(what.find("initializer"), std::string::npos) << what;
  EXPECT_NE(what.find("SIGSEGV"), std::string::npos) << what;
}

TEST_P(PoolTest, MaxtasksperchildReplacesWorkers) {
  auto opts = options(1);
  opts.maxtasksperchild = 2;
  mp::Pool pool(opts);
  auto pids = pool.map(worker_pid_of, mp_test::iota(0, 6), 1);
  std::set<int> distinct(pids.begin(), pids.end());
  EXPECT_EQ(distinct.size(), 3u);
  EXPECT_EQ(pids[0], pids[1]);
  EXPECT_NE(pids[1], pids[2]);
}

int add_to_value(mp::Value<int> total, int x) {
  total.update([x](int& n) { n += x; });
  return x;
}

TEST_P(PoolTest, DestructorClosesAndJoins) {
  mp::Value<int> total(0);
  std::vector<mp::AsyncResult<int>> results;
  std::vector<int> pids;
  {
    mp::Pool pool(options());
    for (int i = 1; i <= 100; ++i) results.push_back(pool.apply_async(add_to_value, total, i));
    pids = pool.worker_pids();
  }
  for (auto& r : results) EXPECT_TRUE(r.ready());
  EXPECT_EQ(total.value(), 5050);
  for (int pid : pids) EXPECT_TRUE(mp_test::wait_gone(pid, 10000ms)) << pid;
}

TEST_P(PoolTest, CloseTerminateJoin) {
  mp::Pool pool(options());
  EXPECT_THROW(pool.join(), std::logic_error);
  EXPECT_EQ(pool.apply(square, 2), 4);
  pool.close();
  EXPECT_THROW(pool.apply_async(square, 2), std::invalid_argument);
  pool.join();

  mp::Pool doomed(options(1));
  mp::Event never;
  auto running = doomed.apply_async(wait_for_event, never);
  auto queued = doomed.apply_async(square, 3);
  const auto pids = doomed.worker_pids();
  doomed.terminate();
  doomed.join();
  EXPECT_THROW(running.get(60s), mp::BrokenProcessPool);
  EXPECT_THROW(queued.get(60s), mp::BrokenProcessPool);
  for (int pid : pids) EXPECT_TRUE(mp_test::wait_gone(pid, 10000ms)) << pid;
}

// ---- the parent dies: tests/programs/pool_parent.cpp ----

struct Child {
  pid_t pid = -1;
  int out = -1;
  int err = -1;
};

Child start_pool_parent(const std::string& method) {
  int out_pipe[2], err_pipe[2];
  if (::pipe2(out_pipe, O_CLOEXEC) || ::pipe2(err_pipe, O_CLOEXEC))
    throw std::runtime_error("pipe");
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, out_pipe[1], 1);
  posix_spawn_file_actions_adddup2(&actions, err_pipe[1], 2);
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP);
  posix_spawnattr_setpgroup(&attr, 0);  // its own process group, as a shell job
  std::string path = MP_POOL_PARENT_PATH;
  char* argv[] = {path.data(), const_cast<char*>(method.c_str()), nullptr};
  Child child;
  if (::posix_spawn(&child.pid, argv[0], &actions, &attr, argv, environ) != 0)
    throw std::runtime_error("posix_spawn");
  posix_spawn_file_actions_destroy(&actions);
  posix_spawnattr_destroy(&attr);
  ::close(out_pipe[1]);
  ::close(err_pipe[1]);
  child.out = out_pipe[0];
  child.err = err_pipe[0];
  return child;
}

// Reads the first line ("pid pid\n", the workers) within a minute.
std::vector<pid_t> read_worker_pids(int fd) {
  std::string line;
  char c;
  while (line.find('\n') == std::string::npos) {
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, 60000) != 1) break;
    if (::read(fd, &c, 1) != 1) break;
    line += c;
  }
  std::istringstream in(line);
  std::vector<pid_t> pids;
  pid_t pid;
  while (in >> pid) pids.push_back(pid);
  return pids;
}

std::string read_all(int fd) {
  std::string text;
  char buffer[4096];
  ssize_t n;
  while ((n = ::read(fd, buffer, sizeof buffer)) > 0)
    text.append(buffer, static_cast<std::size_t>(n));
  return text;
}

TEST_P(PoolTest, ParentKilledLeavesNoWorkerBehind) {
  Child child = start_pool_parent(GetParam());
  auto pids = read_worker_pids(child.out);
  ASSERT_EQ(pids.size(), 2u);
  ::kill(child.pid, SIGKILL);
  int status = 0;
  ::waitpid(child.pid, &status, 0);
  EXPECT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
  int gone = 0;
  for (pid_t pid : pids) {
    const bool ended = mp_test::wait_gone(pid, 10000ms);
    EXPECT_TRUE(ended) << pid;
    gone += ended ? 1 : 0;
  }
  ::close(child.out);
  ::close(child.err);
  mp_test::record_figure("pool_parents_killed", 1);
  mp_test::record_figure("pool_workers", static_cast<std::int64_t>(pids.size()));
  mp_test::record_figure("pool_workers_gone", gone);
}

TEST_P(PoolTest, CtrlCEndsTheProgramWithoutOrphansOrNoise) {
  Child child = start_pool_parent(GetParam());
  auto pids = read_worker_pids(child.out);
  ASSERT_EQ(pids.size(), 2u);
  ::kill(-child.pid, SIGINT);  // the whole process group, as a terminal's Ctrl-C
  int status = 0;
  ::waitpid(child.pid, &status, 0);
  EXPECT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGINT) << status;
  for (pid_t pid : pids) EXPECT_TRUE(mp_test::wait_gone(pid, 10000ms)) << pid;
  ::close(child.out);
  EXPECT_EQ(read_all(child.err), "");  // no message from any worker
  ::close(child.err);
}

TEST_P(PoolTest, TheLargestTimeoutWaitsInsteadOfTimingOut) {
  mp::Pool pool(options(1));
  constexpr auto forever = std::chrono::nanoseconds::max();
  EXPECT_EQ(pool.apply_async(slow_identity, 1).get(forever), 1);
  auto waited = pool.apply_async(slow_identity, 2);
  EXPECT_TRUE(waited.wait(forever));
  EXPECT_NO_THROW(pool.apply_async(slow_void, 3).get(forever));
  EXPECT_TRUE(pool.apply_async(slow_void, 4).wait(forever));
  auto it = pool.imap(slow_identity, std::vector<int>{5});
  EXPECT_EQ(it.next(forever), 5);
  EXPECT_EQ(it.next(forever), std::nullopt);
  // Durations coarser than nanoseconds saturate instead of overflowing when converted.
  EXPECT_EQ(pool.apply_async(slow_identity, 6).get(std::chrono::hours::max()), 6);
}

TEST_P(PoolTest, ChunksizeBelowOneIsRejected) {
  mp::Pool pool(options(1));
  const std::vector<int> items{1, 2, 3};
  std::vector<std::tuple<int, int>> pairs{{1, 2}};
  EXPECT_THROW(pool.map(square, items, 0), std::invalid_argument);
  EXPECT_THROW(pool.map_async(square, items, 0), std::invalid_argument);
  EXPECT_THROW(pool.starmap(add, pairs, 0), std::invalid_argument);
  EXPECT_THROW(pool.starmap_async(add, pairs, 0), std::invalid_argument);
  EXPECT_THROW(pool.imap(square, items, 0), std::invalid_argument);
  EXPECT_THROW(pool.imap_unordered(square, items, 0), std::invalid_argument);
  EXPECT_EQ(pool.map(square, items), (std::vector<int>{1, 4, 9}));  // the default still works
  EXPECT_EQ(pool.map(square, items, std::nullopt), (std::vector<int>{1, 4, 9}));
}

TEST_P(PoolTest, RemoteErrorCarriesTheWholeMessage) {
  mp::Pool pool(options(1));
  try {
    pool.apply(throw_a_mebibyte, 0);
    FAIL() << "apply should have thrown";
  } catch (const mp::RemoteError& e) {
    EXPECT_EQ(e.type_name(), "std::runtime_error");
    EXPECT_EQ(e.message(), std::string(1 << 20, 'm'));
  }
  EXPECT_EQ(pool.apply(square, 4), 16);
}

TEST_P(PoolTest, AnInputErrorSurfacesFromNextAtItsPosition) {
  mp::Pool pool(options());
  for (std::size_t chunksize : {std::size_t{1}, std::size_t{3}}) {
    auto it = pool.imap(identity, ThrowingRange(5), chunksize);  // does not throw itself
    for (int i = 0; i < 5; ++i) EXPECT_EQ(it.next(60s), i) << chunksize;
    try {
      (void)it.next(60s);
      ADD_FAILURE() << "next() should have thrown the input's error";
    } catch (const std::domain_error& e) {
      EXPECT_STREQ(e.what(), "the input broke at 5");
    }
    EXPECT_EQ(it.next(60s), std::nullopt);  // the input ended there
  }
  auto unordered = pool.imap_unordered(identity, ThrowingRange(4), 2);
  const auto [values, errors] = drain_counting<std::domain_error>(unordered);
  EXPECT_EQ(errors, 1);
  EXPECT_EQ(std::multiset<int>(values.begin(), values.end()), (std::multiset<int>{0, 1, 2, 3}));
  EXPECT_EQ(pool.apply(square, 5), 25);
}

TEST_P(PoolTest, MapAcceptsAFunctionReturningVoid) {
  mp::Pool pool(options());
  mp::Value<int> total(0);
  std::vector<std::tuple<mp::Value<int>, int>> args;
  for (int i = 1; i <= 4; ++i) args.emplace_back(total, i);
  // Python returns a list of None: here one std::monostate per item.
  const std::vector<std::monostate> none = pool.starmap(record_in, args, 1);
  EXPECT_EQ(none.size(), 4u);
  EXPECT_EQ(total.value(), 10);
  EXPECT_EQ(pool.map(ignore_item, mp_test::iota(0, 10)).size(), 10u);
  EXPECT_EQ(pool.map_async(ignore_item, std::vector<int>{1, 2, 3}).get().size(), 3u);
  EXPECT_EQ(pool.starmap_async(record_in, args).get().size(), 4u);
  std::size_t count = 0;
  for (std::monostate item : pool.imap(ignore_item, mp_test::iota(0, 7), 2)) {
    (void)item;
    ++count;
  }
  EXPECT_EQ(count, 7u);
  auto unordered = pool.imap_unordered(ignore_item, std::vector<int>{1, 2});
  EXPECT_TRUE(unordered.next(60s).has_value());
}

// Run in a child program whose shared heap is 4 MiB (HeapExhaustedFailsOnlyTheTask).
TEST(PoolHeapChild, LargeTaskFailsThroughItsResult) {
  const char* method = std::getenv("MP_TEST_POOL_HEAP_CHILD");
  if (!method) GTEST_SKIP() << "run by PoolTest.HeapExhaustedFailsOnlyTheTask";
  mp::Pool pool({.processes = 1, .start_method = method});
  const std::string large(8 << 20, 'x');  // more than the whole heap
  const auto length = [](const std::string& s) { return s.size(); };
  EXPECT_THROW(pool.apply(length, large), mp::HeapExhausted);
  auto failed = pool.apply_async(length, large);
  EXPECT_THROW(failed.get(60s), mp::HeapExhausted);
  auto it = pool.imap(length, std::vector<std::string>{"ab", large, "abc"});
  EXPECT_EQ(it.next(60s), 2u);
  EXPECT_THROW(it.next(60s), mp::HeapExhausted);
  EXPECT_EQ(it.next(60s), 3u);
  // The pool keeps serving, small and large-but-fitting tasks alike.
  EXPECT_EQ(pool.apply(square, 6), 36);
  EXPECT_EQ(pool.apply(length, std::string(100000, 'y')), 100000u);
  pool.close();
  pool.join();
}

TEST_P(PoolTest, HeapExhaustedFailsOnlyTheTask) {
  ::setenv("MP_HEAP_SIZE", "4194304", 1);
  ::setenv("MP_TEST_POOL_HEAP_CHILD", GetParam().c_str(), 1);
  auto result = mp_test::run_command(
      {MP_TESTS_BINARY_PATH, "--gtest_filter=PoolHeapChild.LargeTaskFailsThroughItsResult"});
  ::unsetenv("MP_HEAP_SIZE");
  ::unsetenv("MP_TEST_POOL_HEAP_CHILD");
  EXPECT_EQ(result.exit_status, 0) << result.out << result.err;
  EXPECT_NE(result.out.find("[  PASSED  ] 1 test"), std::string::npos) << result.out;
}

INSTANTIATE_TEST_SUITE_P(StartMethods, PoolTest, ::testing::ValuesIn(mp_test::start_methods()),
                         mp_test::method_name);

}  // namespace
