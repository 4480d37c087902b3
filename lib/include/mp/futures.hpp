// mp::ProcessPoolExecutor, mp::Future and mp::futures::wait / as_completed.
// Mirrors the process half of Python's `concurrent.futures` (ProcessPoolExecutor,
// Future, wait, as_completed, FIRST_COMPLETED / FIRST_EXCEPTION / ALL_COMPLETED).
//
//   mp::ProcessPoolExecutor executor({.max_workers = 4});
//   mp::Future<int> f = executor.submit(square, 7);
//   int x = f.result();
//
// Built on mp::Pool's workers and transport (<mp/pool.hpp>): the same rules for which
// functions cross (free functions, captureless lambdas, function objects with
// serialize(); a capturing lambda is a compile-time error).
//
// Differences from Python, on purpose:
//   - A worker that dies while running a task fails exactly that task's future with
//     mp::WorkerLostError (a BrokenProcessPool naming pid and exit status); the worker
//     is replaced and the executor stays usable. Python breaks the whole executor.
//   - An exception thrown by a task arrives as mp::RemoteError (type name, message).
//   - Future::exception() returns a std::exception_ptr (null: no exception).
//   - map() is lazy: at most `buffersize` chunks in flight (default 4 per worker),
//     results in order; it returns mp::IMapIterator (next(timeout) throws
//     mp::TimeoutError). Python's map reads all its input at once unless buffersize is
//     given. Several input ranges give fn(x, y, ...), to the shortest as Python's zip;
//     chunksize, buffersize and timeout go in a MapOptions before the ranges, as
//     Python's keyword arguments: executor.map(fn, {.chunksize = 64, .timeout = 5s}, xs).
//   - as_completed() returns an object with next() and a range interface instead of a
//     generator.
//   - running() is true from the moment a worker starts the task, and cancel() and
//     shutdown(cancel_futures=true) succeed until then, even for a task already handed
//     to a worker (Python: running from the moment it enters the call queue of
//     max_workers + 1 tasks, which can no longer be cancelled).
//   - The destructor calls shutdown(true): Python's `with` block does the same.
//     terminate_workers() and kill_workers() (Python 3.14) end the workers first when
//     a task may never finish.
#pragma once

#include <mp/detail/export.hpp>

#include <cstddef>
#include <cstdint>
#include <exception>
#include <functional>
#include <iterator>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include <mp/detail/chrono.hpp>
#include <mp/detail/future_state.hpp>
#include <mp/detail/ranges.hpp>
#include <mp/errors.hpp>
#include <mp/pool.hpp>

namespace mp {

namespace detail {

// A range as std::views::all holds it, without std::ranges::ref_view (which clang++ 14
// cannot instantiate from libstdc++ 12): an lvalue range that is not a view by address
// (it must outlive the holder), anything else by value.
template <class Range>
class RangeAddress {
 public:
  explicit RangeAddress(Range& range) : range_(&range) {}
  auto begin() const { return std::ranges::begin(*range_); }
  auto end() const { return std::ranges::end(*range_); }

 private:
  Range* range_;
};
template <class R>
using held_range_t =
    std::conditional_t<std::is_lvalue_reference_v<R> && !std::ranges::view<std::remove_cvref_t<R>>,
                       RangeAddress<std::remove_reference_t<R>>, std::remove_cvref_t<R>>;

// Several ranges read in step, as tuples of their values, until the shortest ends
// (Python's zip; std::views::zip is C++23). Input only, read once. Not derived from
// std::ranges::view_interface, which clang++ 14 cannot instantiate from libstdc++ 12.
template <class... Views>
class ZipView {
 public:
  class iterator {
   public:
    using iterator_concept = std::input_iterator_tag;
    using value_type = std::tuple<std::ranges::range_value_t<Views>...>;
    using difference_type = std::ptrdiff_t;

    iterator() = default;
    iterator(std::tuple<std::ranges::iterator_t<Views>...> at,
             std::tuple<std::ranges::sentinel_t<Views>...> ends)
        : at_(std::move(at)), ends_(std::move(ends)) {}
    value_type operator*() const {
      return std::apply([](const auto&... it) { return value_type(*it...); }, at_);
    }
    iterator& operator++() {
      std::apply([](auto&... it) { (++it, ...); }, at_);
      return *this;
    }
    void operator++(int) { ++*this; }
    friend bool operator==(const iterator& it, std::default_sentinel_t) {
      return it.any_at_end(std::index_sequence_for<Views...>{});
    }

   private:
    template <std::size_t... I>
    bool any_at_end(std::index_sequence<I...>) const {
      return ((std::get<I>(at_) == std::get<I>(ends_)) || ...);
    }
    std::tuple<std::ranges::iterator_t<Views>...> at_;
    std::tuple<std::ranges::sentinel_t<Views>...> ends_;
  };

  explicit ZipView(Views... views) : views_(std::move(views)...) {}
  iterator begin() {
    return iterator(
        std::apply([](auto&... v) { return std::tuple(std::ranges::begin(v)...); }, views_),
        std::apply([](auto&... v) { return std::tuple(std::ranges::end(v)...); }, views_));
  }
  std::default_sentinel_t end() const { return {}; }

 private:
  std::tuple<Views...> views_;
};

}  // namespace detail

// The result of ProcessPoolExecutor::submit. Copyable; copies share the state.
// Python: concurrent.futures.Future.
template <class T>
class Future {
 public:
  // Waits for the result and returns it (T may be void). Throws mp::TimeoutError if
  // `timeout` passes first, mp::CancelledError if cancelled, what the task threw as
  // mp::RemoteError, mp::WorkerLostError if its worker died. Python: result(timeout).
  T result(std::optional<std::chrono::nanoseconds> timeout = std::nullopt) const {
    wait_or_throw(timeout);
    if (auto error = shared_->state->error()) std::rethrow_exception(error);
    if constexpr (!std::is_void_v<T>) {
      std::call_once(shared_->once, [&] {
        try {
          shared_->value.emplace(pickle::loads<T>(shared_->state->result_bytes()));
        } catch (...) {
          shared_->decode_error = std::current_exception();
        }
      });
      if (shared_->decode_error) std::rethrow_exception(shared_->decode_error);
      return *shared_->value;
    }
  }
  // Waits like result(); returns the task's exception, or null if it succeeded.
  // Throws mp::TimeoutError, mp::CancelledError. Python: exception(timeout).
  std::exception_ptr exception(
      std::optional<std::chrono::nanoseconds> timeout = std::nullopt) const {
    wait_or_throw(timeout);
    return shared_->state->error();
  }
  // Never block. Python: done(), running(), cancelled().
  bool done() const {
    auto s = shared_->state->status();
    return s == Status::finished || s == Status::cancelled;
  }
  // Whether a worker is running the task now. Python: running().
  bool running() const { return shared_->state->running(shared_->core.get()); }
  // Whether the task was cancelled (cancel(), shutdown with cancel_futures) before it
  // started. Python: cancelled().
  bool cancelled() const { return shared_->state->status() == Status::cancelled; }
  // Cancels the task if no worker has started it yet; true if the future is cancelled.
  // Never blocks. Python: cancel().
  bool cancel() const { return shared_->state->cancel(shared_->core.get()); }
  // Calls fn(future) when it finishes or is cancelled: at once (in this thread) if it
  // has, else in the pool's result thread or a waiting thread. Python: add_done_callback.
  void add_done_callback(std::function<void(const Future&)> fn) const {
    shared_->state->add_done_callback([self = *this, fn = std::move(fn)] { fn(self); });
  }

  // Internal: built by ProcessPoolExecutor.
  using Status = detail::FutureState::Status;
  // Internal: what the copies of a Future share.
  struct Shared {
    // The task's status, result and error, filled by the pool.
    std::shared_ptr<detail::FutureState> state;
    // The executor's pool, kept alive for cancel() and running().
    std::shared_ptr<detail::PoolCore> core;
    // Decoding happens once, in the first result().
    std::once_flag once;
    // The decoded result (an unused int for void), after the first successful result().
    std::optional<std::conditional_t<std::is_void_v<T>, int, T>> value;
    // What decoding threw (mp::UnpicklingError...), rethrown by every result().
    std::exception_ptr decode_error;
  };
  // Internal: ProcessPoolExecutor makes Futures; copies share `shared`.
  explicit Future(std::shared_ptr<Shared> shared) : shared_(std::move(shared)) {}
  // Internal: the shared state, which futures::wait and as_completed wait on.
  const std::shared_ptr<detail::FutureState>& state() const noexcept { return shared_->state; }

 private:
  void wait_or_throw(std::optional<std::chrono::nanoseconds> timeout) const {
    if (!shared_->state->wait_for(timeout))
      throw TimeoutError("mp::Future: timed out waiting for the result");
    if (cancelled()) throw CancelledError("mp::Future: the task was cancelled");
  }
  std::shared_ptr<Shared> shared_;
};

// Python's keyword arguments of ProcessPoolExecutor.map(): executor.map(fn, {.chunksize =
// 64}, xs, ys) is Python's executor.map(fn, xs, ys, chunksize=64).
struct MapOptions {
  // Items per task; 0 throws std::invalid_argument. Python: chunksize.
  std::size_t chunksize = 1;
  // Tasks in flight at most (the input is read lazily); 0: 4 per worker.
  // Python: buffersize (3.14).
  std::size_t buffersize = 0;
  // Counted from the call to map(): a next() (or range-for step) that finds no result
  // ready by then throws mp::TimeoutError; results already there still come out. The
  // tasks go on. nullopt: no limit.
  std::optional<std::chrono::nanoseconds> timeout{};
};

// Python's keyword arguments of ProcessPoolExecutor(...).
struct ProcessPoolExecutorOptions {
  // nullopt: cpu_count(). Throws std::invalid_argument if < 1.
  std::optional<int> max_workers{};
  // mp::initializer(fn, args...) (Python: initializer + initargs).
  detail::InitCall initializer{};
  // A worker exits and is replaced after this many tasks (chunks); nullopt: never.
  // Throws std::invalid_argument if 0. Python: max_tasks_per_child.
  std::optional<std::uint64_t> max_tasks_per_child{};
  // A start method of mp::get_all_start_methods() ("fork", "spawn", "forkserver"), or
  // "mpi" (<mp/mpi.hpp>); empty: the default start method (Python: mp_context).
  std::string start_method{};
};

// Python: concurrent.futures.ProcessPoolExecutor.
class MP_API ProcessPoolExecutor {
 public:
  // Starts the workers. Throws as mp::Pool's constructor.
  ProcessPoolExecutor() : ProcessPoolExecutor(ProcessPoolExecutorOptions{}) {}
  // The same with Python's keyword arguments (max_workers, initializer,
  // max_tasks_per_child, mp_context). Throws as mp::Pool's constructor.
  explicit ProcessPoolExecutor(ProcessPoolExecutorOptions options)
      : pool_(PoolOptions{.processes = options.max_workers,
                          .initializer = std::move(options.initializer),
                          .maxtasksperchild = options.max_tasks_per_child,
                          .start_method = std::move(options.start_method)}) {}
  // shutdown(true): waits for every submitted task.
  ~ProcessPoolExecutor() = default;
  ProcessPoolExecutor(const ProcessPoolExecutor&) = delete;
  ProcessPoolExecutor& operator=(const ProcessPoolExecutor&) = delete;

  // Schedules fn(args...) and returns at once. Throws std::invalid_argument after
  // shutdown(). Compile-time error if fn or an argument cannot be pickled.
  // Python: submit(fn, *args).
  template <class F, class... Args, class R = std::invoke_result_t<F&, Args&...>>
  Future<R> submit(F fn, Args... args) {
    detail::check_pool_call<F, Args...>();
    auto shared = std::make_shared<typename Future<R>::Shared>();
    shared->state = std::make_shared<detail::FutureState>();
    shared->state->set_helper(pool_.core_->helper());
    shared->core = pool_.core_;
    const detail::RemotePicklingScope remote(pool_.core_->remote());
    std::vector<detail::PoolTaskInput> tasks;
    tasks.push_back({detail::trampoline_ref<&detail::pool_apply_call<F, Args...>>(),
                     pickle::dumps(std::tuple<F, Args...>(std::move(fn), std::move(args)...))});
    pool_.core_->submit(shared->state, 0, std::move(tasks));
    return Future<R>(shared);
  }

  // fn(item) for every item of `items`, lazily, results in order (see the header
  // comment). Throws std::invalid_argument if chunksize is 0 (Python: ValueError).
  // Python: map(fn, iterable, chunksize=1, buffersize=None).
  template <class F, std::ranges::input_range R>
  auto map(F fn, R&& items, std::size_t chunksize = 1, std::size_t buffersize = 0) {
    return pool_.imap(std::move(fn), std::forward<R>(items), chunksize, buffersize);
  }
  // fn(x, y, ...) with one item of each range at a time, until the shortest ends; lazy,
  // results in order, as above. Rvalue ranges are moved into the iterator; lvalue ranges
  // must outlive it. Python: map(fn, *iterables).
  template <class F, std::ranges::input_range R1, std::ranges::input_range R2,
            std::ranges::input_range... Rs>
  auto map(F fn, R1&& first, R2&& second, Rs&&... rest) {
    return map(std::move(fn), MapOptions{}, std::forward<R1>(first), std::forward<R2>(second),
               std::forward<Rs>(rest)...);
  }
  // Either form with Python's keyword arguments (MapOptions). Python: map(fn, *iterables,
  // chunksize=1, buffersize=None).
  // Python: map(fn, *iterables, timeout=None, chunksize=1, buffersize=None).
  template <class F, std::ranges::input_range R1, std::ranges::input_range... Rs>
  auto map(F fn, MapOptions options, R1&& first, Rs&&... rest) {
    auto results = [&] {
      if constexpr (sizeof...(Rs) == 0) {
        return pool_.imap(std::move(fn), std::forward<R1>(first), options.chunksize,
                          options.buffersize);
      } else {
        detail::ZipView<detail::held_range_t<R1>, detail::held_range_t<Rs>...> zipped(
            detail::held_range_t<R1>(std::forward<R1>(first)),
            detail::held_range_t<Rs>(std::forward<Rs>(rest))...);
        return pool_.template imap_impl<F, true>(true, std::move(fn), std::move(zipped),
                                                 options.chunksize, options.buffersize);
      }
    }();
    results.set_timeout(options.timeout);
    return results;
  }

  // No more submissions. cancel_futures: cancels every task no worker has yet. wait:
  // blocks until every remaining task has finished and the workers have exited.
  // Python: shutdown(wait=True, cancel_futures=False).
  void shutdown(bool wait = true, bool cancel_futures = false);
  // shutdown(false, true), then ends the workers at once with SIGTERM: the futures of
  // the tasks they were running fail with BrokenProcessPool. Never blocks; shutdown(true)
  // or the destructor waits for the workers to exit. For a worker stuck in a task that
  // shutdown() would wait for forever. Python 3.14: terminate_workers().
  void terminate_workers();
  // As terminate_workers(), with SIGKILL: ends a worker that ignores or handles
  // SIGTERM too. Python 3.14: kill_workers().
  void kill_workers();

  // The pids of the current workers. Never blocks.
  std::vector<int> worker_pids() const { return pool_.worker_pids(); }

 private:
  Pool pool_;
};

namespace futures {

// When wait() returns. Python: concurrent.futures' return_when constants.
enum class ReturnWhen { FIRST_COMPLETED, FIRST_EXCEPTION, ALL_COMPLETED };
// As soon as any future finishes or is cancelled. Python: FIRST_COMPLETED.
inline constexpr ReturnWhen FIRST_COMPLETED = ReturnWhen::FIRST_COMPLETED;
// As soon as any future finishes with an exception, else when all are done.
// Python: FIRST_EXCEPTION.
inline constexpr ReturnWhen FIRST_EXCEPTION = ReturnWhen::FIRST_EXCEPTION;
// When every future is done (finished or cancelled). Python: ALL_COMPLETED.
inline constexpr ReturnWhen ALL_COMPLETED = ReturnWhen::ALL_COMPLETED;

// What wait() returns. Python: the named tuple DoneAndNotDoneFutures (of sets).
template <class T>
struct WaitResult {
  // The futures finished or cancelled, in the order `fs` first lists them.
  std::vector<Future<T>> done;
  // The others, in the same order.
  std::vector<Future<T>> not_done;
};

namespace detail_wait {
// Waits until `satisfied()` or the deadline, woken by completions of `states`.
MP_API bool wait_states(const std::vector<std::shared_ptr<mp::detail::FutureState>>& states,
                        const std::function<bool()>& satisfied,
                        std::optional<std::chrono::nanoseconds> timeout);

// `fs` without repetitions (the first of each), as Python's set(fs).
template <class T>
std::vector<Future<T>> distinct_futures(const std::vector<Future<T>>& fs) {
  std::vector<Future<T>> out;
  std::vector<const mp::detail::FutureState*> seen;
  for (auto& f : fs) {
    if (std::find(seen.begin(), seen.end(), f.state().get()) != seen.end()) continue;
    seen.push_back(f.state().get());
    out.push_back(f);
  }
  return out;
}
}  // namespace detail_wait

// Waits until the condition holds or `timeout` passes (nullopt: forever) and returns
// the futures split into done and not done, each future once however often `fs` lists
// it (Python returns sets). Never throws TimeoutError (as Python).
// Python: concurrent.futures.wait(fs, timeout, return_when).
template <class T>
WaitResult<T> wait(const std::vector<Future<T>>& given,
                   std::optional<std::chrono::nanoseconds> timeout = std::nullopt,
                   ReturnWhen return_when = ALL_COMPLETED) {
  const std::vector<Future<T>> fs = detail_wait::distinct_futures(given);
  std::vector<std::shared_ptr<mp::detail::FutureState>> states;
  for (auto& f : fs) states.push_back(f.state());
  auto satisfied = [&] {
    std::size_t done = 0;
    for (auto& f : fs) {
      if (!f.done()) continue;
      ++done;
      if (return_when == FIRST_COMPLETED) return true;
      if (return_when == FIRST_EXCEPTION && !f.cancelled() && f.state()->error()) return true;
    }
    return done == fs.size();
  };
  (void)detail_wait::wait_states(states, satisfied, timeout);
  WaitResult<T> out;
  for (auto& f : fs) (f.done() ? out.done : out.not_done).push_back(f);
  return out;
}

// Yields the futures as they complete (finished or cancelled), each once however often
// `fs` lists it. next() returns nullopt when all were yielded and throws
// mp::TimeoutError once `timeout` (counted from as_completed()) has passed.
// Python: as_completed(fs, timeout).
template <class T>
class AsCompleted {
 public:
  // The next future to complete, waiting for one; nullopt when all were yielded. Throws
  // mp::TimeoutError once the timeout has passed with futures left. Python: next(it).
  std::optional<Future<T>> next() {
    if (remaining_.empty()) return std::nullopt;
    std::optional<std::chrono::nanoseconds> left;
    if (timeout_) {
      // What is left of the timeout; timeout - elapsed cannot overflow, as
      // start + timeout would for nanoseconds::max().
      const auto elapsed = std::chrono::steady_clock::now() - start_;
      left = *timeout_ - std::min<std::chrono::nanoseconds>(elapsed, *timeout_);
    }
    std::vector<std::shared_ptr<mp::detail::FutureState>> states;
    for (auto& f : remaining_) states.push_back(f.state());
    auto any_done = [&] {
      for (auto& f : remaining_)
        if (f.done()) return true;
      return false;
    };
    if (!detail_wait::wait_states(states, any_done, left))
      throw TimeoutError("mp::futures::as_completed: " + std::to_string(remaining_.size()) +
                         " (of " + std::to_string(total_) + ") futures unfinished");
    for (auto it = remaining_.begin(); it != remaining_.end(); ++it) {
      if (it->done()) {
        Future<T> f = *it;
        remaining_.erase(it);
        return f;
      }
    }
    return std::nullopt;  // unreachable
  }

  // An input iterator over the futures as they complete; it points into its AsCompleted,
  // which must outlive it. Compares equal to end() once all were yielded.
  class iterator {
   public:
    // The type of the items: a Future.
    using value_type = Future<T>;
    // Required of an input iterator; iterators are never subtracted.
    using difference_type = std::ptrdiff_t;
    // The current future, valid until the next ++. Must not be called at the end.
    const Future<T>& operator*() const { return *owner_->current_; }
    // Waits for the next future to complete; throws as next().
    iterator& operator++() {
      owner_->current_ = owner_->next();
      return *this;
    }
    // The same as ++it (an input iterator gives no copy of the previous position).
    void operator++(int) { ++*this; }
    // True once every future was yielded.
    bool operator==(std::default_sentinel_t) const { return !owner_->current_.has_value(); }
    // Internal: begin() makes iterators.
    explicit iterator(AsCompleted* owner) : owner_(owner) {}

   private:
    AsCompleted* owner_;
  };
  // Begins the iteration: waits for the first future to complete (throws as next()).
  iterator begin() {
    current_ = next();
    return iterator(this);
  }
  // The end: an iterator equals it once every future was yielded.
  std::default_sentinel_t end() const noexcept { return {}; }

  // Internal: as_completed() makes AsCompleted objects; the timeout counts from now.
  AsCompleted(const std::vector<Future<T>>& fs, std::optional<std::chrono::nanoseconds> timeout)
      : remaining_(detail_wait::distinct_futures(fs)),
        total_(remaining_.size()),
        start_(std::chrono::steady_clock::now()),
        timeout_(timeout) {}

 private:
  std::vector<Future<T>> remaining_;
  std::size_t total_;
  std::chrono::steady_clock::time_point start_;
  std::optional<std::chrono::nanoseconds> timeout_;
  std::optional<Future<T>> current_;
};

// The futures of `fs` as they complete, each once: a range (range-for) with next(); the
// timeout (nullopt: none) counts from this call. Python: concurrent.futures.as_completed.
template <class T>
AsCompleted<T> as_completed(const std::vector<Future<T>>& fs,
                            std::optional<std::chrono::nanoseconds> timeout = std::nullopt) {
  return AsCompleted<T>(fs, timeout);
}

}  // namespace futures
}  // namespace mp
