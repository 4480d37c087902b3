// mp::Pool's untyped core, compiled once in lib/src/pool*.cpp: the pool the typed front
// ends (<mp/pool.hpp>, <mp/futures.hpp>) submit pickled tasks to, and the interface
// through which it reports their outcomes. Internal to mp. How tasks reach the workers
// (the transport) is not visible here.
#pragma once

#include <mp/detail/export.hpp>

#include <cstdint>
#include <exception>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <mp/detail/chrono.hpp>
#include <mp/detail/pool_bytes.hpp>

namespace mp::detail {

class WorkerTransport;  // how the pool reaches its workers: lib/src/pool_transport.hpp

// The worker side of one task: unpickles its input, runs it, appends the pickled result
// to `result`. Exceptions propagate (the worker reports them as RemoteError).
using PoolTrampoline = void (*)(std::string_view input, std::string& result);

// An initializer as a picklable value: a trampoline plus the pickled (function,
// arguments). Empty when `run` is null.
struct InitCall {
  InitCall() noexcept {}  // user-provided: GCC 12 otherwise warns on PoolOptions{...}
  InitCall(void (*run_fn)(std::string_view), std::string bound_call,
           const char* machine_local_part = nullptr)
      : run(run_fn), bound(std::move(bound_call)), machine_local(machine_local_part) {}
  void (*run)(std::string_view bound) = nullptr;
  std::string bound;
  // Not pickled: what in `bound` means something on this machine only (a handle to shared
  // memory, an fd), or null; a pool whose workers are on other machines refuses it.
  const char* machine_local = nullptr;
  template <class Archive>
  void serialize(Archive& ar) {
    ar(run, bound);
  }
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

  // Items of the input per task for a map (map, imap, starmap...), whose chunks are
  // all that long but the last; 0 for a single call (apply, submit).
  std::uint64_t items_per_task = 0;
  // Names task `index` for an error message: "map item 17" (`item` - 1 is the failed
  // item's position in the chunk; 0: unknown), or "the submitted call".
  std::string describe_task(std::uint64_t index, std::uint64_t item) const {
    if (items_per_task == 0) return "the submitted call";
    const std::uint64_t first = index * items_per_task;
    if (item != 0) return "map item " + std::to_string(first + item - 1);
    if (items_per_task == 1) return "map item " + std::to_string(first);
    return "the map chunk from item " + std::to_string(first);
  }
};

// Called by a map task in its worker when item `position` of its chunk throws.
MP_API void note_failed_item(std::uint64_t position) noexcept;

// One task to submit: the trampoline's pickled code reference (a string that lives as
// long as the program) and the pickled input.
struct PoolTaskInput {
  const std::string* trampoline;
  PoolBytes input;
};

// The untyped pool's options.
struct PoolCoreOptions {
  int processes = 0;
  InitCall initializer;
  std::uint64_t maxtasksperchild = 0;  // 0: unlimited
  std::string start_method;
  std::optional<std::chrono::nanoseconds> task_timeout;
};

// What a thread waiting on a result got from draining the pool's results itself.
enum class HelpResult {
  delivered,           // some results were delivered
  nothing_yet,         // none was there; worth spinning a little
  nothing_yet_remote,  // the same, with the workers on other machines: spin for a round trip
  not_worth_spinning,  // tasks run long, or the pool is gone: wait instead
};

// How long a waiter told nothing_yet_remote keeps helping: a short task's round trip to
// another machine is tens of microseconds (more where ranks share CPUs), and a reply
// that comes after the waiter went to sleep waits for a thread of the transport.
inline constexpr std::chrono::microseconds kRemoteHelpSpin{1000};

class MP_API PoolCore {
 public:
  // Starts options.processes workers on this machine (shared-memory rings).
  explicit PoolCore(PoolCoreOptions options);
  // The same with workers reached through `transport`.
  PoolCore(PoolCoreOptions options, std::unique_ptr<WorkerTransport> transport);
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
  // Whether the workers are on other machines (their tasks pickle in a
  // RemotePicklingScope).
  bool remote() const noexcept { return remote_; }
  // For a thread waiting on a result: helper(false) drains finished results without
  // waiting for the result thread (never blocks); while it is called, workers need not
  // wake that thread for each result. helper(true) ends the helping (may wait for the
  // pool's mutex): call it when done.
  std::function<HelpResult(bool done)> helper() const;
  // The pids of the current workers (for tests and diagnostics).
  std::vector<int> worker_pids() const;

 private:
  struct Impl;
  std::shared_ptr<Impl> impl_;
  bool remote_ = false;
};

}  // namespace mp::detail
