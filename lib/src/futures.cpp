// mp::ProcessPoolExecutor's compiled-once parts: the state behind Future and the
// waiting of futures::wait / as_completed. The executor itself is mp::Pool's core.
#include <mp/futures.hpp>

#include <algorithm>
#include <iostream>

#include "help_wait.hpp"
#include "timed_wait.hpp"

namespace mp::detail {

void FutureState::Waiter::notify() {
  std::lock_guard lock(mutex);
  ++generation;
  changed.notify_all();
}

void FutureState::task_done(std::uint64_t, PoolBytes&& result) noexcept {
  std::unique_lock lock(mutex_);
  if (status_ == Status::finished || status_ == Status::cancelled) return;
  result_ = std::move(result);
  complete(lock, Status::finished);
}

void FutureState::task_failed(std::uint64_t, std::exception_ptr error) noexcept {
  std::unique_lock lock(mutex_);
  if (status_ == Status::finished || status_ == Status::cancelled) return;
  error_ = std::move(error);
  complete(lock, Status::finished);
}

void FutureState::set_cancelled() noexcept {
  std::unique_lock lock(mutex_);
  if (status_ == Status::finished || status_ == Status::cancelled) return;
  complete(lock, Status::cancelled);
}

// As Python's Future: the state changes and waiters wake, then the callbacks run.
void FutureState::complete(std::unique_lock<std::mutex>& lock, Status status) noexcept {
  status_ = status;
  auto callbacks = std::move(callbacks_);
  callbacks_.clear();
  auto waiters = waiters_;
  changed_.notify_all();
  lock.unlock();
  for (auto& waiter : waiters) waiter->notify();
  for (auto& callback : callbacks) {
    try {
      callback();
    } catch (const std::exception& e) {
      std::cerr << "mp::Future: exception in a done callback: " << e.what() << std::endl;
    } catch (...) {
      std::cerr << "mp::Future: exception in a done callback" << std::endl;
    }
  }
}

FutureState::Status FutureState::status() const {
  std::lock_guard lock(mutex_);
  return status_;
}

void FutureState::set_helper(std::function<HelpResult(bool done)> helper) {
  helper_ = std::move(helper);
}

bool FutureState::wait_for(std::optional<std::chrono::nanoseconds> timeout) const {
  const std::optional<posix::Deadline> deadline =
      timeout ? std::optional(posix::Deadline::after(*timeout)) : std::nullopt;
  help_within(helper_, timeout, [this] { return status() != Status::pending; });
  std::unique_lock lock(mutex_);
  auto done = [&] { return status_ != Status::pending; };
  if (!deadline) {
    changed_.wait(lock, done);
    return true;
  }
  return wait_until_deadline(changed_, lock, *deadline, done);
}

bool FutureState::running(const PoolCore* core) const {
  if (!core || status() != Status::pending) return false;
  if (!core->started(this, 0)) return false;
  return status() == Status::pending;  // not finished meanwhile
}

bool FutureState::cancel(PoolCore* core) {
  {
    std::lock_guard lock(mutex_);
    if (status_ == Status::cancelled) return true;
    if (status_ != Status::pending) return false;
  }
  // Not started yet: take it out of the pool's queue or back from its worker (it may
  // have started meanwhile; then cancel fails, as in Python).
  if (!core || !core->cancel(this, 0)) return false;
  set_cancelled();
  return true;
}

void FutureState::add_done_callback(std::function<void()> callback) {
  std::unique_lock lock(mutex_);
  if (status_ != Status::finished && status_ != Status::cancelled) {
    callbacks_.push_back(std::move(callback));
    return;
  }
  lock.unlock();
  callback();
}

void FutureState::add_waiter(const std::shared_ptr<Waiter>& waiter) {
  std::lock_guard lock(mutex_);
  waiters_.push_back(waiter);
}

void FutureState::remove_waiter(const Waiter* waiter) {
  std::lock_guard lock(mutex_);
  std::erase_if(waiters_, [&](const std::shared_ptr<Waiter>& w) { return w.get() == waiter; });
}

}  // namespace mp::detail

namespace mp {

void ProcessPoolExecutor::shutdown(bool wait, bool cancel_futures) {
  if (cancel_futures) {
    for (auto& [sink, index] : pool_.core_->take_pending()) {
      if (auto* state = dynamic_cast<detail::FutureState*>(sink.get()))
        state->set_cancelled();
      else  // a task of map(): fail it as Python's shutdown does
        sink->task_failed(index, std::make_exception_ptr(CancelledError(
                                     "mp::ProcessPoolExecutor: cancelled by shutdown()")));
    }
  }
  pool_.close();
  if (wait) pool_.join();
}

void ProcessPoolExecutor::terminate_workers() {
  shutdown(false, true);
  pool_.core_->terminate(false);
}

void ProcessPoolExecutor::kill_workers() {
  shutdown(false, true);
  pool_.core_->terminate(true);
}

namespace futures::detail_wait {

bool wait_states(const std::vector<std::shared_ptr<mp::detail::FutureState>>& states,
                 const std::function<bool()>& satisfied,
                 std::optional<std::chrono::nanoseconds> timeout) {
  const posix::Deadline deadline =
      timeout ? posix::Deadline::after(*timeout) : posix::Deadline::never();
  auto waiter = std::make_shared<mp::detail::FutureState::Waiter>();
  for (auto& state : states) state->add_waiter(waiter);
  bool ok = true;
  {
    std::unique_lock lock(waiter->mutex);
    for (;;) {
      const std::uint64_t seen = waiter->generation;
      lock.unlock();
      const bool now_satisfied = satisfied();
      lock.lock();
      if (now_satisfied) break;
      if (waiter->generation != seen) continue;
      if (!mp::detail::wait_until_deadline(waiter->changed, lock, deadline,
                                           [&] { return waiter->generation != seen; })) {
        lock.unlock();
        ok = satisfied();
        lock.lock();
        break;
      }
    }
  }
  for (auto& state : states) state->remove_waiter(waiter.get());
  return ok;
}

}  // namespace futures::detail_wait
}  // namespace mp
