// mp::Pool's worker handler: see pool_workers.hpp.
#include "pool_workers.hpp"

#include <poll.h>

#include <mp/logging.hpp>

#include "pool_channel.hpp"
#include "posix/socket.hpp"

namespace mp::detail {

void WorkerHandler::start_worker() {
  WorkerLaunch launch;
  launch.number = ++worker_counter_;
  launch.start_method = state_.options.start_method;
  launch.initializer = state_.options.initializer;
  launch.maxtasksperchild = state_.options.maxtasksperchild;
  auto worker = std::make_unique<WorkerSlot>();
  worker->link = state_.transport->start(launch);
  worker->pid = worker->link->pid();
  state_.workers.push_back(std::move(worker));
}

void WorkerHandler::reap(WorkerSlot& w, Completions& done) {
  collect_replies(state_, w, done);
  const std::optional<int> exitcode = w.link->exitcode();
  const std::uint64_t claimed = w.link->claimed();
  const bool initialized = w.link->initialized();
  const bool terminated = state_.run_state == PoolRunState::terminated;
  std::deque<PoolTask> again;
  for (auto& in : w.inflight) {
    if (in.seq >= claimed && !terminated) {
      again.push_back(std::move(in.task));
      continue;
    }
    std::exception_ptr error;
    if (terminated)
      error = std::make_exception_ptr(BrokenProcessPool("mp::Pool: the pool was terminated"));
    else if (w.timed_out_seq == in.seq)
      error = std::make_exception_ptr(TimeoutError("mp::Pool: task exceeded task_timeout; worker " +
                                                   std::to_string(w.pid) + " was killed"));
    else
      error = std::make_exception_ptr(WorkerLostError(w.pid, exitcode));
    if (!terminated && get_logger().is_enabled_for(LogLevel::warning))
      get_logger().warning("pool worker " + std::to_string(w.pid) + " died running a task (" +
                           describe_exitcode(exitcode) + "); it will be replaced");
    PoolState::fail(in.task, error, done);
  }
  w.inflight.clear();
  if (!initialized && !state_.broken && !terminated && !w.stop_sent) {
    state_.set_broken("a worker of the pool died in its initializer (pid " + std::to_string(w.pid) +
                          ", " + describe_exitcode(exitcode) + ")",
                      done);
  }
  if (state_.broken) {
    auto error = std::make_exception_ptr(BrokenProcessPool(*state_.broken));
    for (auto& task : again) PoolState::fail(task, error, done);
  } else {
    for (auto it = again.rbegin(); it != again.rend(); ++it)
      state_.pending.push_front(std::move(*it));
  }
  w.dead = true;
}

void WorkerHandler::check_liveness(Completions& done) {
  std::vector<pollfd> fds;
  for (auto& w : state_.workers) fds.push_back({w->link->ended_fd(), POLLIN, 0});
  int ready = 0;
  if (posix::poll_until(fds, std::chrono::nanoseconds(0), ready) || ready == 0) return;
  for (std::size_t i = 0; i < fds.size(); ++i)
    if (fds[i].revents && !state_.workers[i]->dead) reap(*state_.workers[i], done);
}

std::optional<RunningTask> WorkerHandler::timed_task(const WorkerSlot& w) const {
  if (w.dead || w.timed_out_seq || w.inflight.empty()) return std::nullopt;
  auto running = w.link->running_task();
  if (!running || running->seq != w.inflight.front().seq) return std::nullopt;
  return running;
}

void WorkerHandler::check_timeouts(Clock::time_point now) {
  if (!state_.options.task_timeout) return;
  for (auto& w : state_.workers) {
    const auto running = timed_task(*w);
    if (running && now - running->since >= *state_.options.task_timeout) {
      w->timed_out_seq = running->seq;
      w->link->kill();
    }
  }
}

std::optional<std::chrono::nanoseconds> WorkerHandler::next_timeout(Clock::time_point now) const {
  if (!state_.options.task_timeout) return std::nullopt;
  std::chrono::nanoseconds wait = *state_.options.task_timeout;
  for (auto& w : state_.workers) {
    if (const auto running = timed_task(*w))
      wait = std::min(wait, std::chrono::duration_cast<std::chrono::nanoseconds>(
                                running->since + *state_.options.task_timeout - now));
  }
  return std::max(wait, std::chrono::nanoseconds(std::chrono::milliseconds(1)));
}

bool WorkerHandler::need_more_workers() const {
  if (state_.broken || state_.run_state == PoolRunState::terminated) return false;
  if (state_.run_state == PoolRunState::closed && state_.pending.empty()) return false;
  return static_cast<int>(state_.workers.size()) < state_.options.processes;
}

void WorkerHandler::maintain(Completions& done) {
  std::erase_if(state_.workers, [](const std::unique_ptr<WorkerSlot>& w) { return w->dead; });
  while (need_more_workers()) {
    try {
      start_worker();
    } catch (...) {
      state_.set_broken(
          "mp::Pool: cannot start a worker: " + pool_wire::describe_current_exception().message,
          done);
    }
  }
  scheduler_.dispatch();
  if (state_.run_state == PoolRunState::closed && state_.pending.empty()) {
    for (auto& w : state_.workers) {
      if (w->dead || w->stop_sent || !w->inflight.empty()) continue;
      if (w->link->send_stop()) w->stop_sent = true;
    }
  }
}

}  // namespace mp::detail
