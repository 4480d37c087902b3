// The states behind mp::AsyncResult (ResultState) and mp::IMapIterator (IMapState),
// the byte buffers tasks and results travel in (PoolBytes), and the default chunk size:
// the parts of mp::Pool's front end compiled once (Python's ApplyResult, MapResult and
// IMapIterator).
#include <mp/detail/pool_results.hpp>

#include <algorithm>
#include <cstring>
#include <deque>
#include <iostream>
#include <map>

#include <mp/errors.hpp>

#include "help_wait.hpp"
#include "pool_channel.hpp"
#include "posix/futex.hpp"
#include "timed_wait.hpp"

namespace mp::detail {

// ---------------------------------------------------------------- ResultState

ResultState::ResultState(std::size_t tasks)
    : remaining_(tasks), batched_(tasks > 1), results_(tasks) {
  if (tasks == 0) {
    complete_ = ready_ = true;
    ready_flag_.store(true);
  }
}

void ResultState::task_done(std::uint64_t index, PoolBytes&& result) noexcept {
  std::unique_lock lock(mutex_);
  if (complete_ || index >= results_.size()) return;
  results_[index] = std::move(result);
  if (--remaining_ == 0) finish_locked(lock);
}

void ResultState::task_failed(std::uint64_t, std::exception_ptr error) noexcept {
  std::unique_lock lock(mutex_);
  if (complete_) return;
  error_ = std::move(error);
  results_.clear();
  finish_locked(lock);
}

// As Python's ApplyResult._set: the callback runs before the result becomes ready, so
// that get() returning means the callback has run.
void ResultState::finish_locked(std::unique_lock<std::mutex>& lock) noexcept {
  complete_ = true;
  auto callback = std::move(on_ready_);
  on_ready_ = nullptr;
  if (callback) {
    lock.unlock();
    try {
      callback();
    } catch (...) {
      const auto error = pool_wire::describe_current_exception();
      std::cerr << "mp::Pool: exception in a callback: " << error.type << ": " << error.message
                << std::endl;
    }
    lock.lock();
  }
  ready_ = true;
  ready_flag_.store(true, std::memory_order_release);
  changed_.notify_all();
}

bool ResultState::ready() const { return ready_flag_.load(std::memory_order_acquire); }

void ResultState::set_helper(std::function<HelpResult(bool done)> helper) {
  helper_ = std::move(helper);
}

void ResultState::wait() const {
  help_within(helper_, std::nullopt, [this] { return ready(); });
  std::unique_lock lock(mutex_);
  changed_.wait(lock, [&] { return ready_; });
}

bool ResultState::wait_for(std::chrono::nanoseconds timeout) const {
  const posix::Deadline deadline = posix::Deadline::after(timeout);
  help_within(helper_, timeout, [this] { return ready(); });
  std::unique_lock lock(mutex_);
  return wait_until_deadline(changed_, lock, deadline, [&] { return ready_; });
}

void ResultState::on_ready(std::function<void()> callback) {
  std::unique_lock lock(mutex_);
  if (!complete_) {
    on_ready_ = std::move(callback);
    return;
  }
  lock.unlock();
  callback();
}

// ---------------------------------------------------------------- IMapState

struct IMapState::Impl {
  bool ordered;
  std::size_t buffersize;
  std::function<bool(std::string&)> feed;
  const std::string* trampoline;
  std::mutex feed_mutex;  // the input is read by one consumer at a time

  std::mutex mutex;
  std::condition_variable changed;
  std::uint64_t submitted = 0;  // chunks handed to the pool
  std::uint64_t delivered = 0;  // chunks returned by next_chunk
  bool input_done = false;
  std::map<std::uint64_t, std::pair<PoolBytes, std::exception_ptr>> arrived;  // ordered
  std::deque<std::pair<PoolBytes, std::exception_ptr>> arrived_any;           // unordered
};

IMapState::IMapState(bool ordered, std::size_t buffersize,
                     std::function<bool(std::string& input)> feed, const std::string* trampoline)
    : impl_(std::make_shared<Impl>()) {
  impl_->ordered = ordered;
  impl_->buffersize = std::max<std::size_t>(buffersize, 1);
  impl_->feed = std::move(feed);
  impl_->trampoline = trampoline;
}

void IMapState::task_done(std::uint64_t index, PoolBytes&& result) noexcept {
  std::lock_guard lock(impl_->mutex);
  if (impl_->ordered)
    impl_->arrived[index] = {std::move(result), nullptr};
  else
    impl_->arrived_any.emplace_back(std::move(result), nullptr);
  impl_->changed.notify_all();
}

void IMapState::task_failed(std::uint64_t index, std::exception_ptr error) noexcept {
  std::lock_guard lock(impl_->mutex);
  if (impl_->ordered)
    impl_->arrived[index] = {PoolBytes(), std::move(error)};
  else
    impl_->arrived_any.emplace_back(PoolBytes(), std::move(error));
  impl_->changed.notify_all();
}

void IMapState::fill(PoolCore& core, const std::shared_ptr<JobSink>& self) {
  std::lock_guard feed_lock(impl_->feed_mutex);
  // As Python's imap: an exception of the input (or a pool that no longer takes tasks)
  // takes the next position, after the results before it, and ends the input.
  const auto fail_here = [&](std::uint64_t index, std::exception_ptr error) {
    task_failed(index, std::move(error));
    std::lock_guard lock(impl_->mutex);
    impl_->input_done = true;
  };
  for (;;) {
    std::uint64_t index;
    {
      std::lock_guard lock(impl_->mutex);
      if (impl_->input_done || impl_->submitted - impl_->delivered >= impl_->buffersize) return;
      index = impl_->submitted;
    }
    std::string input;
    bool more;
    try {
      more = impl_->feed(input);
    } catch (...) {
      {
        std::lock_guard lock(impl_->mutex);
        ++impl_->submitted;
      }
      fail_here(index, std::current_exception());
      return;
    }
    if (!more) {
      std::lock_guard lock(impl_->mutex);
      impl_->input_done = true;
      impl_->changed.notify_all();
      return;
    }
    {
      std::lock_guard lock(impl_->mutex);
      ++impl_->submitted;
    }
    std::vector<PoolTaskInput> tasks;
    tasks.push_back({impl_->trampoline, std::move(input)});
    try {
      core.submit(self, index, std::move(tasks));
    } catch (...) {
      fail_here(index, std::current_exception());
      return;
    }
  }
}

std::optional<PoolBytes> IMapState::next_chunk(PoolCore& core, const std::shared_ptr<JobSink>& self,
                                               std::optional<std::chrono::nanoseconds> timeout) {
  fill(core, self);
  std::pair<PoolBytes, std::exception_ptr> got;
  {
    std::unique_lock lock(impl_->mutex);
    auto available = [&] {
      if (impl_->ordered) {
        if (impl_->arrived.count(impl_->delivered)) return true;
      } else if (!impl_->arrived_any.empty()) {
        return true;
      }
      return impl_->input_done && impl_->delivered == impl_->submitted;
    };
    if (timeout) {
      if (!wait_for_timeout(impl_->changed, lock, *timeout, available))
        throw TimeoutError("mp::IMapIterator::next: timed out");
    } else {
      impl_->changed.wait(lock, available);
    }
    if (impl_->input_done && impl_->delivered == impl_->submitted) return std::nullopt;
    if (impl_->ordered) {
      auto it = impl_->arrived.find(impl_->delivered);
      got = std::move(it->second);
      impl_->arrived.erase(it);
    } else {
      got = std::move(impl_->arrived_any.front());
      impl_->arrived_any.pop_front();
    }
    ++impl_->delivered;
  }
  fill(core, self);
  if (got.second) std::rethrow_exception(got.second);
  return std::move(got.first);
}

// ---------------------------------------------------------------- PoolBytes

PoolBytes PoolBytes::copy_of(std::string_view bytes) {
  if (bytes.size() < kHeapFrom) return PoolBytes(std::string(bytes));
  return heap_copy(bytes);
}

PoolBytes PoolBytes::copy_of(std::string_view head, std::string_view tail) {
  const std::size_t size = head.size() + tail.size();
  if (size < kHeapFrom) {
    std::string bytes;
    bytes.reserve(size);
    bytes.append(head).append(tail);
    return PoolBytes(std::move(bytes));
  }
  const shared_ref block = heap_allocate_for_write(size);
  char* out = static_cast<char*>(heap_address(block));
  std::memcpy(out, head.data(), head.size());
  if (!tail.empty()) std::memcpy(out + head.size(), tail.data(), tail.size());
  return adopt(block, size);
}

PoolBytes PoolBytes::heap_copy(std::string_view bytes) {
  const shared_ref block = heap_allocate_for_write(bytes.size());
  std::memcpy(heap_address(block), bytes.data(), bytes.size());
  return adopt(block, bytes.size());
}

PoolBytes PoolBytes::adopt(shared_ref block, std::size_t size) noexcept {
  PoolBytes out;
  out.block_ = block;
  out.data_ = static_cast<const char*>(heap_address(block));
  out.size_ = size;
  return out;
}

PoolBytes::PoolBytes(PoolBytes&& other) noexcept
    : bytes_(std::move(other.bytes_)),
      block_(std::exchange(other.block_, std::nullopt)),
      data_(std::exchange(other.data_, nullptr)),
      size_(std::exchange(other.size_, 0)) {
  other.bytes_.clear();
}

PoolBytes& PoolBytes::operator=(PoolBytes&& other) noexcept {
  if (this != &other) {
    if (block_) heap_free(*block_);
    bytes_ = std::move(other.bytes_);
    other.bytes_.clear();
    block_ = std::exchange(other.block_, std::nullopt);
    data_ = std::exchange(other.data_, nullptr);
    size_ = std::exchange(other.size_, 0);
  }
  return *this;
}

PoolBytes::~PoolBytes() {
  if (block_) heap_free(*block_);
}

std::string_view PoolBytes::view() const noexcept {
  return block_ ? std::string_view(data_, size_) : std::string_view(bytes_);
}

void PoolBytes::move_to_heap() {
  if (!block_) *this = heap_copy(bytes_);
}

std::size_t default_chunksize(std::size_t length, int processes) noexcept {
  const std::size_t divisor = 4 * static_cast<std::size_t>(std::max(processes, 1));
  std::size_t chunksize = length / divisor;
  if (length % divisor) ++chunksize;
  return chunksize;
}

}  // namespace mp::detail
