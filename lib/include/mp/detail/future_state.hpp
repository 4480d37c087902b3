// The state behind mp::Future (<mp/futures.hpp>), compiled once in lib/src/futures.cpp.
// Internal to mp.
#pragma once

#include <mp/detail/export.hpp>

#include <condition_variable>
#include <cstdint>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string_view>
#include <vector>

#include <mp/detail/chrono.hpp>
#include <mp/detail/pool_core.hpp>

namespace mp::detail {

class MP_API FutureState : public JobSink {
 public:
  // Whether the task runs is asked of the pool (running()): its worker decides.
  enum class Status { pending, cancelled, finished };

  void task_done(std::uint64_t index, PoolBytes&& result) noexcept override;
  void task_failed(std::uint64_t index, std::exception_ptr error) noexcept override;

  Status status() const;
  // Whether a worker has started the task and it has not finished.
  bool running(const PoolCore* core) const;
  // Waits until finished or cancelled; false if `timeout` passed first.
  bool wait_for(std::optional<std::chrono::nanoseconds> timeout) const;
  // Lets waiters drain the pool's results themselves first (PoolCore::helper()). Set
  // before the task is submitted.
  void set_helper(std::function<HelpResult(bool done)> helper);
  // Marks the future cancelled if it is pending; true if it is (now) cancelled.
  bool cancel(PoolCore* core);
  // For a task taken back by shutdown(cancel_futures=true).
  void set_cancelled() noexcept;
  // After finished: the pickled result, or the error.
  std::string_view result_bytes() const noexcept { return result_.view(); }
  std::exception_ptr error() const noexcept { return error_; }
  // Runs `callback` when the future finishes or is cancelled (at once if it has).
  void add_done_callback(std::function<void()> callback);

  // A waiter of futures::wait / as_completed: notified on every completion.
  struct Waiter {
    std::mutex mutex;
    std::condition_variable changed;
    std::uint64_t generation = 0;
    void notify();
  };
  void add_waiter(const std::shared_ptr<Waiter>& waiter);
  void remove_waiter(const Waiter* waiter);

 private:
  void complete(std::unique_lock<std::mutex>& lock, Status status) noexcept;

  mutable std::mutex mutex_;
  mutable std::condition_variable changed_;
  Status status_ = Status::pending;
  PoolBytes result_;
  std::exception_ptr error_;
  std::vector<std::function<void()>> callbacks_;
  std::vector<std::shared_ptr<Waiter>> waiters_;
  std::function<HelpResult(bool done)> helper_;
};

}  // namespace mp::detail
