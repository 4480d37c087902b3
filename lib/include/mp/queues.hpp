// Queues shared between processes. Mirrors Python's `multiprocessing.queues` (Queue,
// SimpleQueue, JoinableQueue) with `queue.Empty` / `queue.Full` as mp::Empty / mp::Full.
//
// A queue lives in mp's shared heap, like a Lock (see <mp/synchronize.hpp>); the classes
// here are handles to it. Copying a handle gives another reference to the same queue; a
// handle passes to children as a Process argument (fork and spawn) or inside any pickle,
// within one process tree. Items are pickled (mp::pickle) into shared memory.
//
// Differences from Python, on purpose:
//   - No feeder thread. put() pickles and stores the item in the calling thread: when
//     put() returns the item is in shared memory. So a child that put() and returned
//     can be joined before anyone reads its items (the classic Python deadlock of
//     "joining processes that use queues" cannot happen), and an item whose pickling
//     throws throws in put() instead of being printed and dropped by a feeder thread.
//     An unpicklable T is a compile-time error.
//   - An unbounded queue (maxsize <= 0) never blocks in put(), whatever the item sizes
//     (there is no pipe buffer to fill). Items may be of any size that fits the heap.
//   - join_thread() and cancel_join_thread() exist for porting and do nothing: there is no
//     thread to join, and nothing is lost when a process exits after put().
//   - close() closes this handle only: later put()/get() through it throw
//     std::invalid_argument (Python: ValueError "Queue is closed"); other handles and
//     processes go on using the queue.
//   - Robust: a process killed (even by SIGKILL) in the middle of put() or get() never
//     corrupts the queue or blocks the others; its item was put (or got) whole or not at
//     all. A get() that is killed after it took the item loses that item (as if it had
//     returned); one killed before that leaves the item for the next get(). The others
//     go on within about 25 ms (the lock owner-death check of <mp/synchronize.hpp>).
//   - qsize() is exact while nobody puts or gets (Python's is approximate, and raises on
//     macOS). get_nowait() takes the queue's internal lock even if another consumer holds
//     it briefly, so it throws mp::Empty only when the queue is empty (Python's may throw
//     Empty while another process is reading).
//   - JoinableQueue knows its consumers: join() throws mp::ConsumerLostError when a
//     process died holding items it got (Python's join() hangs forever), and has a
//     timeout and unfinished_tasks(). See JoinableQueue.
//   - shutdown(immediate) and mp::ShutDown follow Python 3.13's queue.Queue, across
//     processes.
//   - Timeouts are std::chrono durations; they never end early (absolute deadlines).
#pragma once

#include <mp/detail/export.hpp>

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

#include <mp/detail/chrono.hpp>
#include <mp/detail/heap.hpp>
#include <mp/errors.hpp>
#include <mp/pickle.hpp>
#include <mp/synchronize.hpp>

namespace mp {

namespace detail {

// The byte-level core of every queue, compiled once in lib/src/queues.cpp: a FIFO of
// pickles in the shared heap, with a put lock and a get lock (robust mp::Locks) so that
// producers and consumers do not contend with each other.
class MP_API queue_core : private shared_object {
 public:
  // maxsize <= 0: unbounded. Throws mp::HeapExhausted, std::system_error.
  explicit queue_core(long maxsize);

  // Appends `pickle`. block: wait while the queue is full, at most `timeout` (nullopt:
  // forever); else fail at once. Returns false if it did not fit in time.
  // Throws mp::HeapExhausted if the heap has no room for the item, mp::ShutDown.
  bool put(std::string_view pickle, bool block, std::optional<std::chrono::nanoseconds> timeout);

  // Removes the first item and calls decode(pickle, context) on it, the pickle still in
  // shared memory (the caller copies what it needs out). block and timeout as put().
  // Returns false if no item came in time. If decode throws, the item is removed anyway
  // and the exception passes on (as Python's get() when unpickling fails).
  // Throws mp::UnpicklingError if the queue's memory is corrupt, mp::ShutDown if the
  // queue is shut down and empty.
  using decoder = void (*)(std::string_view pickle, void* context);
  bool get(bool block, std::optional<std::chrono::nanoseconds> timeout, decoder decode,
           void* context);

  std::int64_t qsize() const noexcept;
  bool empty() const noexcept;
  bool full() const noexcept;
  long maxsize() const noexcept;

  // JoinableQueue: see there.
  void make_joinable() noexcept;
  void task_done();
  bool join(std::optional<std::chrono::nanoseconds> timeout);
  std::uint64_t unfinished_tasks() const noexcept;

  // Queue::shutdown: see there.
  void shutdown(bool immediate);
  bool is_shutdown() const noexcept;

  template <class Archive>
  void save_core(Archive& ar) const {
    save_ref(ar);
    ar(put_lock_, get_lock_);
  }
  template <class Archive>
  void load_core(Archive& ar) {
    load_ref(ar, shared_kind::queue);
    ar(put_lock_, get_lock_);
    attach();
  }

 private:
  void attach();  // caches the arena's address in this process

  Lock put_lock_;
  Lock get_lock_;
  // Removes one item as get() does; `track`: count it against the calling consumer.
  bool take(bool block, std::optional<std::chrono::nanoseconds> timeout, decoder decode,
            void* context, bool track);

  std::byte* arena_base_ = nullptr;  // where the queue's arena is mapped here
  std::size_t arena_size_ = 0;
};

// Throws std::invalid_argument: the queue handle was closed.
[[noreturn]] MP_API void throw_queue_closed(const char* what);

template <class T>
void queue_decode(std::string_view pickle, void* context) {
  *static_cast<std::optional<T>*>(context) = mp::pickle::loads<T>(pickle);
}

// The pickle of `item` in a per-thread buffer (no allocation per put for small items).
template <class T>
std::string_view queue_pickle(const T& item, std::string& buffer) {
  buffer.clear();
  mp::pickle::dump(item, buffer);
  return buffer;
}

MP_API std::string& queue_buffer() noexcept;
// Gives back the memory of a buffer that grew past what small items need.
MP_API void queue_buffer_trim(std::string& buffer) noexcept;

// What Queue and SimpleQueue share: the queue's state in mp's heap (shared by every
// handle), this handle's closed flag, close(), pickling, and putting and getting
// through this handle.
class queue_handle {
 public:
  // Closes this handle: later put()/get() through it throw std::invalid_argument. The
  // queue and every other handle are unaffected; items put are not lost. Python: close().
  void close() noexcept { closed_ = true; }

  // Pickles as a reference to the same queue (a closed handle loads open).
  template <class Archive>
  void save(Archive& ar) const {
    core_.save_core(ar);
  }
  // Loads a handle to the queue saved (open, whatever the saved handle's state). Throws
  // mp::UnpicklingError if the bytes do not name a live queue.
  template <class Archive>
  void load(Archive& ar) {
    core_.load_core(ar);
    closed_ = false;
  }

 protected:
  // A new queue (maxsize <= 0: unbounded). Throws mp::HeapExhausted, std::system_error.
  explicit queue_handle(long maxsize) : core_(maxsize) {}

  // Pickles `item` and puts it; returns false if there was no room in time. Throws
  // std::invalid_argument after close(), and what queue_core::put and pickling throw.
  template <class T>
  bool put_item(const T& item, bool block, std::optional<std::chrono::nanoseconds> timeout) {
    if (closed_) throw_queue_closed("put");
    std::string& buffer = queue_buffer();
    const std::string_view pickle = queue_pickle(item, buffer);
    const bool done = core_.put(pickle, block, timeout);
    queue_buffer_trim(buffer);
    return done;
  }
  // Removes and loads the first item; nullopt if none came in time. Throws
  // std::invalid_argument after close(), and what queue_core::get and loading throw.
  template <class T>
  std::optional<T> get_item(bool block, std::optional<std::chrono::nanoseconds> timeout) {
    if (closed_) throw_queue_closed("get");
    std::optional<T> item;
    (void)core_.get(block, timeout, &queue_decode<T>, &item);
    return item;
  }

  // The queue's state; JoinableQueue turns on its task counting.
  queue_core core_;

 private:
  bool closed_ = false;
};

}  // namespace detail

// A FIFO queue of T shared between processes. Python: Queue(maxsize=0).
// T: anything mp::pickle accepts (a compile-time error otherwise).
template <class T>
class Queue : public detail::queue_handle {
 public:
  // maxsize <= 0: unbounded (put never blocks). Throws mp::HeapExhausted,
  // std::system_error.
  explicit Queue(long maxsize = 0) : queue_handle(maxsize) {}

  // Puts `item`, waiting while the queue is full (bounded queues only) at most
  // `timeout` (nullopt: forever); block = false: fail at once. Pickles in the caller.
  // Throws mp::Full if there was no room in time, what pickling `item` throws,
  // mp::HeapExhausted, std::invalid_argument after close(), mp::ShutDown after
  // shutdown() (also when it comes while put() waits for room).
  // Python: Queue.put(obj, block=True, timeout=None).
  void put(const T& item, bool block = true,
           std::optional<std::chrono::nanoseconds> timeout = std::nullopt) {
    if (!put_item(item, block, timeout)) throw Full();
  }
  // put(item, true, timeout). Throws mp::Full when the timeout passes.
  void put(const T& item, std::chrono::nanoseconds timeout) { put(item, true, timeout); }
  // put(item, false): throws mp::Full at once if the queue is full. Python: put_nowait.
  void put_nowait(const T& item) { put(item, false); }

  // Removes and returns the first item, waiting for one at most `timeout` (nullopt:
  // forever); block = false: at once. Throws mp::Empty if none came in time,
  // mp::UnpicklingError (the item is consumed) or what T's load throws,
  // std::invalid_argument after close(), mp::ShutDown once the queue is shut down and
  // empty (also when that happens while get() waits). Python: Queue.get(block=True,
  // timeout=None).
  T get(bool block = true, std::optional<std::chrono::nanoseconds> timeout = std::nullopt) {
    std::optional<T> item = get_item<T>(block, timeout);
    if (!item) throw Empty();
    return std::move(*item);
  }
  // get(true, timeout). Throws mp::Empty when the timeout passes.
  T get(std::chrono::nanoseconds timeout) { return get(true, timeout); }
  // get(false): throws mp::Empty at once if the queue is empty. Python: get_nowait.
  T get_nowait() { return get(false); }

  // The number of items in the queue (exact when no put or get is under way). Never
  // blocks. Python: qsize().
  std::int64_t qsize() const noexcept { return core_.qsize(); }
  // Python: empty(), full(). Never block.
  bool empty() const noexcept { return core_.empty(); }
  // Whether a bounded queue holds maxsize items (a snapshot, as empty()); always false
  // for an unbounded one. Never blocks. Python: full().
  bool full() const noexcept { return core_.full(); }
  // The maxsize given at construction (<= 0: unbounded).
  long maxsize() const noexcept { return core_.maxsize(); }

  // Shuts the queue down for every process: put() throws mp::ShutDown from now on, and
  // get() once the queue is empty; every put() and get() waiting now wakes (within
  // 200 ms) to do so. immediate: also removes every item now in the queue (counting each
  // as done for JoinableQueue::join, which then returns), so get() throws at once.
  // Cannot be undone. Never blocks for long (takes the get lock to drain).
  // Python 3.13: Queue.shutdown(immediate=False) (queue.Queue's semantics).
  void shutdown(bool immediate = false) { core_.shutdown(immediate); }
  // Whether shutdown() was called, by any process. Never blocks. Python: is_shutdown.
  bool is_shutdown() const noexcept { return core_.is_shutdown(); }

  // close(), save() and load(): see detail::queue_handle.

  // Do nothing: there is no feeder thread (see the top of this header). Kept so that
  // Python code ports line by line. Python: join_thread(), cancel_join_thread().
  void join_thread() noexcept {}
  // Does nothing, as join_thread(). Python: cancel_join_thread().
  void cancel_join_thread() noexcept {}
};

// A queue whose consumers report each item done, and whose join() waits until all are.
// Python: JoinableQueue(maxsize=0).
//
// It knows its consumers: each get() counts the item against the process that got it,
// and task_done() settles it. A consumer that ends without settling its items (killed,
// crashed, or its target threw) can never do so, so join() throws mp::ConsumerLostError
// within about 200 ms instead of waiting forever (Python's hangs). A consumer that may
// fail on an item and live on calls task_done() in its error path too:
//     for (;;) {
//       Task task = tasks.get();
//       try { handle(task); } catch (const std::exception& e) { report(e); }
//       tasks.task_done();
//     }
// task_done() is meant for the process that got the item; called by another one, it
// settles some other consumer's item. Up to 64 consumers at a time are followed (a
// consumer whose items are all done gives its row up when it ends); the rest are not.
template <class T>
class JoinableQueue : public Queue<T> {
 public:
  // As Queue(maxsize), with no unfinished task. Throws mp::HeapExhausted,
  // std::system_error. Python: JoinableQueue(maxsize=0).
  explicit JoinableQueue(long maxsize = 0) : Queue<T>(maxsize) { this->core_.make_joinable(); }

  // Marks one item (got earlier by any process) as processed. Throws
  // std::invalid_argument if called more times than items were put (Python: ValueError
  // "task_done() called too many times"). Never blocks.
  void task_done() { this->core_.task_done(); }
  // Waits until task_done() was called once for every item ever put. Throws
  // mp::ConsumerLostError if a consumer ended without calling task_done() for the items
  // it got (see above). Python: join().
  void join() { (void)this->core_.join(std::nullopt); }
  // As join(), waiting at most `timeout`: returns false if tasks were still unfinished
  // then. Python has no timeout here.
  bool join(std::chrono::nanoseconds timeout) { return this->core_.join(timeout); }
  // Items put and not yet marked done (whether still queued or being processed). A
  // snapshot; never blocks. Python: the private JoinableQueue._unfinished_tasks.
  std::uint64_t unfinished_tasks() const noexcept { return this->core_.unfinished_tasks(); }
};

// A simpler, unbounded queue. Python: SimpleQueue() (put, get, empty, close).
template <class T>
class SimpleQueue : public detail::queue_handle {
 public:
  // Throws mp::HeapExhausted, std::system_error.
  SimpleQueue() : queue_handle(0) {}

  // Appends `item`; never blocks. Throws what pickling throws, mp::HeapExhausted,
  // std::invalid_argument after close().
  void put(const T& item) { (void)put_item(item, true, std::nullopt); }
  // Removes and returns the first item, waiting as long as it takes. Throws as
  // Queue::get.
  T get() { return std::move(*get_item<T>(true, std::nullopt)); }
  // Never blocks.
  bool empty() const noexcept { return core_.empty(); }

  // close(), save() and load(): as Queue's (see detail::queue_handle).
};

}  // namespace mp
