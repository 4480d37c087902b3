// The states behind mp::AsyncResult and mp::IMapIterator, compiled once in
// lib/src/pool_results.cpp. Internal to mp.
#pragma once

#include <mp/detail/export.hpp>

#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include <mp/detail/chrono.hpp>
#include <mp/detail/pool_core.hpp>

namespace mp::detail {

// The state of an AsyncResult: how many tasks are left, their pickled results, the
// first error.
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
  void set_helper(std::function<HelpResult(bool done)> helper);
  // After ready(): the pickled results, in task order (empty when error() is set).
  std::vector<PoolBytes>& results() noexcept { return results_; }
  std::exception_ptr error() const noexcept { return error_; }
  // Called once when the result becomes ready (in the result thread, or at once if
  // already ready). Exceptions it throws are reported on stderr.
  void on_ready(std::function<void()> callback);

 private:
  void finish_locked(std::unique_lock<std::mutex>& lock) noexcept;

  mutable std::mutex mutex_;
  mutable std::condition_variable changed_;
  std::size_t remaining_;
  const bool batched_;
  bool complete_ = false;  // results or error final; callbacks run before ready_
  bool ready_ = false;
  std::atomic<bool> ready_flag_{false};
  std::function<HelpResult(bool done)> helper_;
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

}  // namespace mp::detail
