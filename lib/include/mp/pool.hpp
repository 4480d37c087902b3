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
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <functional>
#include <iterator>
#include <memory>
#include <mutex>
#include <optional>
#include <ranges>
#include <stdexcept>
#include <string>
#include <string_view>
#include <tuple>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

#include <mp/detail/heap.hpp>
#include <mp/errors.hpp>
#include <mp/pickle.hpp>

namespace mp {

namespace detail {

// The worker side of one task: unpickles its input, runs it, appends the pickled result
// to `result`. Exceptions propagate (the worker reports them as RemoteError).
using PoolTrampoline = void (*)(std::string_view input, std::string& result);

// An initializer as a picklable value: a trampoline plus the pickled (function,
// arguments). Empty when `run` is null.
struct InitCall {
  InitCall() noexcept {}  // user-provided: GCC 12 otherwise warns on PoolOptions{...}
  InitCall(void (*run_fn)(std::string_view), std::string bound_call)
      : run(run_fn), bound(std::move(bound_call)) {}
  void (*run)(std::string_view bound) = nullptr;
  std::string bound;
  template <class Archive>
  void serialize(Archive& ar) {
    ar(run, bound);
  }
};

template <class F, class... Args>
void run_initializer(std::string_view bound) {
  auto call = pickle::loads<std::tuple<F, Args...>>(bound);
  std::apply([](auto& f, auto&... args) { std::invoke(f, args...); }, call);
}

// A pickled task input or result: in a std::string when small, else in a block of the
// shared heap, which a worker reads (input) or wrote (result) in place, so a chunk of
// several MiB is copied once per direction instead of through fresh malloc'd strings.
// Move-only; frees its block.
class MP_API PoolBytes {
 public:
  static constexpr std::size_t kHeapFrom = 16 * 1024;  // the pool's records hold less inline

  PoolBytes() noexcept = default;
  PoolBytes(std::string bytes) noexcept : bytes_(std::move(bytes)) {}  // NOLINT: implicit
  // A copy of `bytes`: in the shared heap from kHeapFrom bytes on. Throws HeapExhausted.
  static PoolBytes copy_of(std::string_view bytes);
  // Takes over a heap block of which the first `size` bytes are the value.
  static PoolBytes adopt(shared_ref block, std::size_t size) noexcept;
  PoolBytes(PoolBytes&& other) noexcept;
  PoolBytes& operator=(PoolBytes&& other) noexcept;
  PoolBytes(const PoolBytes&) = delete;
  PoolBytes& operator=(const PoolBytes&) = delete;
  ~PoolBytes();

  std::string_view view() const noexcept;
  std::size_t size() const noexcept { return view().size(); }
  // The heap block holding the bytes, if any.
  const std::optional<shared_ref>& block() const noexcept { return block_; }
  // Moves bytes held in a string into the shared heap. Throws HeapExhausted.
  void move_to_heap();

 private:
  static PoolBytes heap_copy(std::string_view bytes);

  std::string bytes_;
  std::optional<shared_ref> block_;
  const char* data_ = nullptr;  // with block_: its address in this process
  std::size_t size_ = 0;
};

// Receives the outcome of each task of one job (apply, map, imap...), in the pool's
// result thread. Implementations must not throw.
class MP_API JobSink {
 public:
  virtual ~JobSink() = default;
  virtual void task_done(std::uint64_t index, PoolBytes&& result) noexcept = 0;
  virtual void task_failed(std::uint64_t index, std::exception_ptr error) noexcept = 0;
  // Whether the job's results are used only all together (map): then a worker with more
  // of its tasks queued need not report each result at once.
  virtual bool batched() const noexcept { return false; }
};

// One task to submit: the trampoline's pickled code reference (a string that lives as
// long as the program) and the pickled input.
struct PoolTaskInput {
  const std::string* trampoline;
  PoolBytes input;
};

// The untyped pool, compiled once in lib/src/pool.cpp.
struct PoolCoreOptions {
  int processes = 0;
  InitCall initializer;
  std::uint64_t maxtasksperchild = 0;  // 0: unlimited
  std::string start_method;
  std::optional<std::chrono::nanoseconds> task_timeout;
};

class MP_API PoolCore {
 public:
  explicit PoolCore(PoolCoreOptions options);
  ~PoolCore();
  PoolCore(const PoolCore&) = delete;
  PoolCore& operator=(const PoolCore&) = delete;

  // Queues tasks first_index, first_index + 1, ... of `sink`. Never blocks on workers.
  // Throws std::invalid_argument after close()/terminate(). A broken pool fails the
  // tasks through the sink, and so does a full heap (HeapExhausted) the task whose input
  // does not fit.
  void submit(const std::shared_ptr<JobSink>& sink, std::uint64_t first_index,
              std::vector<PoolTaskInput> tasks);
  void close();
  // Fails every task with BrokenProcessPool and ends the workers: SIGTERM, or SIGKILL
  // with `kill`.
  void terminate(bool kill = false);
  void join();
  // Removes task `index` of `sink` if no worker has started it yet (a worker it was
  // handed to skips it); true if it was removed.
  bool cancel(const JobSink* sink, std::uint64_t index);
  // Whether a worker has started task `index` of `sink` (true once it has finished).
  bool started(const JobSink* sink, std::uint64_t index) const;
  // Removes every task no worker has started and returns them (sink, index).
  std::vector<std::pair<std::shared_ptr<JobSink>, std::uint64_t>> take_pending();
  int processes() const noexcept;
  // For a thread waiting on a result: drains finished results without waiting for the
  // result thread. Returns 1 if it delivered some, 0 if none was there, -1 if spinning
  // is not worth it (tasks run long, or the pool is gone). Never blocks.
  std::function<int()> helper() const;
  // The pids of the current workers (for tests and diagnostics).
  std::vector<int> worker_pids() const;

 private:
  struct Impl;
  std::shared_ptr<Impl> impl_;
};

// The state of an AsyncResult: how many tasks are left, their pickled results, the
// first error. Compiled once in lib/src/pool.cpp.
class MP_API ResultState : public JobSink {
 public:
  explicit ResultState(std::size_t tasks);
  bool batched() const noexcept override { return batched_; }
  void task_done(std::uint64_t index, PoolBytes&& result) noexcept override;
  void task_failed(std::uint64_t index, std::exception_ptr error) noexcept override;

  bool ready() const;
  void wait() const;
  bool wait_for(std::chrono::nanoseconds timeout) const;
  // Lets waiters drain the pool's results themselves (PoolCore::helper()). Set before
  // the tasks are submitted.
  void set_helper(std::function<int()> helper);
  // After ready(): the pickled results, in task order (empty when error() is set).
  std::vector<PoolBytes>& results() noexcept { return results_; }
  std::exception_ptr error() const noexcept { return error_; }
  // Called once when the result becomes ready (in the result thread, or at once if
  // already ready). Exceptions it throws are reported on stderr.
  void on_ready(std::function<void()> callback);

 private:
  void finish_locked(std::unique_lock<std::mutex>& lock) noexcept;
  void help_until(std::chrono::steady_clock::time_point deadline) const;

  mutable std::mutex mutex_;
  mutable std::condition_variable changed_;
  std::size_t remaining_;
  const bool batched_;
  bool complete_ = false;  // results or error final; callbacks run before ready_
  bool ready_ = false;
  std::atomic<bool> ready_flag_{false};
  std::function<int()> helper_;
  std::vector<PoolBytes> results_;
  std::exception_ptr error_;
  std::function<void()> on_ready_;
};

// The state of an imap iterator: chunk results as they arrive, delivered in order
// (imap) or as they come (imap_unordered), with the input fed lazily. Compiled once.
class MP_API IMapState : public JobSink {
 public:
  // `feed` pickles the next chunk of input into `input` and returns true, or returns
  // false at the end of the input. It runs in the consumer's thread. An exception it
  // throws takes the next chunk's place (next_chunk throws it) and ends the input.
  IMapState(bool ordered, std::size_t buffersize, std::function<bool(std::string& input)> feed,
            const std::string* trampoline);
  void task_done(std::uint64_t index, PoolBytes&& result) noexcept override;
  void task_failed(std::uint64_t index, std::exception_ptr error) noexcept override;

  // Submits chunks until `buffersize` are in flight or the input ends.
  void fill(PoolCore& core, const std::shared_ptr<JobSink>& self);
  // The next chunk's pickled results; nullopt at the end. Throws the chunk's error, or
  // mp::TimeoutError if nothing arrives within `timeout`.
  std::optional<PoolBytes> next_chunk(PoolCore& core, const std::shared_ptr<JobSink>& self,
                                      std::optional<std::chrono::nanoseconds> timeout);

 private:
  struct Impl;
  std::shared_ptr<Impl> impl_;
};

MP_API std::size_t default_chunksize(std::size_t length, int processes) noexcept;

// The trampolines. Their pickled code references are computed once per instantiation.
template <class F, class... Args>
void pool_apply_call(std::string_view input, std::string& result) {
  auto bound = pickle::loads<std::tuple<F, Args...>>(input);
  using R = std::invoke_result_t<F&, Args&...>;
  if constexpr (std::is_void_v<R>) {
    std::apply([](auto& f, auto&... args) { std::invoke(f, args...); }, bound);
    pickle::dump(true, result);
  } else {
    pickle::dump(
        std::apply([](auto& f, auto&... args) -> R { return std::invoke(f, args...); }, bound),
        result);
  }
}

// A chunk of map (Star false: f(item)) or starmap (Star true: std::apply(f, item)).
// What fn returns for one item: fn(item) or std::apply(fn, item).
template <class F, class Item, bool Star>
struct map_result {
  using type = std::invoke_result_t<F&, Item&>;
};
template <class F, class Item>
struct map_result<F, Item, true> {
  using type = decltype(std::apply(std::declval<F&>(), std::declval<Item&>()));
};
// The value map/imap give for one item: std::monostate for a function returning void
// (Python's None).
template <class F, class Item, bool Star>
using map_value_t =
    std::conditional_t<std::is_void_v<typename map_result<F, Item, Star>::type>, std::monostate,
                       std::remove_cvref_t<typename map_result<F, Item, Star>::type>>;

template <class F, class Item, bool Star>
void pool_map_call(std::string_view input, std::string& result) {
  auto bound = pickle::loads<std::tuple<F, std::vector<Item>>>(input);
  auto& f = std::get<0>(bound);
  auto& items = std::get<1>(bound);
  using R = typename map_result<F, Item, Star>::type;
  auto call = [&f](Item& item) -> decltype(auto) {
    if constexpr (Star)
      return std::apply(f, item);
    else
      return std::invoke(f, item);
  };
  if constexpr (std::is_void_v<R>) {
    for (auto& item : items) call(item);
    pickle::dump(static_cast<std::uint64_t>(items.size()), result);  // see load_chunk
  } else {
    std::vector<R> out;
    out.reserve(items.size());
    for (auto& item : items) out.push_back(call(item));
    pickle::dump(out, result);
  }
}

// Decodes a chunk's results written by pool_map_call. A chunk of a function returning
// void is the number of its items: a std::monostate pickles to no bytes at all.
template <class T>
void load_chunk(std::string_view bytes, std::vector<T>& out) {
  if constexpr (std::is_same_v<T, std::monostate>) {
    const auto count = pickle::loads<std::uint64_t>(bytes);
    if (count > std::uint64_t{1} << 40)
      throw std::length_error("mp::Pool: a chunk claims " + std::to_string(count) + " results");
    out.assign(static_cast<std::size_t>(count), std::monostate{});
  } else {
    pickle::load(bytes, out);
  }
}

// A timeout in nanoseconds, saturated: a coarser duration too large for nanoseconds
// (std::chrono::hours::max()) becomes nanoseconds::max(), which waits forever.
template <class Rep, class Period>
std::chrono::nanoseconds saturated_nanoseconds(std::chrono::duration<Rep, Period> timeout) {
  const std::chrono::duration<long double, std::nano> wide(timeout);
  if (wide.count() >= static_cast<long double>(std::chrono::nanoseconds::max().count()))
    return std::chrono::nanoseconds::max();
  if (wide.count() <= 0) return std::chrono::nanoseconds::zero();
  return std::chrono::duration_cast<std::chrono::nanoseconds>(timeout);
}

template <auto Trampoline>
const std::string* trampoline_ref() {
  static const std::string ref = pickle::dumps(Trampoline);
  return &ref;
}

template <class F>
inline constexpr bool pool_function_picklable = pickle::picklable<F>;

}  // namespace detail

// Python's initializer + initargs as one picklable value: `mp::initializer(fn, args...)`
// runs fn(args...) once in every worker before its first task. Compile-time error if
// fn or an argument cannot be pickled.
template <class F, class... Args>
detail::InitCall initializer(F fn, Args... args) {
  static_assert(detail::pool_function_picklable<F>,
                "mp::Pool: the function cannot be pickled for the worker processes (a capturing "
                "lambda or a function object without serialize()); pass the captured values "
                "as arguments, use a free function or a captureless lambda, or give the "
                "function object a serialize() member");
  static_assert((pickle::picklable<Args> && ...),
                "mp::initializer: an argument cannot be pickled; give its type serialize()");
  static_assert(std::is_invocable_v<F&, Args&...>,
                "mp::initializer: the function cannot be called with these arguments");
  return {&detail::run_initializer<F, Args...>,
          pickle::dumps(std::tuple<F, Args...>(std::move(fn), std::move(args)...))};
}

// Python's keyword arguments of Pool(...).
struct PoolOptions {
  // Number of workers; nullopt: cpu_count(). Throws std::invalid_argument if < 1.
  std::optional<int> processes{};
  // Run once in each worker before its first task: mp::initializer(fn, args...).
  detail::InitCall initializer{};
  // A worker exits and is replaced after this many tasks (chunks); nullopt: never.
  std::optional<std::uint64_t> maxtasksperchild{};
  // "fork" or "spawn"; empty: the default start method (Python: context).
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
    std::shared_ptr<detail::ResultState> state;
    T (*decode)(std::vector<detail::PoolBytes>&) = nullptr;
    std::once_flag once;
    std::optional<T> value;
    std::exception_ptr decode_error;
  };
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

  template <class>
  friend class AsyncResult;
  friend class Pool;
  std::shared_ptr<Shared> state_;
};

// AsyncResult of a function returning void: get() returns nothing.
template <>
class AsyncResult<void> {
 public:
  void get() const {
    state_->wait();
    check();
  }
  template <class Rep, class Period>
  void get(std::chrono::duration<Rep, Period> timeout) const {
    if (!state_->wait_for(detail::saturated_nanoseconds(timeout)))
      throw TimeoutError("mp::AsyncResult::get: timed out");
    check();
  }
  void wait() const { state_->wait(); }
  template <class Rep, class Period>
  bool wait(std::chrono::duration<Rep, Period> timeout) const {
    return state_->wait_for(detail::saturated_nanoseconds(timeout));
  }
  bool ready() const { return state_->ready(); }
  bool successful() const {
    if (!ready()) throw std::logic_error("mp::AsyncResult::successful: result is not ready");
    return !state_->error();
  }
  explicit AsyncResult(std::shared_ptr<detail::ResultState> state) : state_(std::move(state)) {}

 private:
  void check() const {
    if (auto error = state_->error()) std::rethrow_exception(error);
  }
  std::shared_ptr<detail::ResultState> state_;
};

// The lazy iterator of imap/imap_unordered: an input range of T (range-for works),
// plus next(). Move-only. Python: IMapIterator.
template <class T>
class IMapIterator {
 public:
  // The next result; nullopt once every result was returned. Throws the task's error
  // (mp::RemoteError, mp::WorkerLostError...) once for a failed chunk; iteration may go
  // on after it. Python: next().
  std::optional<T> next() { return next_impl(std::nullopt); }
  // The same, waiting at most `timeout`; throws mp::TimeoutError if nothing arrives.
  template <class Rep, class Period>
  std::optional<T> next(std::chrono::duration<Rep, Period> timeout) {
    return next_impl(detail::saturated_nanoseconds(timeout));
  }

  class iterator {
   public:
    using value_type = T;
    using difference_type = std::ptrdiff_t;
    iterator() = default;
    const T& operator*() const { return *owner_->current_; }
    iterator& operator++() {
      owner_->current_ = owner_->next();
      return *this;
    }
    void operator++(int) { ++*this; }
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
  std::default_sentinel_t end() const noexcept { return {}; }

  IMapIterator(std::shared_ptr<detail::PoolCore> core, std::shared_ptr<detail::IMapState> state)
      : core_(std::move(core)), state_(std::move(state)) {}

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
};

// A pool of worker processes. Python: multiprocessing.Pool.
class MP_API Pool {
 public:
  // Starts the workers. Throws std::invalid_argument for processes < 1 or an unknown
  // start method, std::system_error if the OS refuses. Python: Pool(...).
  Pool() : Pool(PoolOptions{}) {}
  explicit Pool(PoolOptions options);
  // close() + join(): waits for every submitted task (Python's `with` terminates).
  ~Pool();
  Pool(const Pool&) = delete;
  Pool& operator=(const Pool&) = delete;

  // Runs fn(args...) in a worker and waits for its result. Throws as AsyncResult::get,
  // std::invalid_argument after close(). Python: apply(func, args).
  template <class F, class... Args>
  auto apply(F fn, Args... args) {
    return apply_async(std::move(fn), std::move(args)...).get();
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
    static_assert(detail::pool_function_picklable<F>,
                  "mp::Pool: the function cannot be pickled for the worker processes (a capturing "
                  "lambda or a function object without serialize()); pass the captured values "
                  "as arguments, use a free function or a captureless lambda, or give the "
                  "function object a serialize() member");
    static_assert((pickle::picklable<Args> && ...),
                  "mp::Pool: an argument cannot be pickled; give its type a serialize() member");
    if constexpr (!std::is_void_v<R>)
      static_assert(pickle::picklable<R>,
                    "mp::Pool: the function's result cannot be pickled; give its type "
                    "serialize()");
    auto state = std::make_shared<detail::ResultState>(1);
    state->set_helper(core_->helper());
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
      if (callback || error_callback) {
        state->on_ready([result, callback, error_callback] {
          std::exception_ptr error = result.state_->state->error();
          if (!error) {
            try {
              const R& value = result.decoded();
              if (callback) callback(value);
              return;
            } catch (...) {
              error = std::current_exception();
            }
          }
          if (error_callback) error_callback(error);
        });
      }
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
    return map_async(std::move(fn), std::forward<R>(items), chunksize).get();
  }
  template <class F, std::ranges::input_range R>
  auto map_async(F fn, R&& items, std::optional<std::size_t> chunksize = std::nullopt) {
    using Item = std::remove_cvref_t<std::ranges::range_reference_t<R>>;
    return map_impl<F, Item, false>(std::move(fn), std::forward<R>(items), chunksize);
  }
  // std::apply(fn, item) for every tuple-like item. Python: starmap().
  template <class F, std::ranges::input_range R>
  auto starmap(F fn, R&& items, std::optional<std::size_t> chunksize = std::nullopt) {
    return starmap_async(std::move(fn), std::forward<R>(items), chunksize).get();
  }
  template <class F, std::ranges::input_range R>
  auto starmap_async(F fn, R&& items, std::optional<std::size_t> chunksize = std::nullopt) {
    using Item = std::remove_cvref_t<std::ranges::range_reference_t<R>>;
    return map_impl<F, Item, true>(std::move(fn), std::forward<R>(items), chunksize);
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
  template <class F, class Item, bool Star, class R>
  auto map_impl(F fn, R&& items, std::optional<std::size_t> chunksize_option) {
    static_assert(detail::pool_function_picklable<F>,
                  "mp::Pool: the function cannot be pickled for the worker processes (a capturing "
                  "lambda or a function object without serialize()); pass the captured values "
                  "as arguments, use a free function or a captureless lambda, or give the "
                  "function object a serialize() member");
    static_assert(pickle::picklable<Item>, "mp::Pool: the items cannot be pickled");
    if constexpr (Star)
      static_assert(
          requires(F & f, Item & item) { std::apply(f, item); },
          "mp::Pool::starmap: the function cannot be called with an item's elements");
    else
      static_assert(std::is_invocable_v<F&, Item&>,
                    "mp::Pool::map: the function cannot be called with an item of the range");
    using Result = detail::map_value_t<F, Item, Star>;
    static_assert(pickle::picklable<Result>, "mp::Pool: the function's result cannot be pickled");
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
    state->set_helper(core_->helper());
    auto shared = std::make_shared<typename AsyncResult<std::vector<Result>>::Shared>();
    shared->state = state;
    shared->decode = [](std::vector<detail::PoolBytes>& results) {
      // Each chunk is decoded into one reused vector, then moved to the end of `out`:
      // one allocation for `out`, one for the chunks, whatever their number.
      std::vector<Result> out;
      std::vector<Result> part;
      for (std::size_t i = 0; i < results.size(); ++i) {
        detail::load_chunk(results[i].view(), part);
        results[i] = {};  // gives the chunk's heap block back at once
        if (i == 0) {
          out.reserve(part.size() * results.size());
          if (results.size() == 1) return part;
        }
        out.insert(out.end(), std::make_move_iterator(part.begin()),
                   std::make_move_iterator(part.end()));
      }
      return out;
    };
    const std::string* trampoline = detail::trampoline_ref<&detail::pool_map_call<F, Item, Star>>();
    // Chunks are pickled one by one into a reused buffer and copied to the shared heap,
    // then handed to the pool about every kBatchBytes, so workers start on the first
    // chunks while later ones are being pickled.
    constexpr std::size_t kBatchBytes = 256 * 1024;
    std::vector<detail::PoolTaskInput> tasks;
    std::size_t batch_bytes = 0, first_index = 0;
    std::tuple<F, std::vector<Item>> bound(fn, std::vector<Item>{});
    auto& part = std::get<1>(bound);
    std::string pickled;
    const auto add_chunk = [&] {
      pickled.clear();
      pickle::dump(bound, pickled);
      part.clear();
      tasks.push_back({trampoline, detail::PoolBytes::copy_of(pickled)});
      batch_bytes += pickled.size();
      if (batch_bytes >= kBatchBytes) {
        const std::size_t count = tasks.size();
        core_->submit(state, first_index, std::exchange(tasks, {}));
        first_index += count;
        batch_bytes = 0;
      }
    };
    auto add_item = [&](auto&& item) {
      if (part.capacity() < chunksize) part.reserve(chunksize);
      part.push_back(static_cast<Item>(std::forward<decltype(item)>(item)));
      if (part.size() == chunksize) add_chunk();
    };
    if constexpr (std::ranges::sized_range<R>) {
      for (auto&& item : items) add_item(std::forward<decltype(item)>(item));
    } else {
      for (auto& item : all) add_item(std::move(item));
    }
    if (!part.empty()) add_chunk();
    if (!tasks.empty() || first_index == 0) core_->submit(state, first_index, std::move(tasks));
    return AsyncResult<std::vector<Result>>(shared);
  }

  // Star: std::apply(fn, item) for tuple-like items (ProcessPoolExecutor::map over
  // several ranges).
  template <class F, bool Star, class R>
  auto imap_impl(bool ordered, F fn, R&& items, std::size_t chunksize, std::size_t buffersize) {
    using Item = std::remove_cvref_t<std::ranges::range_reference_t<R>>;
    static_assert(detail::pool_function_picklable<F>,
                  "mp::Pool: the function cannot be pickled for the worker processes (a capturing "
                  "lambda or a function object without serialize()); pass the captured values "
                  "as arguments, use a free function or a captureless lambda, or give the "
                  "function object a serialize() member");
    static_assert(pickle::picklable<Item>, "mp::Pool: the items cannot be pickled");
    if constexpr (Star)
      static_assert(
          requires(F & f, Item & item) { std::apply(f, item); },
          "mp::ProcessPoolExecutor::map: the function cannot be called with one item of "
          "each range");
    else
      static_assert(std::is_invocable_v<F&, Item&>,
                    "mp::Pool::imap: the function cannot be called with an item of the range");
    using Result = detail::map_value_t<F, Item, Star>;
    static_assert(pickle::picklable<Result>, "mp::Pool: the function's result cannot be pickled");
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
        return std::make_shared<Feeder>(
            Feeder{&items, {}, false, std::move(fn), chunksize, nullptr});
      else
        return std::make_shared<Feeder>(
            Feeder{Range(std::forward<R>(items)), {}, false, std::move(fn), chunksize, nullptr});
    }();
    auto feed = [feeder](std::string& input) {
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
      input = pickle::dumps(std::tuple<F, std::vector<Item>>(feeder->fn, std::move(part)));
      return true;
    };
    auto state = std::make_shared<detail::IMapState>(
        ordered, buffersize, std::move(feed),
        detail::trampoline_ref<&detail::pool_map_call<F, Item, Star>>());
    state->fill(*core_, state);
    return IMapIterator<Result>(core_, state);
  }

  friend class ProcessPoolExecutor;
  std::shared_ptr<detail::PoolCore> core_;
};

}  // namespace mp
