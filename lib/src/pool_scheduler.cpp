// mp::Pool's scheduler: see pool_scheduler.hpp.
#include "pool_scheduler.hpp"

#include <algorithm>
#include <limits>

namespace mp::detail {

bool Scheduler::can_take_tasks(const WorkerSlot& w) const {
  const std::uint64_t max_tasks = state_.options.maxtasksperchild;
  return !w.dead && !w.stop_sent && !(max_tasks && w.next_seq >= max_tasks);
}

// A worker is never handed a task the transport's window or more after the oldest one
// it still holds (the shared-memory transport keeps per-task state in that many slots).
bool Scheduler::has_room(const WorkerSlot& w, std::size_t max_depth) const {
  if (!can_take_tasks(w) || w.inflight.size() >= max_depth) return false;
  return w.inflight.empty() || w.next_seq - w.inflight.front().seq < state_.transport->window();
}

std::size_t Scheduler::run_for(std::size_t best, std::size_t max_depth) const {
  const WorkerSlot& b = *state_.workers[best];
  std::size_t run = std::min(max_depth - b.inflight.size(), state_.pending.size());
  if (!b.inflight.empty())
    run = std::min<std::uint64_t>(
        run, state_.transport->window() - (b.next_seq - b.inflight.front().seq));
  if (const std::uint64_t max_tasks = state_.options.maxtasksperchild)
    run = std::min<std::uint64_t>(run, max_tasks - b.next_seq);
  for (std::size_t i = 0; i < state_.workers.size(); ++i) {
    const WorkerSlot& w = *state_.workers[i];
    if (i == best || !has_room(w, max_depth)) continue;
    // `best` stays the choice while its load is below w's (or equal, if w comes after).
    run = std::min(run, w.inflight.size() - b.inflight.size() + (i > best ? 1 : 0));
  }
  return std::max<std::size_t>(run, 1);
}

void Scheduler::dispatch() {
  if (state_.broken) return;
  const std::size_t max_depth =
      state_.transport->remote() ? state_.timing.remote_depth() : state_.timing.depth();
  while (!state_.pending.empty()) {
    std::size_t best = state_.workers.size();
    for (std::size_t i = 0; i < state_.workers.size(); ++i) {
      const WorkerSlot& w = *state_.workers[i];
      if (!has_room(w, max_depth)) continue;
      if (best == state_.workers.size() ||
          w.inflight.size() < state_.workers[best]->inflight.size())
        best = i;
    }
    if (best == state_.workers.size()) return;
    const std::size_t run = run_for(best, max_depth);
    if (send_run(*state_.workers[best], run) < run) return;  // its channel is full
  }
  if (steal()) dispatch();
}

std::size_t Scheduler::send_run(WorkerSlot& w, std::size_t count) {
  outgoing_.clear();
  for (std::size_t i = 0; i < count; ++i) {
    const PoolTask& task = state_.pending[i];
    // The job's tag (see worker_main): tasks of one batched job share it.
    const std::uint64_t job =
        task.sink->batched() ? reinterpret_cast<std::uintptr_t>(task.sink.get()) : 0;
    outgoing_.push_back(OutgoingTask{w.next_seq + i, job, task.trampoline, &task.input});
  }
  const std::size_t sent = w.link->send(outgoing_);
  for (std::size_t i = 0; i < sent; ++i) {
    w.inflight.push_back(InFlight{w.next_seq++, std::move(state_.pending.front())});
    state_.pending.pop_front();
  }
  return sent;
}

bool Scheduler::steal_possible() const {
  if (!state_.pending.empty() || state_.options.maxtasksperchild) return false;
  bool idle = false, queued = false;
  for (const auto& w : state_.workers) {
    idle = idle || (can_take_tasks(*w) && w->inflight.empty());
    queued = queued || (!w->dead && w->inflight.size() >= 2);
  }
  return idle && queued;
}

// With nothing pending and a worker idle, takes back a task that another worker has
// been sent but not started (it will skip it) and queues it again. Not with
// maxtasksperchild, which counts the tasks sent to each worker. True if it took one.
bool Scheduler::steal() {
  if (!steal_possible()) return false;
  for (auto& w : state_.workers) {
    if (w->dead || w->inflight.size() < 2) continue;
    // Only the task the worker would claim next, and only if it is not the first in
    // flight (that one is running, or about to: taking it would idle this worker).
    std::uint64_t next = w->link->claimed();
    if (w->inflight.front().seq < next) {
      // Tasks cancelled while queued (no longer in flight) may come first: claim them
      // in the worker's stead (it skips them) up to the next task in flight.
      auto ahead = std::find_if(w->inflight.begin() + 1, w->inflight.end(),
                                [&](const InFlight& in) { return in.seq >= next; });
      while (ahead != w->inflight.end() && next < ahead->seq && w->link->claim_instead(next))
        ++next;
    }
    for (auto it = w->inflight.begin() + 1; it != w->inflight.end(); ++it) {
      if (it->seq != next) continue;
      if (!w->link->claim_instead(next)) break;  // the worker claimed it meanwhile
      state_.pending.push_front(std::move(it->task));
      w->inflight.erase(it);
      return true;
    }
  }
  return false;
}

bool Scheduler::cancel(const JobSink* sink, std::uint64_t index) {
  for (auto it = state_.pending.begin(); it != state_.pending.end(); ++it) {
    if (it->sink.get() == sink && it->index == index) {
      state_.pending.erase(it);
      return true;
    }
  }
  for (auto& w : state_.workers) {
    if (w->dead) continue;
    for (auto it = w->inflight.begin(); it != w->inflight.end(); ++it) {
      if (it->task.sink.get() != sink || it->task.index != index) continue;
      if (!w->link->cancel(it->seq)) return false;  // it has started
      w->inflight.erase(it);
      return true;
    }
  }
  return false;
}

bool Scheduler::started(const JobSink* sink, std::uint64_t index) const {
  for (auto& task : state_.pending)
    if (task.sink.get() == sink && task.index == index) return false;
  for (auto& w : state_.workers) {
    if (w->dead) continue;
    for (auto& in : w->inflight)
      if (in.task.sink.get() == sink && in.task.index == index) return w->link->has_started(in.seq);
  }
  return true;  // neither waiting nor handed out: it ran, its outcome is on its way
}

std::vector<std::pair<std::shared_ptr<JobSink>, std::uint64_t>> Scheduler::take_pending() {
  std::vector<std::pair<std::shared_ptr<JobSink>, std::uint64_t>> out;
  for (auto& task : state_.pending) out.emplace_back(std::move(task.sink), task.index);
  state_.pending.clear();
  // And the tasks handed to workers that have not started them.
  for (auto& w : state_.workers) {
    if (w->dead) continue;
    std::erase_if(w->inflight, [&](InFlight& in) {
      if (!w->link->cancel(in.seq)) return false;
      out.emplace_back(std::move(in.task.sink), in.task.index);
      return true;
    });
  }
  return out;
}

}  // namespace mp::detail
