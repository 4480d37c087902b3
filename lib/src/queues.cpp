// The byte-level core of <mp/queues.hpp>: Python's multiprocessing/queues.py keeps
// pickles in a pipe fed by a thread; here they go straight into shared memory.
//
// Storage: a linked list of 32 KiB segments in the shared heap (queue_record.hpp has the
// record layout). Producers append records at the tail, consumers take them at the
// head; a segment that is used up is recycled (one spare) or freed. So an unbounded
// queue grows as needed and put() never waits for a reader. Pickles above 4 KiB go to
// an item block of their own, written before the put lock is taken (so producers copy
// large items in parallel) and referenced by a 16-byte record; a few freed item blocks
// are kept for reuse, so a stream of large items does not fault in fresh pages.
//
// Two robust mp::Locks, one for producers and one for consumers, so a producer never
// waits for a consumer (each side is a single-producer/single-consumer ring for the
// other). Items are exact FIFO.
//
// Crash consistency. Every change visible to the other side is committed by one atomic
// store after the data is written: a producer's store of `tail` (the record and any new
// segment are written before it), a consumer's store of `head`. A process killed before
// its commit changed nothing the others can see (it may leak the segment or item block
// it was filling: the heap is lock-free, see heap.cpp); one killed after it has put or
// got its item. The item counts that sit beside head and tail (put_count, got_count:
// qsize, maxsize, JoinableQueue) are the one place where two words change per
// operation; each side writes a journal first (the position it started from or goes to,
// the count it sets), and whoever takes a lock over from a dead owner (Lock::recovered())
// rolls that side's count forward or back to match its committed position. Each repair
// step is idempotent, so a repairer killed in turn leaves work the next one redoes.
//
// Waiting: a consumer with nothing to get spins briefly, then sleeps on the low half of
// `tail` (the word a producer's commit changes) after setting a "sleeping" flag; a
// producer reads the flag after its commit and only if it is set clears it and calls
// futex_wake (see Waiters). Producers waiting for room in a bounded queue do the same
// on `got_count`, and join() on the count of done tasks. All sleeps are in slices,
// after each of which the sleeper looks again (and checks for a dead lock owner), so a
// lost hint can cost at most a slice, never a hang.
#include <mp/queues.hpp>

#include <algorithm>
#include <array>
#include <atomic>
#include <bit>
#include <chrono>
#include <climits>
#include <cstring>
#include <exception>
#include <limits>
#include <new>
#include <span>
#include <stdexcept>
#include <string>

#include "heap_arena.hpp"
#include "identity.hpp"
#include "posix/futex.hpp"
#include "queue_record.hpp"
#include "spin.hpp"

namespace mp::detail {

std::atomic<void (*)(queue_step)> queue_step_hook{nullptr};

namespace {

void at_step(queue_step step) {
  if (auto* hook = queue_step_hook.load(std::memory_order_relaxed)) [[unlikely]]
    hook(step);
}

using namespace std::chrono_literals;
using namespace queue_layout;
using posix::Deadline;
using Clock = std::chrono::steady_clock;

constexpr std::uint64_t kNoJournal = ~std::uint64_t{0};
constexpr auto kSleepSlice = 200ms;
// Freed item blocks kept for reuse (at most this many, each at most this large: an idle
// queue holds at most 7 x 4 MiB). A reused block's pages are mapped already; a fresh one
// costs a page fault per 4 KiB, and freeing it to the heap returns its pages.
constexpr std::size_t kSpareBlocks = 7;
constexpr std::uint64_t kMaxSpareBlock = std::uint64_t{4} << 20;
constexpr std::size_t kBufferKeep = std::size_t{4} << 20;

std::uint32_t low_half(std::uint64_t word) { return static_cast<std::uint32_t>(word); }

// Each group on a cache line of its own (the heap aligns objects to 16 bytes only, so
// padding rather than alignas).
struct ProducerSide {  // written under the put lock
  std::atomic<std::uint64_t> tail;
  std::atomic<std::uint64_t> put_count;
  std::atomic<std::uint64_t> journal_from;  // the tail the last put started from
  std::atomic<std::uint64_t> journal_count;
  std::byte padding[32];
};
struct ConsumerSide {  // written under the get lock
  std::atomic<std::uint64_t> head;
  std::atomic<std::uint64_t> got_count;
  std::atomic<std::uint64_t> journal_to;  // the head the last get moved to
  std::atomic<std::uint64_t> journal_count;
  std::atomic<std::uint64_t> tail_seen;  // a tail read earlier (saves reading the producers' line)
  std::byte padding[24];
};
// 1 while someone may sleep: set by each sleeper before its last look, cleared by the
// first waker, which then wakes every sleeper (those that sleep on set it again). So a
// stream of puts makes one wake-up call per sleep, not one per put, and a sleeper that
// was killed costs one spare wake-up, not one per operation forever.
struct Waiters {
  std::atomic<std::uint32_t> getters;
  std::atomic<std::uint32_t> putters;
  std::atomic<std::uint32_t> joiners;
  std::byte padding[52];
};

void wake_all_if_sleeping(std::atomic<std::uint32_t>& sleeping,
                          const std::atomic<std::uint64_t>& word) {
  if (sleeping.load(std::memory_order_seq_cst) != 0 &&
      sleeping.exchange(0, std::memory_order_seq_cst) != 0)
    posix::futex_wake_low(word, INT_MAX);
}
struct Spares {
  std::atomic<std::uint64_t> segment;
  std::array<std::atomic<std::uint64_t>, kSpareBlocks> blocks;
};
static_assert(sizeof(ProducerSide) == 64 && sizeof(ConsumerSide) == 64 && sizeof(Waiters) == 64 &&
              sizeof(Spares) == 64);

}  // namespace

// JoinableQueue's consumers table: one row per process that got items, with how many
// of them it has not marked done. A row whose process ended with tasks > 0 tells join()
// that those tasks are lost. Rows are claimed by CAS of `owner` from 0 (or from an ended
// owner with no tasks); only the owner adds to its `tasks`.
constexpr int kConsumerRows = 64;
struct ConsumerRow {
  std::atomic<std::uint64_t> owner;  // owner id (identity.hpp); 0: free
  std::atomic<std::uint64_t> tasks;
};

struct queue_state {
  std::int64_t maxsize;  // <= 0: unbounded
  std::byte padding[56];
  ProducerSide producers;
  ConsumerSide consumers;
  Waiters waiters;
  Spares spares;
  std::atomic<std::uint64_t> done_count;  // JoinableQueue: task_done() calls (and written off)
  std::atomic<std::uint32_t> shut;        // 1 once shutdown() was called
  std::atomic<std::uint32_t> joinable;    // 1: a JoinableQueue (gets are counted per consumer)
  std::atomic<std::uint64_t> lost_count;  // tasks written off because their consumer ended
  std::atomic<std::int64_t> lost_pid;     // the last consumer whose tasks were written off
  ConsumerRow rows[kConsumerRows];
};

namespace {

queue_state& state_of(void* state) { return *static_cast<queue_state*>(state); }

// A deadline computed when first needed: the fast paths of put and get never wait, so
// they never read the clock.
class LazyDeadline {
 public:
  LazyDeadline(bool block, std::optional<std::chrono::nanoseconds> timeout)
      : block_(block), timeout_(timeout) {}
  const Deadline& get() {
    if (!deadline_)
      deadline_ = !block_    ? Deadline::after(0ns)
                  : timeout_ ? Deadline::after(*timeout_)
                             : Deadline::never();
    return *deadline_;
  }
  // What is left, for Lock::acquire (nullopt: forever; a non-blocking call waits for
  // the lock as long as it takes: it is held only briefly).
  std::optional<std::chrono::nanoseconds> remaining() {
    if (!block_ || !timeout_) return std::nullopt;
    const Deadline& deadline = get();
    const auto at =
        std::chrono::seconds(deadline.at->tv_sec) + std::chrono::nanoseconds(deadline.at->tv_nsec);
    return std::max<std::chrono::nanoseconds>(at - Clock::now().time_since_epoch(), 0ns);
  }

 private:
  bool block_;
  std::optional<std::chrono::nanoseconds> timeout_;
  std::optional<Deadline> deadline_;
};

// Takes `lock`: at once if it is free, else waiting as `deadline` allows.
bool acquire(Lock& lock, LazyDeadline& deadline) {
  return lock.acquire(false) || lock.acquire(true, deadline.remaining());
}

// Releases a held Lock when it goes out of scope (also when an exception passes).
class Held {
 public:
  explicit Held(Lock& lock) : lock_(&lock) {}
  Held(const Held&) = delete;
  Held& operator=(const Held&) = delete;
  ~Held() { release(); }
  void release() noexcept {
    if (lock_) std::exchange(lock_, nullptr)->release();
  }

 private:
  Lock* lock_;
};

// Rolls the producers' count back if the last put was killed after counting its item and
// before committing it. Under the put lock.
void repair_producers(queue_state& q) {
  auto& side = q.producers;
  const std::uint64_t count = side.journal_count.load(std::memory_order_acquire);
  if (side.journal_from.load(std::memory_order_acquire) ==
          side.tail.load(std::memory_order_acquire) &&
      side.put_count.load(std::memory_order_acquire) == count)
    side.put_count.store(count - 1, std::memory_order_release);
  side.journal_from.store(kNoJournal, std::memory_order_release);
}

// Rolls the consumers' count forward if the last get was killed after committing its new
// head and before counting. Under the get lock.
void repair_consumers(queue_state& q) {
  auto& side = q.consumers;
  const std::uint64_t count = side.journal_count.load(std::memory_order_acquire);
  if (side.journal_to.load(std::memory_order_acquire) ==
          side.head.load(std::memory_order_acquire) &&
      side.got_count.load(std::memory_order_acquire) != count)
    side.got_count.store(count, std::memory_order_release);
  side.journal_to.store(kNoJournal, std::memory_order_release);
  side.tail_seen.store(side.head.load(std::memory_order_relaxed), std::memory_order_relaxed);
}

// Takes `lock` unless a live process holds it (also taking it over from a dead owner),
// runs `repair` if it was taken over, and lets go. For waiters whose progress depends on
// the other side: a dead lock owner may have left a count one off.
template <class Repair>
void repair_if_owner_died(Lock& lock, Repair repair) {
  if (!lock.acquire(true, 0ns)) return;
  Held held(lock);
  if (lock.recovered()) repair();
}

}  // namespace

// ---- queue_core ----------------------------------------------------------------------

queue_core::queue_core(long maxsize) : shared_object(shared_kind::queue, sizeof(queue_state)) {
  attach();
  auto& q = state_of(state());
  q.maxsize = maxsize > 0 ? maxsize : 0;
  const shared_ref segment = heap_allocate(kSegmentSize);
  if (segment.arena != ref().arena) {
    heap_free(segment);
    throw std::logic_error("mp::Queue: the queue's arena is not this process's main arena");
  }
  new (arena_base_ + segment.offset) std::atomic<std::uint64_t>(0);
  const std::uint64_t start = position(segment.offset, kSegmentHeader);
  q.producers.tail.store(start, std::memory_order_relaxed);
  q.producers.journal_from.store(kNoJournal, std::memory_order_relaxed);
  q.consumers.head.store(start, std::memory_order_relaxed);
  q.consumers.tail_seen.store(start, std::memory_order_relaxed);
  q.consumers.journal_to.store(kNoJournal, std::memory_order_release);
}

void queue_core::attach() {
  Arena& arena = heap_main_arena();
  if (arena.id() != ref().arena)
    throw UnpicklingError("mp::Queue: the queue lives in a shared heap this process does not use");
  arena_base_ = arena.base();
  arena_size_ = arena.size();
}

namespace {

std::atomic<std::uint64_t>& next_of(std::byte* base, std::uint64_t segment) {
  return *std::launder(reinterpret_cast<std::atomic<std::uint64_t>*>(base + segment));
}

std::uint64_t allocate_in(std::uint64_t arena, std::size_t size) {
  const shared_ref ref = heap_allocate(size);
  if (ref.arena != arena) {
    heap_free(ref);
    throw std::logic_error("mp::Queue: the queue's arena is not this process's main arena");
  }
  return ref.offset;
}

// A fresh (or recycled) segment with no successor.
std::uint64_t take_segment(queue_state& q, std::byte* base, std::uint64_t arena) {
  std::uint64_t segment = q.spares.segment.exchange(0, std::memory_order_acquire);
  if (segment == 0) segment = allocate_in(arena, kSegmentSize);
  next_of(base, segment).store(0, std::memory_order_relaxed);
  return segment;
}

void recycle_segment(queue_state& q, std::uint64_t arena, std::uint64_t segment) {
  const std::uint64_t old = q.spares.segment.exchange(segment, std::memory_order_acq_rel);
  if (old != 0) heap_free({arena, old});
}

std::uint64_t block_capacity(std::byte* base, std::uint64_t block) {
  return load_u64(base + block);
}

// An item block of at least `length` bytes with `pickle` copied in.
std::uint64_t fill_block(queue_state& q, std::byte* base, std::uint64_t arena,
                         std::string_view pickle) {
  const std::uint64_t length = pickle.size();
  std::uint64_t block = 0;
  for (auto& spare : q.spares.blocks) {
    if (spare.load(std::memory_order_relaxed) == 0) continue;
    const std::uint64_t candidate = spare.exchange(0, std::memory_order_acquire);
    if (candidate == 0) continue;
    if (block_capacity(base, candidate) >= length) {
      block = candidate;
      break;
    }
    heap_free({arena, candidate});
  }
  if (block == 0) {
    // A whole power-of-two heap block (its 16-byte header included), so a reused block
    // fits items of up to twice the size.
    if (length > (std::uint64_t{1} << 62)) throw HeapExhausted(length, 0);
    const std::uint64_t request = std::bit_ceil(length + kBlockHeader + 16) - 16;
    block = allocate_in(arena, request);
    write_block_header(base + block, request - kBlockHeader, 0);
  }
  write_block_header(base + block, block_capacity(base, block), length);
  std::memcpy(base + block + kBlockHeader, pickle.data(), pickle.size());
  return block;
}

void recycle_block(queue_state& q, std::byte* base, std::uint64_t arena, std::uint64_t block) {
  if (block_capacity(base, block) <= kMaxSpareBlock) {
    for (auto& spare : q.spares.blocks) {
      std::uint64_t expected = 0;
      if (spare.load(std::memory_order_relaxed) == 0 &&
          spare.compare_exchange_strong(expected, block, std::memory_order_release))
        return;
    }
  }
  heap_free({arena, block});
}

// Gives an item block back if put() did not get to commit it.
class BlockGuard {
 public:
  BlockGuard(queue_state& q, std::byte* base, std::uint64_t arena, std::uint64_t block)
      : q_(q), base_(base), arena_(arena), block_(block) {}
  BlockGuard(const BlockGuard&) = delete;
  BlockGuard& operator=(const BlockGuard&) = delete;
  ~BlockGuard() {
    if (block_) recycle_block(q_, base_, arena_, block_);
  }
  void committed() { block_ = 0; }

 private:
  queue_state& q_;
  std::byte* base_;
  std::uint64_t arena_;
  std::uint64_t block_;
};

// What this thread's waits for room or items learned from their spins (spin.hpp).
thread_local SpinHistory queue_spin_history = 0;

// Waits until the queue has room; false if the deadline passed first.
bool wait_for_room(queue_state& q, Lock& get_lock, const Deadline& deadline) {
  const auto maxsize = static_cast<std::uint64_t>(q.maxsize);
  auto has_room = [&] {
    return q.producers.put_count.load(std::memory_order_acquire) -
                   q.consumers.got_count.load(std::memory_order_acquire) <
               maxsize ||
           q.shut.load(std::memory_order_acquire) != 0;  // the caller throws ShutDown
  };
  if (adaptive_spin_until(has_room, kQueueSpin, queue_spin_history)) return true;
  for (;;) {
    q.waiters.putters.store(1, std::memory_order_seq_cst);
    const std::uint64_t got = q.consumers.got_count.load(std::memory_order_seq_cst);
    const bool full = q.producers.put_count.load(std::memory_order_seq_cst) - got >= maxsize;
    std::error_code ec;
    if (full)
      ec =
          posix::futex_wait_low(q.consumers.got_count, low_half(got), deadline.capped(kSleepSlice));
    if (has_room()) return true;
    if (deadline.passed()) return false;
    if (ec == std::errc::timed_out) repair_if_owner_died(get_lock, [&] { repair_consumers(q); });
  }
}

// Waits until the tail moves past the head; false if the deadline passed first.
bool wait_for_items(queue_state& q, Lock& put_lock, const Deadline& deadline) {
  auto has_items = [&] {
    return q.consumers.head.load(std::memory_order_acquire) !=
               q.producers.tail.load(std::memory_order_acquire) ||
           q.shut.load(std::memory_order_acquire) != 0;  // the caller throws ShutDown if empty
  };
  if (adaptive_spin_until(has_items, kQueueSpin, queue_spin_history)) return true;
  for (;;) {
    q.waiters.getters.store(1, std::memory_order_seq_cst);
    const std::uint64_t head = q.consumers.head.load(std::memory_order_seq_cst);
    const std::uint64_t tail = q.producers.tail.load(std::memory_order_seq_cst);
    std::error_code ec;
    if (head == tail)
      ec = posix::futex_wait_low(q.producers.tail, low_half(tail), deadline.capped(kSleepSlice));
    if (has_items()) return true;
    if (deadline.passed()) return false;
    if (ec == std::errc::timed_out) repair_if_owner_died(put_lock, [&] { repair_producers(q); });
  }
}

// ---- JoinableQueue's consumers table ----

int first_row(detail::owner_id me) { return owner_pid(me) % kConsumerRows; }

// The calling process's row, claiming one if it has none; -1 if the table is full.
int consumer_row(queue_state& q, detail::owner_id me, bool claim) {
  const int start = first_row(me);
  for (int i = 0; i < kConsumerRows; ++i) {
    const int row = (start + i) % kConsumerRows;
    if (q.rows[row].owner.load(std::memory_order_acquire) == me) return row;
  }
  if (!claim) return -1;
  for (int i = 0; i < kConsumerRows; ++i) {
    const int row = (start + i) % kConsumerRows;
    std::uint64_t expected = 0;
    if (q.rows[row].owner.compare_exchange_strong(expected, me, std::memory_order_acq_rel))
      return row;
  }
  // Full: take over the row of a consumer that ended with nothing unfinished.
  for (int i = 0; i < kConsumerRows; ++i) {
    const int row = (start + i) % kConsumerRows;
    std::uint64_t owner = q.rows[row].owner.load(std::memory_order_acquire);
    if (q.rows[row].tasks.load(std::memory_order_acquire) == 0 && !detail::owner_alive(owner) &&
        q.rows[row].owner.compare_exchange_strong(owner, me, std::memory_order_acq_rel))
      return row;
  }
  return -1;
}

// Takes one task off `row` if it has any.
bool settle_one(ConsumerRow& row) {
  std::uint64_t tasks = row.tasks.load(std::memory_order_acquire);
  while (tasks > 0)
    if (row.tasks.compare_exchange_weak(tasks, tasks - 1, std::memory_order_acq_rel)) return true;
  return false;
}

// Adds up to `n` to the done count, never past the put count, and wakes join().
void add_done(queue_state& q, std::uint64_t n) {
  std::uint64_t done = q.done_count.load(std::memory_order_acquire);
  for (;;) {
    const std::uint64_t put = q.producers.put_count.load(std::memory_order_acquire);
    const std::uint64_t add = std::min(n, put > done ? put - done : 0);
    if (add == 0) return;
    if (q.done_count.compare_exchange_weak(done, done + add, std::memory_order_seq_cst)) break;
  }
  posix::futex_wake_low(q.done_count, INT_MAX);
}

// Writes off the tasks of a consumer that ended without marking them done (they never
// will be), counting them as done; returns whether it found one.
bool write_off_lost_tasks(queue_state& q) {
  for (auto& row : q.rows) {
    std::uint64_t tasks = row.tasks.load(std::memory_order_acquire);
    if (tasks == 0) continue;
    std::uint64_t owner = row.owner.load(std::memory_order_acquire);
    if (owner == 0 || detail::owner_alive(owner)) continue;
    while (tasks > 0 && !row.tasks.compare_exchange_weak(tasks, 0, std::memory_order_acq_rel)) {
    }
    if (tasks == 0) continue;  // another joiner wrote them off
    q.lost_pid.store(owner_pid(owner), std::memory_order_relaxed);
    q.lost_count.fetch_add(tasks, std::memory_order_seq_cst);
    row.owner.compare_exchange_strong(owner, 0, std::memory_order_acq_rel);
    add_done(q, tasks);
    return true;
  }
  return false;
}

// Frees what a queue owns when its last handle goes: the items still in it, its
// segments, its spares. Stops at anything corrupt (leaking the rest) rather than throw.
void finalize_queue(shared_ref ref, void* state) noexcept {
  try {
    auto& q = state_of(state);
    Arena& arena = heap_main_arena();
    if (arena.id() != ref.arena) return;
    std::byte* base = arena.base();
    const std::span<const std::byte> whole_arena(base, arena.size());
    std::uint64_t head = q.consumers.head.load(std::memory_order_acquire);
    const std::uint64_t tail = q.producers.tail.load(std::memory_order_acquire);
    // Bounded: a corrupt segment list could loop.
    for (std::size_t steps = 0;; ++steps) {
      const Step step = read_at(whole_arena, head, tail);
      if (step.kind == Step::empty) break;
      if (steps > arena.size() / kRecordHeader) return;
      if (step.kind == Step::corrupt) return;
      if (step.kind == Step::next_segment) heap_free({ref.arena, segment_of(head)});
      if (step.block_offset) heap_free({ref.arena, step.block_offset});
      head = step.new_head;
    }
    const std::uint64_t last = segment_of(tail);
    if (!segment_fits(whole_arena, last)) return;
    // A producer killed while adding a segment may have linked one past the tail.
    if (const std::uint64_t orphan = next_of(base, last).load(std::memory_order_acquire))
      heap_free({ref.arena, orphan});
    heap_free({ref.arena, last});
    if (const std::uint64_t spare = q.spares.segment.exchange(0)) heap_free({ref.arena, spare});
    for (auto& block : q.spares.blocks)
      if (const std::uint64_t spare = block.exchange(0)) heap_free({ref.arena, spare});
  } catch (...) {
    // corrupt: leak the rest
  }
}

[[maybe_unused]] const bool finalizer_registered = [] {
  set_shared_finalizer(shared_kind::queue, &finalize_queue);
  return true;
}();

}  // namespace

bool queue_core::put(std::string_view pickle, bool block,
                     std::optional<std::chrono::nanoseconds> timeout) {
  auto& q = state_of(state());
  if (q.shut.load(std::memory_order_acquire)) throw ShutDown();
  const std::uint64_t arena = ref().arena;
  LazyDeadline deadline(block, timeout);
  const bool external = pickle.size() > kMaxInline;
  const std::uint64_t item_block = external ? fill_block(q, arena_base_, arena, pickle) : 0;
  BlockGuard guard(q, arena_base_, arena, item_block);
  const std::size_t record_size =
      external ? kExternalRecordSize : inline_record_size(pickle.size());

  for (;;) {
    if (q.shut.load(std::memory_order_acquire)) throw ShutDown();
    if (!acquire(put_lock_, deadline)) return false;
    Held held(put_lock_);
    if (put_lock_.recovered()) repair_producers(q);
    auto& side = q.producers;
    const std::uint64_t count = side.put_count.load(std::memory_order_relaxed) + 1;
    if (q.maxsize > 0 && count - q.consumers.got_count.load(std::memory_order_acquire) >
                             static_cast<std::uint64_t>(q.maxsize)) {
      held.release();
      if (!block || !wait_for_room(q, get_lock_, deadline.get())) return false;
      continue;
    }
    const std::uint64_t tail = side.tail.load(std::memory_order_relaxed);
    std::uint64_t segment = segment_of(tail);
    std::size_t index = index_of(tail);
    if (index + record_size + kEndRecordSize > kSegmentSize) {
      const std::uint64_t next = take_segment(q, arena_base_, arena);  // may throw: no change yet
      write_end(arena_base_ + segment + index);
      next_of(arena_base_, segment).store(next, std::memory_order_release);
      segment = next;
      index = kSegmentHeader;
      at_step(queue_step::put_segment_linked);
    }
    std::byte* at = arena_base_ + segment + index;
    if (external)
      write_external(at, item_block);
    else
      write_inline(at, pickle);
    at_step(queue_step::put_written);
    // The journal, then the count, then the commit (see the top of this file).
    side.journal_count.store(count, std::memory_order_release);
    side.journal_from.store(tail, std::memory_order_release);
    at_step(queue_step::put_journaled);
    side.put_count.store(count, std::memory_order_release);
    at_step(queue_step::put_counted);
    side.tail.store(position(segment, index + record_size), std::memory_order_seq_cst);
    at_step(queue_step::put_committed);
    guard.committed();
    wake_all_if_sleeping(q.waiters.getters, side.tail);
    return true;
  }
}

bool queue_core::get(bool block, std::optional<std::chrono::nanoseconds> timeout, decoder decode,
                     void* context) {
  return take(block, timeout, decode, context, true);
}

bool queue_core::take(bool block, std::optional<std::chrono::nanoseconds> timeout, decoder decode,
                      void* context, bool track) {
  auto& q = state_of(state());
  const std::uint64_t arena = ref().arena;
  LazyDeadline deadline(block, timeout);
  const std::span<const std::byte> whole_arena(arena_base_, arena_size_);

  for (;;) {
    if (!acquire(get_lock_, deadline)) return false;
    Held held(get_lock_);
    if (get_lock_.recovered()) repair_consumers(q);
    auto& side = q.consumers;
    std::uint64_t head = side.head.load(std::memory_order_relaxed);
    for (;;) {
      std::uint64_t tail = side.tail_seen.load(std::memory_order_relaxed);
      if (head == tail) {
        tail = q.producers.tail.load(std::memory_order_acquire);
        side.tail_seen.store(tail, std::memory_order_relaxed);
        if (head == tail) break;  // empty
      }
      const Step step = read_at(whole_arena, head, tail);
      if (step.kind == Step::corrupt)
        throw UnpicklingError("mp::Queue: corrupt queue (an impossible record in shared memory)");
      const std::uint64_t got = side.got_count.load(std::memory_order_relaxed);
      if (step.kind == Step::next_segment) {
        side.journal_to.store(step.new_head, std::memory_order_release);
        side.journal_count.store(got, std::memory_order_release);
        side.head.store(step.new_head, std::memory_order_release);
        at_step(queue_step::get_next_segment);
        recycle_segment(q, arena, segment_of(head));
        head = step.new_head;
        continue;
      }
      std::exception_ptr error;
      try {
        decode(step.payload, context);
      } catch (...) {
        error = std::current_exception();
      }
      at_step(queue_step::get_decoded);
      const std::uint64_t new_head = step.new_head;
      side.journal_to.store(new_head, std::memory_order_release);
      side.journal_count.store(got + 1, std::memory_order_release);
      at_step(queue_step::get_journaled);
      side.head.store(new_head, std::memory_order_release);
      at_step(queue_step::get_committed);
      if (q.maxsize > 0) {  // producers may wait for room
        side.got_count.store(got + 1, std::memory_order_seq_cst);
        wake_all_if_sleeping(q.waiters.putters, side.got_count);
      } else {
        side.got_count.store(got + 1, std::memory_order_release);
      }
      at_step(queue_step::get_counted);
      if (track && q.joinable.load(std::memory_order_relaxed)) {
        const int row = consumer_row(q, current_owner_id(), true);
        if (row >= 0) q.rows[row].tasks.fetch_add(1, std::memory_order_acq_rel);
      }
      held.release();
      if (step.block_offset) recycle_block(q, arena_base_, arena, step.block_offset);
      if (error) std::rethrow_exception(error);
      return true;
    }
    held.release();
    if (q.shut.load(std::memory_order_acquire)) throw ShutDown();
    if (!block || !wait_for_items(q, put_lock_, deadline.get())) return false;
  }
}

std::int64_t queue_core::qsize() const noexcept {
  const auto& q = state_of(state());
  const std::uint64_t got = q.consumers.got_count.load(std::memory_order_acquire);
  const std::uint64_t put = q.producers.put_count.load(std::memory_order_acquire);
  return put >= got ? static_cast<std::int64_t>(put - got) : 0;
}

bool queue_core::empty() const noexcept {
  const auto& q = state_of(state());
  const std::uint64_t head = q.consumers.head.load(std::memory_order_acquire);
  return head == q.producers.tail.load(std::memory_order_acquire);
}

bool queue_core::full() const noexcept {
  const auto& q = state_of(state());
  return q.maxsize > 0 && qsize() >= q.maxsize;
}

long queue_core::maxsize() const noexcept { return static_cast<long>(state_of(state()).maxsize); }

void queue_core::make_joinable() noexcept {
  state_of(state()).joinable.store(1, std::memory_order_release);
}

void queue_core::task_done() {
  auto& q = state_of(state());
  std::uint64_t done = q.done_count.load(std::memory_order_relaxed);
  for (;;) {
    if (done >= q.producers.put_count.load(std::memory_order_acquire))
      throw std::invalid_argument("mp::JoinableQueue::task_done: called too many times");
    if (q.done_count.compare_exchange_weak(done, done + 1, std::memory_order_seq_cst,
                                           std::memory_order_relaxed))
      break;
  }
  // Settle the caller's own item, or else (an item another process got) someone's.
  const int own = consumer_row(q, current_owner_id(), false);
  if (own < 0 || !settle_one(q.rows[own]))
    for (auto& row : q.rows)
      if (settle_one(row)) break;
  wake_all_if_sleeping(q.waiters.joiners, q.done_count);
}

bool queue_core::join(std::optional<std::chrono::nanoseconds> timeout) {
  auto& q = state_of(state());
  const Deadline deadline = timeout ? Deadline::after(*timeout) : Deadline::never();
  const std::uint64_t lost_at_start = q.lost_count.load(std::memory_order_seq_cst);
  for (;;) {
    q.waiters.joiners.store(1, std::memory_order_seq_cst);
    const std::uint64_t done = q.done_count.load(std::memory_order_seq_cst);
    const bool finished = done >= q.producers.put_count.load(std::memory_order_seq_cst);
    std::error_code ec;
    if (!finished)
      ec = posix::futex_wait_low(q.done_count, low_half(done), deadline.capped(kSleepSlice));
    // Tasks lost while we waited (written off by us or another joiner) end the wait,
    // even if writing them off finished the count.
    const std::uint64_t lost = q.lost_count.load(std::memory_order_seq_cst);
    if (lost != lost_at_start)
      throw ConsumerLostError(static_cast<pid_t>(q.lost_pid.load(std::memory_order_relaxed)),
                              lost - lost_at_start);
    if (finished) return true;
    if (deadline.passed()) return false;
    if (ec == std::errc::timed_out) {
      repair_if_owner_died(put_lock_, [&] { repair_producers(q); });
      (void)write_off_lost_tasks(q);  // noticed at the top of the next round
    }
  }
}

std::uint64_t queue_core::unfinished_tasks() const noexcept {
  const auto& q = state_of(state());
  const std::uint64_t done = q.done_count.load(std::memory_order_acquire);
  const std::uint64_t put = q.producers.put_count.load(std::memory_order_acquire);
  return put > done ? put - done : 0;
}

void queue_core::shutdown(bool immediate) {
  auto& q = state_of(state());
  q.shut.store(1, std::memory_order_seq_cst);
  if (immediate) {
    // Drain what is queued, as Python does, counting each item as done for join().
    std::uint64_t removed = 0;
    const decoder discard = [](std::string_view, void*) {};
    try {
      while (take(false, std::nullopt, discard, nullptr, false)) ++removed;
    } catch (const ShutDown&) {
      // empty
    }
    if (q.joinable.load(std::memory_order_relaxed)) add_done(q, removed);
  }
  // Every sleeper looks again (and throws); unconditional, as its "sleeping" hint may
  // not be set yet. A sleeper that missed this wakes at the end of its slice.
  posix::futex_wake_low(q.producers.tail, INT_MAX);
  posix::futex_wake_low(q.consumers.got_count, INT_MAX);
  posix::futex_wake_low(q.done_count, INT_MAX);
}

bool queue_core::is_shutdown() const noexcept {
  return state_of(state()).shut.load(std::memory_order_acquire) != 0;
}

void throw_queue_closed(const char* what) {
  throw std::invalid_argument(std::string("mp::Queue::") + what + ": the queue is closed");
}

std::string& queue_buffer() noexcept {
  thread_local std::string buffer;
  return buffer;
}

void queue_buffer_trim(std::string& buffer) noexcept {
  if (buffer.capacity() > kBufferKeep) std::string().swap(buffer);
}

}  // namespace mp::detail
