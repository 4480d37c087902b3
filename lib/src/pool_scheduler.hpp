// Private to mp: mp::Pool's scheduler, which worker gets which task: dispatching
// pending tasks to the least loaded workers a run at a time, taking queued tasks back
// for an idle worker (stealing), cancelling and finding tasks. Every method is called
// with the pool's mutex held and never blocks.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <utility>
#include <vector>

#include "pool_state.hpp"

namespace mp::detail {

class Scheduler {
 public:
  // A steal can fail only because the busy worker has not claimed its first task yet;
  // no event would come to retry it, so the result loop looks again after this long.
  static constexpr std::chrono::nanoseconds kStealRetry = std::chrono::milliseconds(1);

  explicit Scheduler(PoolState& state) : state_(state) {}

  // Gives pending tasks to workers with room, then lets idle workers steal.
  void dispatch();
  // Whether an idle worker could take a queued task from a busy one.
  bool steal_possible() const;
  // Whether worker `w` may be handed more tasks at all (before depth limits).
  bool can_take_tasks(const WorkerSlot& w) const;

  // Removes task `index` of `sink` if no worker has started it; true if removed.
  bool cancel(const JobSink* sink, std::uint64_t index);
  // Whether a worker has started task `index` of `sink` (true once it has finished).
  bool started(const JobSink* sink, std::uint64_t index) const;
  // Removes every task no worker has started and returns them.
  std::vector<std::pair<std::shared_ptr<JobSink>, std::uint64_t>> take_pending();

 private:
  // How many pending tasks in a row `best` takes, as choosing the least loaded worker
  // for each task would give it (ties to the earlier worker).
  std::size_t run_for(std::size_t best, std::size_t max_depth) const;
  bool has_room(const WorkerSlot& w, std::size_t max_depth) const;
  // Hands the first `count` pending tasks to `w`; returns how many it took.
  std::size_t send_run(WorkerSlot& w, std::size_t count);
  bool steal();

  PoolState& state_;
  std::vector<OutgoingTask> outgoing_;
};

}  // namespace mp::detail
