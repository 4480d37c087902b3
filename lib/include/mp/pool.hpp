// mp::Pool: a pool of worker processes running functions on pickled arguments.
// Mirrors Python's `multiprocessing.pool` (Pool, AsyncResult, IMapIterator).
//
//   mp::Pool pool;                                        // cpu_count() workers
//   auto squares = pool.map([](int x) { return x * x; }, inputs);
//
// How a function crosses: workers exist before the tasks, so every task is pickled, with
// fork workers too. A task is a typed trampoline (a template instantiation of this
// header, sent as a code reference, see <mp/pickle.hpp> on function pointers) plus the
// pickled function object and arguments. Free functions, captureless lambdas and
// function objects with serialize() work with every start method; a capturing lambda
// is a compile-time error (pass the captured values as arguments instead).
//
// Differences from Python, on purpose:
//   - Keyword arguments are PoolOptions: `mp::Pool pool({.processes = 4});`. initializer
//     and initargs are one value, `mp::initializer(fn, args...)`.
//   - A worker that dies while it runs a task (SIGKILL, a crash, std::exit) fails exactly
//     that task with mp::WorkerLostError (pid and exit status in the message); the tasks
//     it had been given but not started run elsewhere, a new worker replaces it, and the
//     pool stays usable. Python's Pool hangs forever.
//   - An exception thrown by a task arrives as mp::RemoteError (type name and message).
//   - An initializer that throws or crashes breaks the pool: pending and later tasks fail
//     with mp::BrokenProcessPool naming the failure (Python respawns workers forever).
//   - PoolOptions::task_timeout: a task running longer fails with mp::TimeoutError and
//     its worker is killed and replaced.
//   - imap/imap_unordered consume their input lazily, keeping at most `buffersize`
//     chunks in flight, so an endless range works (Python reads the input eagerly).
//     Their input may also be a generator function, called until it returns nullopt
//     (Python: a generator), and mp::Generated makes one an input range for map.
//   - Callbacks go first: apply_async_with / map_async_with / starmap_async_with
//     (callback, error_callback, fn, ...) are Python's *_async(..., callback=...,
//     error_callback=...).
//   - Workers ignore SIGINT (Ctrl-C interrupts only the parent; no storm of worker
//     tracebacks) and die with the parent, even when it is SIGKILLed.
//   - The destructor calls close() and join(): submitted work is never dropped. Python's
//     context manager calls terminate(); call terminate() first for that behaviour.
//   - imap iterators are C++ input ranges; next() returns std::nullopt at the end
//     (Python raises StopIteration).
//   - map/starmap of a function returning void give a std::vector<std::monostate>, one
//     per item, and imap yields std::monostate (Python: None); chunksize is a
//     std::optional (nullopt: Python's default) and 0 throws std::invalid_argument
//     (Python: ValueError).
//   - A task whose input does not fit in the shared heap fails through its result with
//     mp::HeapExhausted (a std::bad_alloc); the pool carries on.
//   - A task's exception message arrives whole, however long.
//
// Thread safety: every method may be called from any thread of the process that
// created the pool (not from its workers). Callbacks run in the pool's result thread,
// or in a thread of yours that is waiting on a result of this pool and collects the
// finished results itself (that saves two thread wake-ups per round trip): they must
// not block for long and must not wait on results of this pool.
#pragma once

#include <mp/detail/export.hpp>

#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <functional>
#include <iterator>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <tuple>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

#include <mp/detail/chrono.hpp>
#include <mp/detail/pool_core.hpp>
#include <mp/detail/pool_results.hpp>
#include <mp/detail/pool_tasks.hpp>
#include <mp/detail/ranges.hpp>
#include <mp/errors.hpp>
#include <mp/pickle.hpp>

namespace mp {

// Python's initializer + initargs as one picklable value: `mp::initializer(fn, args...)`
// runs fn(args...) once in every worker before its first task. Compile-time error if
// fn or an argument cannot be pickled.
template <class F, class... Args>
detail::InitCall initializer(F fn, Args... args) {
  detail::check_pool_function<F>();
  static_assert((pickle::picklable<Args> && ...),
                "mp::initializer: an argument cannot be pickled; give its type serialize()");
  static_assert(std::is_invocable_v<F&, Args&...>,
                "mp::initializer: the function cannot be called with these arguments");
  const detail::MachineLocalWatch watch;
  std::string bound = pickle::dumps(std::tuple<F, Args...>(std::move(fn), std::move(args)...));
  return {&detail::run_initializer<F, Args...>, std::move(bound), watch.found()};
}

namespace detail {
template <class T>
inline constexpr bool is_optional_v = false;
template <class T>
inline constexpr bool is_optional_v<std::optional<T>> = true;
}  // namespace detail

// The items a generator function gives, as an input range: gen() is called for each next
// item until it returns an empty std::optional (Python: a generator, exhausted). What
// Pool::imap and imap_unordered make of a generator function; usable wherever an input
// range is (map reads it to the end first). Move-only; gen runs in the thread that reads.
template <class G>
requires std::invocable<G&> && detail::is_optional_v<std::invoke_result_t<G&>>
class Generated {
  using Value = typename std::invoke_result_t<G&>::value_type;

 public:
  // Takes the generator function; does not call it yet (begin() does).
  explicit Generated(G gen) : gen_(std::move(gen)) {}
  // Moves the generator and the current item; the moved-from object must not be read.
  Generated(Generated&&) noexcept = default;
  // Moves the generator and the current item; iterators of either object are invalidated.
  Generated& operator=(Generated&&) noexcept = default;

  // An input iterator over the items; it points into its Generated, which must outlive it.
  // Compares equal to end() once gen() returned an empty optional.
  class iterator {
   public:
    // The type of the items: G's result without the std::optional.
    using value_type = Value;
    // Required of an input iterator; iterators are never subtracted.
    using difference_type = std::ptrdiff_t;
    // An iterator of no range, only to assign to; it must not be read or advanced.
    iterator() = default;
    // The current item, valid until the next ++. Must not be called at the end.
    const Value& operator*() const { return *owner_->current_; }
    // Calls gen() for the next item; what gen throws propagates. Python: next(generator).
    iterator& operator++() {
      owner_->current_ = owner_->gen_();
      return *this;
    }
    // The same as ++it (an input iterator gives no copy of the previous position).
    void operator++(int) { ++*this; }
    // True once gen() returned an empty optional (Python: StopIteration).
    bool operator==(std::default_sentinel_t) const { return !owner_->current_; }

   private:
    friend class Generated;
    explicit iterator(Generated* owner) : owner_(owner) {}
    Generated* owner_ = nullptr;
  };
  // Calls gen() for the first item.
  iterator begin() {
    current_ = gen_();
    return iterator(this);
  }
  // The end: an iterator equals it when gen() returned an empty optional.
  std::default_sentinel_t end() const noexcept { return {}; }

 private:
  G gen_;
  std::optional<Value> current_;
};

// Python's keyword arguments of Pool(...).
struct PoolOptions {
  // Number of workers; nullopt: cpu_count(). Throws std::invalid_argument if < 1.
  std::optional<int> processes{};
  // Run once in each worker before its first task: mp::initializer(fn, args...).
  detail::InitCall initializer{};
  // A worker exits and is replaced after this many tasks (chunks); nullopt: never.
  std::optional<std::uint64_t> maxtasksperchild{};
  // A start method of mp::get_all_start_methods() ("fork", "spawn", "forkserver"), or
  // "mpi" (<mp/mpi.hpp>); empty: the default start method (Python: context).
  std::string start_method{};
  // A task (chunk) running longer fails with mp::TimeoutError; its worker is killed and
  // replaced. nullopt: no limit (Python has none).
  std::optional<std::chrono::nanoseconds> task_timeout{};
};

// The result of apply_async/map_async/starmap_async. Copyable; copies share the state.
// Python: multiprocessing.pool.AsyncResult.
template <class T>
class AsyncResult {
 public:
  // Waits for the result and returns it (a copy, so get() may be called again).
  // Throws what the task threw as mp::RemoteError, mp::WorkerLostError if its worker
  // died, mp::TimeoutError if task_timeout passed, mp::BrokenProcessPool if the pool
  // broke. Python: get().
  T get() const {
    state_->state->wait();
    return value();
  }
  // Waits at most `timeout`; throws mp::TimeoutError if the result is not ready by then.
  template <class Rep, class Period>
  T get(std::chrono::duration<Rep, Period> timeout) const {
    if (!state_->state->wait_for(detail::saturated_nanoseconds(timeout)))
      throw TimeoutError("mp::AsyncResult::get: timed out");
    return value();
  }
  // Waits until ready. Python: wait().
  void wait() const { state_->state->wait(); }
  // Waits at most `timeout`; returns ready(). Python: wait(timeout) (returns None).
  template <class Rep, class Period>
  bool wait(std::chrono::duration<Rep, Period> timeout) const {
    return state_->state->wait_for(detail::saturated_nanoseconds(timeout));
  }
  // Never blocks. Python: ready().
  bool ready() const { return state_->state->ready(); }
  // Whether the call completed without an exception. Throws std::logic_error if not
  // ready (Python: ValueError). Never blocks.
  bool successful() const {
    if (!ready()) throw std::logic_error("mp::AsyncResult::successful: result is not ready");
    if (state_->state->error()) return false;
    try {
      (void)value();
    } catch (...) {
      return false;
    }
    return true;
  }

  // Internal: built by Pool.
  struct Shared {
    // The task's completion, results and error, filled by the pool.
    std::shared_ptr<detail::ResultState> state;
    // Turns the pickled results into T.
    T (*decode)(std::vector<detail::PoolBytes>&) = nullptr;
    // Decoding happens once, in the first get().
    std::once_flag once;
    // The decoded result, after the first successful get().
    std::optional<T> value;
    // What decoding threw (mp::UnpicklingError...), rethrown by every get().
    std::exception_ptr decode_error;
  };
  // Internal: Pool makes AsyncResults; copies share `shared`.
  explicit AsyncResult(std::shared_ptr<Shared> shared) : state_(std::move(shared)) {}

 private:
  // After ready: the decoded value (decoded once), or the error.
  const T& decoded() const {
    if (auto error = state_->state->error()) std::rethrow_exception(error);
    std::call_once(state_->once, [&] {
      try {
        state_->value.emplace(state_->decode(state_->state->results()));
      } catch (...) {
        state_->decode_error = std::current_exception();
      }
    });
    if (state_->decode_error) std::rethrow_exception(state_->decode_error);
    return *state_->value;
  }
  T value() const { return decoded(); }
  // get() for the result's only holder (Pool::apply, map, starmap, which never hand it
  // out): moves the value instead of copying it, a whole map's results.
  T take() {
    state_->state->wait();
    if (auto error = state_->state->error()) std::rethrow_exception(error);
    return state_->decode(state_->state->results());
  }

  template <class>
  friend class AsyncResult;
  friend class Pool;
  std::shared_ptr<Shared> state_;
};

// AsyncResult of a function returning void: get() returns nothing.
template <>
class AsyncResult<void> {
 public:
  // Waits until the call completed; throws what AsyncResult<T>::get throws (the task's
  // error as mp::RemoteError, mp::WorkerLostError...). Python: get() (returns None).
  void get() const {
    state_->wait();
    check();
  }
  // Waits at most `timeout`; throws mp::TimeoutError if not done by then, else as get().
  template <class Rep, class Period>
  void get(std::chrono::duration<Rep, Period> timeout) const {
    if (!state_->wait_for(detail::saturated_nanoseconds(timeout)))
      throw TimeoutError("mp::AsyncResult::get: timed out");
    check();
  }
  // Waits until ready. Python: wait().
  void wait() const { state_->wait(); }
  // Waits at most `timeout`; returns ready(). Python: wait(timeout) (returns None).
  template <class Rep, class Period>
  bool wait(std::chrono::duration<Rep, Period> timeout) const {
    return state_->wait_for(detail::saturated_nanoseconds(timeout));
  }
  // Never blocks. Python: ready().
  bool ready() const { return state_->ready(); }
  // Whether the call completed without an exception. Throws std::logic_error if not
  // ready (Python: ValueError). Never blocks.
  bool successful() const {
    if (!ready()) throw std::logic_error("mp::AsyncResult::successful: result is not ready");
    return !state_->error();
  }
  // Internal: Pool makes AsyncResults; copies share `state`.
  explicit AsyncResult(std::shared_ptr<detail::ResultState> state) : state_(std::move(state)) {}

 private:
  void check() const {
    if (auto error = state_->error()) std::rethrow_exception(error);
  }
  void take() const { get(); }  // as AsyncResult<T>::take

  friend class Pool;
  std::shared_ptr<detail::ResultState> state_;
};

// The lazy iterator of imap/imap_unordered: an input range of T (range-for works),
// plus next(). Move-only. Python: IMapIterator.
template <class T>
class IMapIterator {
 public:
  // The next result; nullopt once every result was returned. Throws the task's error
  // (mp::RemoteError, mp::WorkerLostError...) once for a failed chunk; iteration may go
  // on after it. Throws mp::TimeoutError once the deadline of ProcessPoolExecutor::map's
  // MapOptions::timeout has passed with no result ready. Python: next().
  std::optional<T> next() {
    if (!deadline_) return next_impl(std::nullopt);
    const auto now = std::chrono::steady_clock::now();
    return next_impl(now >= *deadline_ ? std::chrono::nanoseconds(0) : *deadline_ - now);
  }
  // The same, waiting at most `timeout`; throws mp::TimeoutError if nothing arrives.
  template <class Rep, class Period>
  std::optional<T> next(std::chrono::duration<Rep, Period> timeout) {
    return next_impl(detail::saturated_nanoseconds(timeout));
  }

  // An input iterator over the results; it points into its IMapIterator, which must
  // outlive it. Compares equal to end() once every result was returned.
  class iterator {
   public:
    // The type of the results.
    using value_type = T;
    // Required of an input iterator; iterators are never subtracted.
    using difference_type = std::ptrdiff_t;
    // An iterator of no range, only to assign to; it must not be read or advanced.
    iterator() = default;
    // The current result, valid until the next ++. Must not be called at the end.
    const T& operator*() const { return *owner_->current_; }
    // Fetches the next result (blocks; throws as next()).
    iterator& operator++() {
      owner_->current_ = owner_->next();
      return *this;
    }
    // The same as ++it (an input iterator gives no copy of the previous position).
    void operator++(int) { ++*this; }
    // True once every result was returned.
    bool operator==(std::default_sentinel_t) const { return !owner_->current_.has_value(); }

   private:
    friend class IMapIterator;
    explicit iterator(IMapIterator* owner) : owner_(owner) {}
    IMapIterator* owner_ = nullptr;
  };
  // Begins the iteration: fetches the first result (blocks; throws as next()).
  iterator begin() {
    current_ = next();
    return iterator(this);
  }
  // The end: an iterator equals it once every result was returned.
  std::default_sentinel_t end() const noexcept { return {}; }

  // Internal: Pool::imap and imap_unordered make IMapIterators.
  IMapIterator(std::shared_ptr<detail::PoolCore> core, std::shared_ptr<detail::IMapState> state)
      : core_(std::move(core)), state_(std::move(state)) {}

  // Internal: next() waits until `timeout` after now at most (nullopt: no limit).
  void set_timeout(std::optional<std::chrono::nanoseconds> timeout) {
    const auto now = std::chrono::steady_clock::now();
    if (!timeout || *timeout > std::chrono::steady_clock::time_point::max() - now)
      deadline_.reset();
    else
      deadline_ = now + std::max(*timeout, std::chrono::nanoseconds(0));
  }

 private:
  std::optional<T> next_impl(std::optional<std::chrono::nanoseconds> timeout) {
    while (buffer_pos_ >= buffer_.size()) {
      auto chunk = state_->next_chunk(*core_, state_, timeout);
      if (!chunk) return std::nullopt;
      detail::load_chunk(chunk->view(), buffer_);
      buffer_pos_ = 0;
    }
    return std::move(buffer_[buffer_pos_++]);
  }

  std::shared_ptr<detail::PoolCore> core_;
  std::shared_ptr<detail::IMapState> state_;
  std::vector<T> buffer_;
  std::size_t buffer_pos_ = 0;
  std::optional<T> current_;
  std::optional<std::chrono::steady_clock::time_point> deadline_;
};

// A pool of worker processes. Python: multiprocessing.Pool.
class MP_API Pool {
 public:
  // Starts the workers. Throws std::invalid_argument for processes < 1 or an unknown
  // start method, std::system_error if the OS refuses. Python: Pool(...).
  Pool() : Pool(PoolOptions{}) {}
  // The same with Python's keyword arguments (processes, initializer, maxtasksperchild,
  // context) and mp's own (task_timeout). Throws as above.
  explicit Pool(PoolOptions options);
  // close() + join(): waits for every submitted task (Python's `with` terminates).
  ~Pool();
  Pool(const Pool&) = delete;
  Pool& operator=(const Pool&) = delete;

  // Runs fn(args...) in a worker and waits for its result. Throws as AsyncResult::get,
  // std::invalid_argument after close(). Python: apply(func, args).
  template <class F, class... Args>
  auto apply(F fn, Args... args) {
    return apply_async(std::move(fn), std::move(args)...).take();
  }

  // Submits fn(args...) and returns at once. Python: apply_async(func, args).
  template <class F, class... Args>
  auto apply_async(F fn, Args... args) {
    return apply_async_with({}, {}, std::move(fn), std::move(args)...);
  }
  // With callbacks (see "Thread safety" above): `callback(result)` on success (an unused
  // 0 for void functions), `error_callback(std::exception_ptr)` on failure. Either may be
  // empty. Both have run when get() returns. Python: apply_async(func, args,
  // callback=..., error_callback=...).
  template <class F, class... Args, class R = std::invoke_result_t<F&, Args&...>>
  AsyncResult<R> apply_async_with(
      std::function<void(const std::conditional_t<std::is_void_v<R>, int, R>&)> callback,
      std::function<void(std::exception_ptr)> error_callback, F fn, Args... args) {
    detail::check_pool_call<F, Args...>();
    auto state = std::make_shared<detail::ResultState>(1);
    state->set_helper(core_->helper());
    const detail::RemotePicklingScope remote(core_->remote());
    std::vector<detail::PoolTaskInput> tasks;
    tasks.push_back({detail::trampoline_ref<&detail::pool_apply_call<F, Args...>>(),
                     pickle::dumps(std::tuple<F, Args...>(std::move(fn), std::move(args)...))});
    if constexpr (std::is_void_v<R>) {
      if (callback || error_callback) {
        state->on_ready([state, callback, error_callback] {
          if (auto error = state->error()) {
            if (error_callback) error_callback(error);
          } else if (callback) {
            callback(0);
          }
        });
      }
      core_->submit(state, 0, std::move(tasks));
      return AsyncResult<void>(state);
    } else {
      auto shared = std::make_shared<typename AsyncResult<R>::Shared>();
      shared->state = state;
      shared->decode = [](std::vector<detail::PoolBytes>& results) {
        return pickle::loads<R>(results.at(0).view());
      };
      AsyncResult<R> result(shared);
      on_result(result, std::move(callback), std::move(error_callback));
      core_->submit(state, 0, std::move(tasks));
      return result;
    }
  }

  // fn(item) for every item of `items` (any input range), in chunks of `chunksize`
  // (nullopt: Python's default, ceil(len / (4 * processes))); waits and returns the
  // results in order: a std::vector of fn's result type, of std::monostate if fn returns
  // void (Python's list of None). Throws std::invalid_argument if chunksize is 0 (Python:
  // ValueError), the first failure as AsyncResult::get. Python: map().
  template <class F, std::ranges::input_range R>
  auto map(F fn, R&& items, std::optional<std::size_t> chunksize = std::nullopt) {
    return map_async(std::move(fn), std::forward<R>(items), chunksize).take();
  }
  // As map, returning at once: an AsyncResult whose get() gives the vector of results.
  // Throws std::invalid_argument if chunksize is 0 or after close(). Python: map_async().
  template <class F, std::ranges::input_range R>
  auto map_async(F fn, R&& items, std::optional<std::size_t> chunksize = std::nullopt) {
    using Item = std::remove_cvref_t<std::ranges::range_reference_t<R>>;
    return map_impl<F, Item, false>(std::move(fn), std::forward<R>(items), chunksize);
  }
  // With callbacks, as apply_async_with: `callback(results)` with the whole vector on
  // success, `error_callback(std::exception_ptr)` with the first failure. Either may be
  // empty; both have run when get() returns. Python: map_async(func, iterable,
  // chunksize, callback=..., error_callback=...).
  template <class F, std::ranges::input_range R,
            class Item = std::remove_cvref_t<std::ranges::range_reference_t<R>>>
  auto map_async_with(
      std::function<
          void(const std::type_identity_t<std::vector<detail::map_value_t<F, Item, false>>>&)>
          callback,
      std::function<void(std::exception_ptr)> error_callback, F fn, R&& items,
      std::optional<std::size_t> chunksize = std::nullopt) {
    return map_impl<F, Item, false>(std::move(fn), std::forward<R>(items), chunksize,
                                    std::move(callback), std::move(error_callback));
  }
  // std::apply(fn, item) for every tuple-like item. Python: starmap().
  template <class F, std::ranges::input_range R>
  auto starmap(F fn, R&& items, std::optional<std::size_t> chunksize = std::nullopt) {
    return starmap_async(std::move(fn), std::forward<R>(items), chunksize).take();
  }
  // As starmap, returning at once an AsyncResult. Throws as map_async.
  // Python: starmap_async().
  template <class F, std::ranges::input_range R>
  auto starmap_async(F fn, R&& items, std::optional<std::size_t> chunksize = std::nullopt) {
    using Item = std::remove_cvref_t<std::ranges::range_reference_t<R>>;
    return map_impl<F, Item, true>(std::move(fn), std::forward<R>(items), chunksize);
  }
  // With callbacks, as map_async_with. Python: starmap_async(..., callback, error_callback).
  template <class F, std::ranges::input_range R,
            class Item = std::remove_cvref_t<std::ranges::range_reference_t<R>>>
  auto starmap_async_with(
      std::function<
          void(const std::type_identity_t<std::vector<detail::map_value_t<F, Item, true>>>&)>
          callback,
      std::function<void(std::exception_ptr)> error_callback, F fn, R&& items,
      std::optional<std::size_t> chunksize = std::nullopt) {
    return map_impl<F, Item, true>(std::move(fn), std::forward<R>(items), chunksize,
                                   std::move(callback), std::move(error_callback));
  }

  // Lazily maps fn over `items` (an rvalue range is moved into the iterator; an lvalue
  // range must outlive it), at most `buffersize` chunks in flight (0: 4 * processes).
  // Input is read in the thread that calls next(); an exception the range throws comes
  // out of next() after the results of the items before it, and ends the iteration.
  // Yields std::monostate for a function returning void. Throws std::invalid_argument if
  // chunksize is 0. Python: imap(func, iterable, chunksize).
  template <class F, std::ranges::input_range R>
  auto imap(F fn, R&& items, std::size_t chunksize = 1, std::size_t buffersize = 0) {
    return imap_impl<F, false>(true, std::move(fn), std::forward<R>(items), chunksize, buffersize);
  }
  // As imap, results in completion order. Python: imap_unordered().
  template <class F, std::ranges::input_range R>
  auto imap_unordered(F fn, R&& items, std::size_t chunksize = 1, std::size_t buffersize = 0) {
    return imap_impl<F, false>(false, std::move(fn), std::forward<R>(items), chunksize, buffersize);
  }
  // Fed by a generator function: gen() returns std::optional<Item>, called (in the thread
  // that calls next(), as the input is read) until it returns nullopt. gen itself is
  // never pickled, so it may capture anything. Python: imap(func, generator()).
  template <class F, class G>
  requires std::invocable<G&> && detail::is_optional_v<std::invoke_result_t<G&>>
  auto imap(F fn, G gen, std::size_t chunksize = 1, std::size_t buffersize = 0) {
    return imap(std::move(fn), Generated<G>(std::move(gen)), chunksize, buffersize);
  }
  // As imap fed by a generator function, results in completion order.
  // Python: imap_unordered(func, generator()).
  template <class F, class G>
  requires std::invocable<G&> && detail::is_optional_v<std::invoke_result_t<G&>>
  auto imap_unordered(F fn, G gen, std::size_t chunksize = 1, std::size_t buffersize = 0) {
    return imap_unordered(std::move(fn), Generated<G>(std::move(gen)), chunksize, buffersize);
  }

  // No more tasks may be submitted; workers exit once the queued ones are done.
  // Never blocks. Python: close().
  void close();
  // Kills the workers now (SIGTERM); unfinished tasks fail with BrokenProcessPool.
  // Never blocks for long. Python: terminate().
  void terminate();
  // Waits until every worker has exited. Throws std::logic_error unless close() or
  // terminate() was called first. Python: join().
  void join();

  // The number of workers. Never blocks.
  int processes() const noexcept;
  // The pids of the current workers (changes as workers are replaced). Never blocks.
  std::vector<int> worker_pids() const;

 private:
  // Runs the callbacks when `result` is ready (in the pool's result thread).
  template <class T>
  static void on_result(const AsyncResult<T>& result, std::function<void(const T&)> callback,
                        std::function<void(std::exception_ptr)> error_callback);

  // map and starmap, sync and async: the chunk submitter and the result decoder.
  template <class F, class Item, bool Star, class R,
            class Results = std::vector<detail::map_value_t<F, Item, Star>>>
  auto map_impl(F fn, R&& items, std::optional<std::size_t> chunksize_option,
                std::function<void(const Results&)> callback = {},
                std::function<void(std::exception_ptr)> error_callback = {});

  // Star: std::apply(fn, item) for tuple-like items (ProcessPoolExecutor::map over
  // several ranges).
  template <class F, bool Star, class R>
  auto imap_impl(bool ordered, F fn, R&& items, std::size_t chunksize, std::size_t buffersize);

  friend class ProcessPoolExecutor;
  std::shared_ptr<detail::PoolCore> core_;
};

template <class T>
void Pool::on_result(const AsyncResult<T>& result, std::function<void(const T&)> callback,
                     std::function<void(std::exception_ptr)> error_callback) {
  if (!callback && !error_callback) return;
  result.state_->state->on_ready([result, callback, error_callback] {
    std::exception_ptr error = result.state_->state->error();
    if (!error) {
      try {
        const T& value = result.decoded();
        if (callback) callback(value);
        return;
      } catch (...) {
        error = std::current_exception();
      }
    }
    if (error_callback) error_callback(error);
  });
}

template <class F, class Item, bool Star, class R, class Results>
auto Pool::map_impl(F fn, R&& items, std::optional<std::size_t> chunksize_option,
                    std::function<void(const Results&)> callback,
                    std::function<void(std::exception_ptr)> error_callback) {
  detail::check_pool_map<F, Item, Star>();
  using Result = detail::map_value_t<F, Item, Star>;
  if (chunksize_option && *chunksize_option == 0)
    throw std::invalid_argument("mp::Pool::map: chunksize must be at least 1");
  std::size_t chunksize = chunksize_option.value_or(0);
  // A sized range is read once, straight into the chunks; another one is listed first
  // (the default chunksize needs its length), as Python lists the iterable.
  std::vector<Item> all;
  std::size_t length = 0;
  if constexpr (std::ranges::sized_range<R>) {
    length = static_cast<std::size_t>(std::ranges::size(items));
  } else {
    for (auto&& item : items) all.push_back(static_cast<Item>(item));
    length = all.size();
  }
  if (chunksize == 0) chunksize = detail::default_chunksize(length, processes());
  const std::size_t chunks = chunksize == 0 ? 0 : (length + chunksize - 1) / chunksize;
  auto state = std::make_shared<detail::ResultState>(chunks);
  state->items_per_task = chunksize;
  state->set_helper(core_->helper());
  auto shared = std::make_shared<typename AsyncResult<std::vector<Result>>::Shared>();
  shared->state = state;
  shared->decode = &detail::decode_chunks<Result>;
  AsyncResult<std::vector<Result>> result(shared);
  on_result(result, std::move(callback), std::move(error_callback));
  detail::ChunkSubmitter<F, Item, Star> submitter(*core_, state, fn, chunksize);
  if constexpr (std::ranges::contiguous_range<R> && std::ranges::sized_range<R> &&
                std::is_same_v<std::ranges::range_value_t<R>, Item> &&
                detail::is_pool_number<Item>) {
    submitter.add_numbers(std::ranges::data(items), length);
  } else if constexpr (std::ranges::sized_range<R>) {
    for (auto&& item : items) submitter.add(std::forward<decltype(item)>(item));
  } else {
    for (auto& item : all) submitter.add(std::move(item));
  }
  submitter.finish();
  return result;
}

template <class F, bool Star, class R>
auto Pool::imap_impl(bool ordered, F fn, R&& items, std::size_t chunksize, std::size_t buffersize) {
  using Item = std::remove_cvref_t<std::ranges::range_reference_t<R>>;
  detail::check_pool_map<F, Item, Star>();
  using Result = detail::map_value_t<F, Item, Star>;
  if (chunksize == 0) throw std::invalid_argument("mp::Pool::imap: chunksize must be at least 1");
  if (buffersize == 0) buffersize = 4 * static_cast<std::size_t>(processes());
  // The feeder holds a view or an rvalue range itself and any other lvalue range by
  // address: what std::views::all would hold, without its ref_view, which clang++ 14
  // cannot instantiate from libstdc++ 12.
  constexpr bool is_view = std::ranges::view<std::remove_cvref_t<R>>;
  using Range = std::conditional_t<is_view, std::remove_cvref_t<R>, std::remove_reference_t<R>>;
  using Held = std::conditional_t<std::is_lvalue_reference_v<R> && !is_view, Range*, Range>;
  struct Feeder {
    Held held;
    std::ranges::iterator_t<Range> it;
    bool started = false;
    F fn;
    std::size_t chunksize;
    std::exception_ptr error;  // the input's, thrown after the chunk read before it
    Range& range() {
      if constexpr (std::is_pointer_v<Held>)
        return *held;
      else
        return held;
    }
  };
  auto feeder = [&] {
    if constexpr (std::is_pointer_v<Held>)
      return std::make_shared<Feeder>(Feeder{&items, {}, false, std::move(fn), chunksize, nullptr});
    else
      return std::make_shared<Feeder>(
          Feeder{Range(std::forward<R>(items)), {}, false, std::move(fn), chunksize, nullptr});
  }();
  auto feed = [feeder, remote = core_->remote()](std::string& input) {
    if (feeder->error) std::rethrow_exception(std::exchange(feeder->error, nullptr));
    std::vector<Item> part;
    try {
      if (!feeder->started) {
        feeder->it = std::ranges::begin(feeder->range());
        feeder->started = true;
      }
      while (part.size() < feeder->chunksize && feeder->it != std::ranges::end(feeder->range())) {
        part.push_back(static_cast<Item>(*feeder->it));
        ++feeder->it;
      }
    } catch (...) {
      if (part.empty()) throw;
      feeder->error = std::current_exception();  // the items read so far run first
    }
    if (part.empty()) return false;
    const detail::RemotePicklingScope scope(remote);
    input = pickle::dumps(std::tuple<F, std::vector<Item>>(feeder->fn, std::move(part)));
    return true;
  };
  auto state = std::make_shared<detail::IMapState>(
      ordered, buffersize, std::move(feed),
      detail::trampoline_ref<&detail::pool_map_call<F, Item, Star>>());
  state->items_per_task = chunksize;
  state->fill(*core_, state);
  return IMapIterator<Result>(core_, state);
}

}  // namespace mp
