// Private to mp: the parent's state of one mp::Pool, shared by its roles under one
// mutex: the scheduler (pool_scheduler.cpp: which worker gets which task), the worker
// handler (pool_workers.cpp: starting, reaping and replacing workers) and the result
// loop (pool_result_loop.cpp: the thread that collects replies and delivers outcomes).
// Workers are reached only through the transport seam (pool_transport.hpp).
#pragma once

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <exception>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include <mp/detail/pool_core.hpp>
#include <mp/errors.hpp>

#include "pool_transport.hpp"

namespace mp::detail {

// A task waiting for a worker, or handed to one.
struct PoolTask {
  std::shared_ptr<JobSink> sink;
  std::uint64_t index = 0;
  const std::string* trampoline = nullptr;
  PoolBytes input;
};

struct InFlight {
  std::uint64_t seq = 0;
  PoolTask task;
};

// A task's outcome, delivered to its sink outside the mutex.
struct Completion {
  std::shared_ptr<JobSink> sink;
  std::uint64_t index;
  PoolBytes result;
  std::exception_ptr error;
};
using Completions = std::vector<Completion>;

// The scheduler's view of one worker.
struct WorkerSlot {
  std::unique_ptr<WorkerLink> link;
  int pid = 0;
  std::deque<InFlight> inflight;  // in seq order
  std::uint64_t next_seq = 0;
  bool stop_sent = false;
  std::optional<std::uint64_t> timed_out_seq;  // the task it was killed for
  bool dead = false;                           // reaped; removed by the worker handler
};

enum class PoolRunState { running, closed, terminated };

// Run time of recent tasks (written under the mutex, read anywhere): decides how many
// tasks a worker is handed at once and whether waiting threads spin.
class TaskTimer {
 public:
  static constexpr double kSpinWorthNs = 50000;  // spinning pays for tasks shorter than this

  bool short_tasks() const { return average_ns_.load(std::memory_order_relaxed) < kSpinWorthNs; }
  double average_ns() const { return average_ns_.load(std::memory_order_relaxed); }
  void record(std::uint64_t ns) {
    average_ns_.store(
        0.8 * average_ns_.load(std::memory_order_relaxed) + 0.2 * static_cast<double>(ns),
        std::memory_order_relaxed);
  }
  // Tasks a worker is handed at once: about 200 µs of work, and at least eight. A
  // worker finishing a task then finds the next one waiting instead of idling until the
  // result thread wakes up to send more, and for a batched job it wakes that thread only
  // when fewer than two of its tasks wait (worker_main): once per six tasks at this
  // depth, where three (the least that keeps a worker fed) woke it every other task.
  // Each wake-up takes a CPU from a worker for a moment when the workers fill the
  // machine. A worker left idle takes the other workers' waiting tasks back (steal), so
  // queueing ahead costs no imbalance at a job's end.
  std::size_t depth() const {
    const double d = 200000.0 / std::max(average_ns_.load(std::memory_order_relaxed), 1.0);
    return static_cast<std::size_t>(std::clamp(d, kMinDepth, 256.0));
  }
  // The same for a worker on another machine, whose tasks cannot be taken back: tasks
  // queued there wait for it even when another worker is idle. So long tasks are handed
  // only what covers about a millisecond (a round trip to its rank, with room), at least
  // three (the next one and one more while the reply travels): when one worker is held
  // up, the others then finish the job without it.
  std::size_t remote_depth() const {
    const double ahead = 1e6 / std::max(average_ns_.load(std::memory_order_relaxed), 1.0);
    return std::min(depth(), static_cast<std::size_t>(std::max(ahead, kMinRemoteDepth)));
  }

 private:
  static constexpr double kMinDepth = 8;
  static constexpr double kMinRemoteDepth = 3;
  std::atomic<double> average_ns_{20000};
};

struct PoolState {
  PoolState(PoolCoreOptions pool_options, std::unique_ptr<WorkerTransport> workers_transport)
      : options(std::move(pool_options)), transport(std::move(workers_transport)) {}

  PoolCoreOptions options;
  std::unique_ptr<WorkerTransport> transport;
  mutable std::mutex mutex;
  std::vector<std::unique_ptr<WorkerSlot>> workers;
  std::deque<PoolTask> pending;
  PoolRunState run_state = PoolRunState::running;
  std::optional<std::string> broken;  // why the pool broke
  TaskTimer timing;
  std::vector<WorkerReply> replies;  // scratch of collect_replies

  // Breaks the pool (mutex held): every pending and in-flight task fails with
  // BrokenProcessPool(message), every worker is killed. Only the first call counts.
  void set_broken(std::string message, Completions& done) {
    if (broken) return;
    broken = std::move(message);
    auto error = std::make_exception_ptr(BrokenProcessPool(*broken));
    fail_pending(error, done);
    for (auto& w : workers) {
      for (auto& in : w->inflight) fail(in.task, error, done);
      w->inflight.clear();
      if (!w->dead) w->link->kill();
    }
  }
  void fail_pending(const std::exception_ptr& error, Completions& done) {
    for (auto& task : pending) fail(task, error, done);
    pending.clear();
  }
  static void fail(PoolTask& task, std::exception_ptr error, Completions& done) {
    task.input = {};
    done.push_back(Completion{std::move(task.sink), task.index, {}, std::move(error)});
  }
};

// Takes worker `w`'s replies and matches them to its tasks in flight (mutex held).
// Defined with the result loop.
void collect_replies(PoolState& state, WorkerSlot& w, Completions& done);

}  // namespace mp::detail
