// mp::Pool's result loop: see pool_result_loop.hpp.
#include "pool_result_loop.hpp"

#include <system_error>

#include "pool_channel.hpp"
#include "posix/futex.hpp"
#include "posix/socket.hpp"
#include "spin.hpp"

namespace mp::detail {

using SteadyClock = std::chrono::steady_clock;

void collect_replies(PoolState& state, WorkerSlot& w, Completions& done) {
  auto& replies = state.replies;
  replies.clear();
  w.link->receive(replies);
  for (WorkerReply& reply : replies) {
    if (reply.kind == WorkerReply::Kind::init_failed) {
      state.set_broken("the pool's initializer failed in worker " + std::to_string(w.pid) + ": " +
                           reply.error_type + (reply.error_message.empty() ? "" : ": ") +
                           reply.error_message,
                       done);
      continue;
    }
    // Replies come in task order.
    while (!w.inflight.empty() && w.inflight.front().seq < reply.seq) {
      // Cannot happen (every task gets exactly one reply), but never leave a task hanging.
      PoolState::fail(w.inflight.front().task,
                      std::make_exception_ptr(BrokenProcessPool("mp::Pool: result lost")), done);
      w.inflight.pop_front();
    }
    if (w.inflight.empty() || w.inflight.front().seq != reply.seq) continue;  // nobody waits
    InFlight in = std::move(w.inflight.front());
    w.inflight.pop_front();
    Completion c{std::move(in.task.sink), in.task.index, {}, nullptr};
    if (reply.kind == WorkerReply::Kind::result) {
      c.result = std::move(reply.result);
      state.timing.record(reply.run_ns);
    } else {
      c.error = std::make_exception_ptr(RemoteError(
          std::move(reply.error_type), std::move(reply.error_message),
          c.sink->describe_task(c.index, reply.error_item), std::move(reply.error_traceback)));
    }
    done.push_back(std::move(c));
  }
  replies.clear();
}

ResultLoop::ResultLoop(PoolState& state, Scheduler& scheduler, WorkerHandler& workers)
    : state_(state), scheduler_(scheduler), workers_(workers) {
  if (auto ec = posix::stream_pair(true, wake_read_, wake_write_))
    throw std::system_error(ec, "mp::Pool: socketpair");
}

void ResultLoop::wake() {
  if (wake_write_) (void)posix::write_all(wake_write_.get(), std::string_view("w", 1));
}

void ResultLoop::deliver(Completions& done) {
  for (auto& c : done) {
    if (c.error)
      c.sink->task_failed(c.index, c.error);
    else
      c.sink->task_done(c.index, std::move(c.result));
  }
  done.clear();
}

// An exception must never end the program from here. None is expected; should one
// escape a step all the same, it breaks the pool: every task fails with its message.
void ResultLoop::run() noexcept {
  for (;;) {
    try {
      run_loop();
      return;
    } catch (...) {
      auto error = pool_wire::describe_current_exception();
      Completions done;
      try {
        std::lock_guard lock(state_.mutex);
        state_.set_broken(
            "mp::Pool: the pool's result thread failed: " + error.type + ": " + error.message,
            done);
      } catch (...) {
      }
      deliver(done);
    }
  }
}

void ResultLoop::run_loop() {
  Completions done;
  auto last_liveness_check = SteadyClock::now();
  bool recent_progress = false;
  for (;;) {
    done.clear();
    bool finished = false;
    bool progress = false;
    {
      std::lock_guard lock(state_.mutex);
      for (auto& w : state_.workers)
        if (!w->dead) collect_replies(state_, *w, done);
      progress = !done.empty();
      const auto now = SteadyClock::now();
      if (now - last_liveness_check > std::chrono::milliseconds(2)) {
        last_liveness_check = now;
        workers_.check_liveness(done);
      }
      workers_.check_timeouts(now);
      workers_.maintain(done);
      finished =
          state_.workers.empty() && state_.run_state != PoolRunState::running &&
          (state_.pending.empty() || state_.broken || state_.run_state == PoolRunState::terminated);
      if (finished) {
        state_.fail_pending(
            std::make_exception_ptr(BrokenProcessPool(
                state_.broken ? *state_.broken : std::string("mp::Pool: the pool was terminated"))),
            done);
      }
    }
    deliver(done);
    if (finished) return;
    if (progress) {
      recent_progress = true;
      continue;
    }
    // Spin a little before sleeping while results are flowing: a pipelined worker
    // answers within microseconds.
    const bool any = recent_progress && state_.timing.short_tasks() && spin_for_replies();
    recent_progress = false;
    if (any) continue;
    sleep(done);
    deliver(done);
  }
}

// Only this thread changes `workers`, so it may read them without the mutex.
bool ResultLoop::spin_for_replies() const {
  return spin_until(
      [&] {
        for (auto& w : state_.workers)
          if (!w->dead && w->link->has_replies()) return true;
        return false;
      },
      kReplySpin);
}

HelpResult ResultLoop::help() {
  const HelpResult none =
      state_.transport->remote() ? HelpResult::nothing_yet_remote : HelpResult::nothing_yet;
  Completions done;
  {
    std::unique_lock lock(state_.mutex, std::try_to_lock);
    if (!lock) return none;
    for (auto& w : state_.workers)
      if (!w->dead) collect_replies(state_, *w, done);
    if (done.empty()) {
      if (!state_.timing.short_tasks()) return HelpResult::not_worth_spinning;
      if (sleeping_.load() && !muted_) {
        for (auto& w : state_.workers)
          if (!w->dead) w->link->mute();
        muted_ = true;
      }
      return none;
    }
    scheduler_.dispatch();
  }
  deliver(done);
  return HelpResult::delivered;
}

void ResultLoop::end_help() {
  bool ready = false;
  {
    std::lock_guard lock(state_.mutex);
    if (!muted_) return;
    muted_ = false;
    // Not sleeping any more: it arms the links again before it next sleeps.
    if (!sleeping_.load()) return;
    for (auto& w : state_.workers)
      if (!w->dead && !w->link->unmute()) ready = true;
  }
  if (ready) wake();
}

void ResultLoop::sleep(Completions& done) {
  fds_.clear();
  polled_.clear();
  std::optional<std::chrono::nanoseconds> timeout;
  {
    std::lock_guard lock(state_.mutex);
    fds_.push_back({wake_read_.get(), POLLIN, 0});
    muted_ = false;
    bool ready = false;
    for (auto& w : state_.workers) {
      if (w->dead) continue;
      if (!w->link->arm()) ready = true;
      polled_.push_back(w.get());
      fds_.push_back({w->link->ended_fd(), POLLIN, 0});
      fds_.push_back({w->link->reply_fd(), POLLIN, 0});
    }
    if (ready) {
      for (auto* w : polled_) w->link->disarm(false);
      return;
    }
    timeout = workers_.next_timeout(SteadyClock::now());
    if (scheduler_.steal_possible())
      timeout = std::min(timeout.value_or(Scheduler::kStealRetry), Scheduler::kStealRetry);
    sleeping_.store(true);
  }
  int count = 0;
  (void)posix::poll_until(fds_, timeout, count);
  sleeping_.store(false);
  std::lock_guard lock(state_.mutex);
  if (fds_[0].revents) {
    char buffer[64];
    std::size_t got = 0;
    (void)posix::read_some(wake_read_.get(), buffer, sizeof buffer, got);
  }
  for (std::size_t i = 0; i < polled_.size(); ++i) {
    WorkerSlot* w = polled_[i];
    const pollfd& replies = fds_[2 + 2 * i];
    w->link->disarm(replies.fd >= 0 && replies.revents);
    if (fds_[1 + 2 * i].revents && !w->dead) workers_.reap(*w, done);
  }
}

}  // namespace mp::detail
