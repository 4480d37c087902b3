// Private to mp: mp::Pool's worker handler: starts workers, notices the ones that
// ended (reaping: their unfinished tasks fail or run elsewhere), kills a worker whose
// task ran past task_timeout, replaces lost workers and stops idle ones once the pool
// is closed. Every method is called with the pool's mutex held.
#pragma once

#include <chrono>
#include <optional>

#include "pool_scheduler.hpp"
#include "pool_state.hpp"

namespace mp::detail {

class WorkerHandler {
 public:
  using Clock = std::chrono::steady_clock;

  WorkerHandler(PoolState& state, Scheduler& scheduler) : state_(state), scheduler_(scheduler) {}

  // Starts one more worker. Throws what starting a process throws.
  void start_worker();
  // Worker `w` has ended: collects its replies, fails the task it was running, queues
  // its other tasks again, and marks it dead.
  void reap(WorkerSlot& w, Completions& done);
  // Reaps the workers that ended, without waiting.
  void check_liveness(Completions& done);
  // Kills the workers whose task has run past task_timeout.
  void check_timeouts(Clock::time_point now);
  // How long until the next task could time out (nullopt: no task_timeout).
  std::optional<std::chrono::nanoseconds> next_timeout(Clock::time_point now) const;
  // Replaces lost workers, dispatches, and stops idle workers when closed.
  void maintain(Completions& done);

 private:
  // The task worker `w` runs now, if the parent still waits for it.
  std::optional<RunningTask> timed_task(const WorkerSlot& w) const;
  bool need_more_workers() const;

  PoolState& state_;
  Scheduler& scheduler_;
  int worker_counter_ = 0;
};

}  // namespace mp::detail
