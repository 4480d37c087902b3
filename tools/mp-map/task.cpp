#include "task.hpp"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <exception>
#include <mutex>
#include <thread>

#include "functions.hpp"

namespace mp_map {
namespace {

// Ends this worker process when the item it runs takes longer than `limit`: a built-in
// function cannot be interrupted otherwise. The pool then reports the worker lost, and
// the parent fails that item (ItemSlot says which) and retries the others.
class Watchdog {
 public:
  explicit Watchdog(std::chrono::duration<double> limit)
      : limit_(std::chrono::ceil<Clock::duration>(limit)), thread_([this] { watch(); }) {}
  ~Watchdog() {
    {
      std::lock_guard guard(mutex_);
      stop_ = true;
    }
    changed_.notify_one();
    thread_.join();
  }
  Watchdog(const Watchdog&) = delete;
  Watchdog& operator=(const Watchdog&) = delete;

  void start_item() {
    {
      std::lock_guard guard(mutex_);
      deadline_ = Clock::now() + limit_;
    }
    changed_.notify_one();
  }

 private:
  using Clock = std::chrono::steady_clock;
  void watch() {
    std::unique_lock lock(mutex_);
    while (!stop_) {
      const Clock::time_point deadline = deadline_;
      if (deadline == Clock::time_point::max()) {
        changed_.wait(lock);
      } else if (changed_.wait_until(lock, deadline) == std::cv_status::timeout && !stop_ &&
                 deadline_ == deadline) {
        ::_exit(kTimedOutExit);
      }
    }
  }

  const Clock::duration limit_;
  std::mutex mutex_;
  std::condition_variable changed_;
  Clock::time_point deadline_ = Clock::time_point::max();
  bool stop_ = false;
  std::thread thread_;  // last: starts once the members above exist
};

}  // namespace

ChunkResult run_chunk(const Job& job, const Packed& items, const ItemSlot& slot) {
  ChunkResult result;
  // Outputs are mostly about as long as their items (up to a bound: a long item's output
  // is mostly short, and this is only a first guess).
  result.outputs.bytes.reserve(std::min<std::size_t>(items.view().size() * 2, 16 << 20));
  result.outputs.ends.reserve(items.size());
  const Function function = job.command ? nullptr : find_function(job.function);
  const std::optional<std::chrono::duration<double>> timeout =
      job.timeout ? std::optional<std::chrono::duration<double>>(*job.timeout) : std::nullopt;
  std::optional<Watchdog> watchdog;
  if (timeout && !job.command) watchdog.emplace(*timeout);
  Packed::Reader reader(items);
  for (std::size_t i = 0; i < items.size(); ++i) {
    const std::string_view item = reader.next();
    if (slot) slot->set_value(i + 1);
    if (watchdog) watchdog->start_item();
    try {
      result.outputs.push(job.command ? run(*job.command, item, timeout) : function(item));
    } catch (const std::exception& e) {
      result.outputs.push({});
      result.failed.push_back(i);
      result.errors.push_back(job.command ? e.what() : job.function + ": " + e.what());
    }
  }
  // The outputs are not shared: a handle must stay alive until its pickle is loaded,
  // and the worker drops its result as soon as the result is pickled.
  return result;
}

}  // namespace mp_map
