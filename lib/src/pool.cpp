// mp::Pool's compiled-once core: per-worker channels in the shared heap, the worker
// loop, the parent's result thread, and the result states behind AsyncResult and
// IMapIterator.
//
// Transport. Each worker has its own channel, a block of the shared heap holding two
// single-producer single-consumer byte rings: tasks (parent -> worker) and results
// (worker -> parent). A record is a 24-byte header (size, kind, task sequence number,
// aux) and its payload, never split across the ring's end (a padding record fills the
// tail instead). Records larger than kInlineMax travel out of line in a heap block named
// by the record. The producer publishes a record by advancing `head` (release); the
// consumer frees space by advancing `tail`. Nobody sleeps while there is work: a
// consumer spins briefly, then sets `sleeping`, re-checks, and sleeps; the producer,
// after publishing, wakes it only if that flag was set (a futex wake for the worker; a
// byte on the worker's doorbell socket for the parent, which polls doorbells and the
// workers' pidfds together). So a busy pipeline makes no system calls at all.
//
// Crash consistency. A channel belongs to one worker and the parent; nobody else
// touches it, and it is freed only after the worker has been reaped. A record is visible
// only once complete, so a worker killed while writing leaves nothing half-read. Before
// it runs task number s, the worker claims it by advancing `started` from s to s + 1
// (compare-and-swap: the parent may have advanced it first to take the task back for
// an idle worker, and the worker then skips it). When the worker's pidfd becomes
// readable the parent drains the complete results, fails every task below `started`
// that has no result (exactly the task the worker was running) with WorkerLostError,
// and queues the rest again for the other workers.
#include <mp/pool.hpp>

#include <cxxabi.h>
#include <malloc.h>
#include <poll.h>
#include <signal.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <deque>
#include <iostream>
#include <map>
#include <thread>

#include <mp/connection.hpp>
#include <mp/context.hpp>
#include <mp/detail/heap.hpp>
#include <mp/process.hpp>

#include "posix/fd.hpp"
#include "posix/futex.hpp"
#include "posix/signal.hpp"
#include "posix/socket.hpp"
#include "timed_wait.hpp"

namespace mp::detail {
namespace {

using Clock = std::chrono::steady_clock;

constexpr std::size_t kRingSize = 256 * 1024;             // per direction, a power of two
constexpr std::size_t kInlineMax = PoolBytes::kHeapFrom;  // larger payloads go out of line

enum class Kind : std::uint32_t {
  padding = 1,
  task,         // payload: u32 trampoline size, trampoline pickle, input pickle
  task_blob,    // payload: BlobRef of the same bytes
  stop,         // the worker exits
  result,       // payload: the pickled result; aux: run time in ns
  result_blob,  // payload: BlobRef
  error,        // payload: u32 type size, type name, message
  init_failed,  // payload: as error
  error_blob,   // payload: BlobRef of an error's payload (a long message)
  init_failed_blob,
};

struct FrameHeader {
  std::uint32_t size;
  Kind kind;
  std::uint64_t seq;
  std::uint64_t aux;
};
static_assert(sizeof(FrameHeader) == 24);

struct BlobRef {
  shared_ref ref;
  std::uint64_t size;
};

struct alignas(64) RingControl {
  alignas(64) std::atomic<std::uint64_t> head{0};  // written by the producer
  std::atomic<std::uint32_t> data_seq{0};          // futex: bumped to wake the consumer
  std::atomic<std::uint32_t> consumer_sleeping{0};
  alignas(64) std::atomic<std::uint64_t> tail{0};  // written by the consumer
  std::atomic<std::uint32_t> space_seq{0};         // futex: bumped to wake the producer
  std::atomic<std::uint32_t> producer_sleeping{0};
};

// A task's state word in its channel, slot seq % kStateSlots: seq * 4 + one of these.
// The parent writes `queued` before it publishes the task; the worker moves it to
// `running` before it starts the task, the parent to `cancelled` to take it back: one
// compare-and-swap each, so a task either starts or is cancelled, never both. A worker
// is never handed a task kStateSlots or more after the oldest one it still holds, so
// no two of its unfinished tasks share a slot.
constexpr std::size_t kStateSlots = 512;
constexpr std::uint64_t kQueued = 1, kRunning = 2, kCancelled = 3;
constexpr std::uint64_t task_state(std::uint64_t seq, std::uint64_t state) {
  return seq * 4 + state;
}

struct Channel {
  RingControl tasks;
  RingControl results;
  // Tasks claimed by the worker or taken back by the parent: the next task's sequence
  // number. Each side advances it from s to s + 1 by compare-and-swap, so task s is
  // either run or taken back, never both.
  alignas(64) std::atomic<std::uint64_t> started{0};
  std::atomic<std::uint64_t> running{0};    // the running task's sequence number + 1
  std::atomic<std::int64_t> started_ns{0};  // steady clock, of the last start
  std::atomic<std::uint32_t> initialized{0};
  alignas(64) std::atomic<std::uint64_t> task_states[kStateSlots]{};
  alignas(64) char task_data[kRingSize];
  char result_data[kRingSize];
};

constexpr std::size_t align8(std::size_t n) { return (n + 7) & ~std::size_t{7}; }

// One direction of a channel, seen by either side.
class Ring {
 public:
  Ring(RingControl& control, char* data) : control_(control), data_(data) {}

  // Appends a record made of `parts` if it fits now. Never blocks.
  bool try_write(Kind kind, std::uint64_t seq, std::uint64_t aux,
                 std::initializer_list<std::string_view> parts) {
    std::size_t size = 0;
    for (auto part : parts) size += part.size();
    const std::size_t need = align8(sizeof(FrameHeader) + size);
    std::uint64_t head = control_.head.load(std::memory_order_relaxed);
    const std::uint64_t tail = control_.tail.load(std::memory_order_acquire);
    std::size_t pos = head & (kRingSize - 1);
    std::size_t padding = 0;
    if (pos + need > kRingSize) padding = kRingSize - pos;
    if (head + padding + need - tail > kRingSize) return false;
    if (padding) {
      FrameHeader pad{static_cast<std::uint32_t>(padding - sizeof(FrameHeader)), Kind::padding, 0,
                      0};
      if (padding >= sizeof(FrameHeader)) {
        std::memcpy(data_ + pos, &pad, sizeof pad);
      }
      head += padding;
      pos = 0;
    }
    FrameHeader header{static_cast<std::uint32_t>(size), kind, seq, aux};
    std::memcpy(data_ + pos, &header, sizeof header);
    char* out = data_ + pos + sizeof header;
    for (auto part : parts) {
      std::memcpy(out, part.data(), part.size());
      out += part.size();
    }
    control_.head.store(head + need, std::memory_order_release);
    return true;
  }

  // Whether the consumer asked to be woken (clears the request). Call after a write.
  bool consumer_wants_wake() {
    std::atomic_thread_fence(std::memory_order_seq_cst);
    return control_.consumer_sleeping.load(std::memory_order_relaxed) != 0 &&
           control_.consumer_sleeping.exchange(0) != 0;
  }
  void futex_wake_consumer() {
    control_.data_seq.fetch_add(1);
    posix::futex_wake(control_.data_seq, 1);
  }

  bool empty() const {
    return control_.tail.load(std::memory_order_relaxed) ==
           control_.head.load(std::memory_order_acquire);
  }

  // The next record, if any (skipping padding). The payload stays valid until consume().
  bool peek(FrameHeader& header, std::string_view& payload) {
    const std::uint64_t tail = control_.tail.load(std::memory_order_relaxed);
    std::uint64_t at = tail;
    if (!record_at(at, header)) return false;
    if (at != tail) control_.tail.store(at, std::memory_order_release);  // past padding
    payload = std::string_view(data_ + (at & (kRingSize - 1)) + sizeof header, header.size);
    next_tail_ = at + align8(sizeof(FrameHeader) + header.size);
    return true;
  }
  // Consumer: how many of the next records (at most `limit`) carry `aux`, from the
  // first on, not counting records numbered below `min_seq`.
  std::size_t queued_of(std::uint64_t aux, std::size_t limit, std::uint64_t min_seq) const {
    std::uint64_t at = control_.tail.load(std::memory_order_relaxed);
    std::size_t count = 0;
    FrameHeader header;
    while (count < limit && record_at(at, header)) {
      at += align8(sizeof(FrameHeader) + header.size);
      if (header.seq < min_seq) continue;
      if (header.aux != aux) break;
      ++count;
    }
    return count;
  }

  void consume() {
    control_.tail.store(next_tail_, std::memory_order_release);
    std::atomic_thread_fence(std::memory_order_seq_cst);
    if (control_.producer_sleeping.load(std::memory_order_relaxed) != 0 &&
        control_.producer_sleeping.exchange(0) != 0) {
      control_.space_seq.fetch_add(1);
      posix::futex_wake(control_.space_seq, 1);
    }
  }

  // Consumer: announce sleep; returns false (and cancels) if data arrived meanwhile.
  bool prepare_sleep(std::uint32_t& seq) {
    seq = control_.data_seq.load();
    control_.consumer_sleeping.store(1);
    std::atomic_thread_fence(std::memory_order_seq_cst);
    if (!empty()) {
      control_.consumer_sleeping.store(0);
      return false;
    }
    return true;
  }
  void cancel_sleep() { control_.consumer_sleeping.store(0); }

  // Consumer (futex side): waits until a record is there.
  void wait_data() {
    const auto spin_until = Clock::now() + std::chrono::microseconds(50);
    for (;;) {
      for (int i = 0; i < 256; ++i) {
        if (!empty()) return;
        posix::cpu_relax();
      }
      if (Clock::now() > spin_until) break;
    }
    while (empty()) {
      std::uint32_t seq;
      if (!prepare_sleep(seq)) return;
      (void)posix::futex_wait(control_.data_seq, seq, posix::Deadline::never());
      control_.consumer_sleeping.store(0);
    }
  }

  // Producer: waits until the consumer frees some space.
  void wait_space(std::uint64_t known_tail) {
    for (int i = 0; i < 4096; ++i) {
      if (control_.tail.load(std::memory_order_acquire) != known_tail) return;
      posix::cpu_relax();
    }
    for (;;) {
      const std::uint32_t seq = control_.space_seq.load();
      control_.producer_sleeping.store(1);
      std::atomic_thread_fence(std::memory_order_seq_cst);
      if (control_.tail.load(std::memory_order_acquire) != known_tail) {
        control_.producer_sleeping.store(0);
        return;
      }
      (void)posix::futex_wait(control_.space_seq, seq, posix::Deadline::never());
    }
  }
  std::uint64_t tail() const { return control_.tail.load(std::memory_order_acquire); }

 private:
  // Consumer: the header of the record at or after `at` (moved past padding), if the
  // producer has published one.
  bool record_at(std::uint64_t& at, FrameHeader& header) const {
    const std::uint64_t head = control_.head.load(std::memory_order_acquire);
    for (;;) {
      if (at == head) return false;
      const std::size_t pos = at & (kRingSize - 1);
      if (kRingSize - pos < sizeof(FrameHeader)) {  // a padding too small for a header
        at += kRingSize - pos;
        continue;
      }
      std::memcpy(&header, data_ + pos, sizeof header);
      if (header.kind != Kind::padding) return true;
      at += kRingSize - pos;
    }
  }

  RingControl& control_;
  char* data_;
  std::uint64_t next_tail_ = 0;
};

std::string demangle(const char* name) {
  int status = 0;
  char* out = abi::__cxa_demangle(name, nullptr, nullptr, &status);
  std::string text = status == 0 && out ? out : name;
  std::free(out);
  return text;
}

// The type name and message of the exception being handled.
std::pair<std::string, std::string> describe_current_exception() {
  std::string type = "unknown exception";
  if (auto* t = abi::__cxa_current_exception_type()) type = demangle(t->name());
  std::string message;
  try {
    throw;
  } catch (const std::exception& e) {
    message = e.what();
  } catch (...) {
  }
  return {type, message};
}

std::string encode_error(const std::pair<std::string, std::string>& error) {
  const auto size = static_cast<std::uint32_t>(error.first.size());
  std::string out(reinterpret_cast<const char*>(&size), sizeof size);
  out += error.first;
  out += error.second;
  return out;
}

// An error record's payload: in the record, or in the heap block it names (which is
// freed).
std::string error_payload(const FrameHeader& header, std::string_view payload) {
  if (header.kind != Kind::error_blob && header.kind != Kind::init_failed_blob)
    return std::string(payload);
  BlobRef blob;
  if (payload.size() < sizeof blob) return {};
  std::memcpy(&blob, payload.data(), sizeof blob);
  std::string out(static_cast<const char*>(heap_address(blob.ref)), blob.size);
  heap_free(blob.ref);
  return out;
}

std::pair<std::string, std::string> decode_error(std::string_view payload) {
  std::uint32_t size = 0;
  if (payload.size() < sizeof size) return {"unknown exception", ""};
  std::memcpy(&size, payload.data(), sizeof size);
  payload.remove_prefix(sizeof size);
  size = std::min<std::uint32_t>(size, static_cast<std::uint32_t>(payload.size()));
  return {std::string(payload.substr(0, size)), std::string(payload.substr(size))};
}

// ---------------------------------------------------------------- the worker

// Wakes the parent through its doorbell if it sleeps on `ring`.
void ring_doorbell(Ring& ring, Connection& doorbell) {
  if (ring.consumer_wants_wake())
    (void)posix::write_all(doorbell.fileno(), std::string_view("x", 1));
}

// Writes a result record, waiting for space if the parent is behind, and rings the
// parent's doorbell if it sleeps, unless `quiet` (see worker_main).
// Throws HeapExhausted for a result too large for the heap; never for an error (a
// long message that does not fit is cut, and says so).
void worker_write(Ring& ring, Connection& doorbell, Kind kind, std::uint64_t seq, std::uint64_t aux,
                  std::string_view payload, bool quiet = false) {
  std::string_view body = payload;
  BlobRef blob{};
  std::string cut;
  if (payload.size() > kInlineMax) {
    const Kind blob_kind = kind == Kind::result  ? Kind::result_blob
                           : kind == Kind::error ? Kind::error_blob
                                                 : Kind::init_failed_blob;
    try {
      blob.ref = heap_allocate(payload.size());
      blob.size = payload.size();
      std::memcpy(heap_address(blob.ref), payload.data(), payload.size());
      body = std::string_view(reinterpret_cast<const char*>(&blob), sizeof blob);
      kind = blob_kind;
    } catch (...) {
      if (kind == Kind::result) throw;
      const std::string mark =
          "... [cut: " + std::to_string(payload.size()) + " bytes in all; the shared heap is full]";
      cut = std::string(payload.substr(0, kInlineMax - mark.size())) + mark;
      body = cut;
    }
  }
  for (;;) {
    const std::uint64_t tail = ring.tail();
    if (ring.try_write(kind, seq, aux, {body})) break;
    ring_doorbell(ring, doorbell);  // only the parent can make room
    ring.wait_space(tail);
  }
  if (!quiet) ring_doorbell(ring, doorbell);
}

void worker_main(shared_ref channel_ref, Connection& doorbell, const InitCall& init,
                 std::uint64_t maxtasks) {
  // Ctrl-C goes to the whole process group: only the parent should react.
  posix::ignore_signal(SIGINT);
  // A worker decodes and encodes a chunk of up to a few MiB per task. With glibc's
  // defaults each such buffer is mmapped or trimmed away when freed, so every task
  // faults its buffers in afresh (half of pool_map_trivial's time). The worker is
  // ours: keep up to 64 MiB of freed memory for the next task instead.
  mallopt(M_MMAP_THRESHOLD, 32 << 20);
  mallopt(M_TRIM_THRESHOLD, 64 << 20);
  auto* channel = static_cast<Channel*>(heap_address(channel_ref));
  Ring tasks(channel->tasks, channel->task_data);
  Ring results(channel->results, channel->result_data);
  if (init.run) {
    try {
      init.run(init.bound);
    } catch (...) {
      worker_write(results, doorbell, Kind::init_failed, 0, 0,
                   encode_error(describe_current_exception()));
      return;
    }
  }
  channel->initialized.store(1);

  std::string cached_trampoline_bytes;
  PoolTrampoline cached_trampoline = nullptr;
  std::string result;
  std::uint64_t completed = 0;
  for (;;) {
    FrameHeader header;
    std::string_view payload;
    while (!tasks.peek(header, payload)) tasks.wait_data();
    if (header.kind == Kind::stop) return;
    std::uint64_t expected = header.seq;
    if (!channel->started.compare_exchange_strong(expected, header.seq + 1,
                                                  std::memory_order_acq_rel)) {
      tasks.consume();  // the parent took it back for an idle worker
      continue;
    }
    std::uint64_t queued = task_state(header.seq, kQueued);
    if (!channel->task_states[header.seq % kStateSlots].compare_exchange_strong(
            queued, task_state(header.seq, kRunning), std::memory_order_acq_rel)) {
      // Cancelled before it started. It counts as one of the worker's tasks: the parent
      // hands it no more than maxtasksperchild.
      tasks.consume();
      if (maxtasks != 0 && ++completed >= maxtasks) return;
      continue;
    }
    const auto start = Clock::now();
    channel->started_ns.store(start.time_since_epoch().count(), std::memory_order_relaxed);
    channel->running.store(header.seq + 1, std::memory_order_release);
    result.clear();
    Kind kind = Kind::result;
    try {
      std::uint32_t trampoline_size = 0;
      std::memcpy(&trampoline_size, payload.data(), sizeof trampoline_size);
      const std::string_view trampoline_bytes = payload.substr(4, trampoline_size);
      if (!cached_trampoline || trampoline_bytes != cached_trampoline_bytes) {
        cached_trampoline = pickle::loads<PoolTrampoline>(trampoline_bytes);
        cached_trampoline_bytes = trampoline_bytes;
      }
      std::string_view input = payload.substr(4 + trampoline_size);
      if (header.kind == Kind::task_blob) {  // the input is in a heap block
        BlobRef blob;
        std::memcpy(&blob, input.data(), sizeof blob);
        input = std::string_view(static_cast<const char*>(heap_address(blob.ref)), blob.size);
      }
      cached_trampoline(input, result);
    } catch (...) {
      result = encode_error(describe_current_exception());
      kind = Kind::error;
    }
    const auto elapsed = std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now() - start);
    // The input is no longer needed. A result of a job whose next two tasks are queued
    // here already need not wake the parent: nobody can use it before those finish, and
    // the parent will be woken while the last of them runs, in time to send more. Each
    // wake-up costs the workers a context switch on a busy machine.
    // Queued tasks the parent took back (sequence numbers below `started`) do not
    // count, and if it takes more back after the count, the parent is rung after all:
    // it may be asleep by then, and only this result's doorbell would wake it.
    const std::uint64_t job = header.aux;
    tasks.consume();
    const std::uint64_t started = channel->started.load(std::memory_order_acquire);
    const bool quiet = job != 0 && kind == Kind::result && tasks.queued_of(job, 2, started) >= 2;
    try {
      worker_write(results, doorbell, kind, header.seq, static_cast<std::uint64_t>(elapsed.count()),
                   result, quiet);
      if (quiet) {
        std::atomic_thread_fence(std::memory_order_seq_cst);  // pairs with prepare_sleep's
        if (channel->started.load(std::memory_order_relaxed) != started)
          ring_doorbell(results, doorbell);
      }
    } catch (...) {
      worker_write(results, doorbell, Kind::error, header.seq, 0,
                   encode_error(describe_current_exception()));
    }
    if (maxtasks != 0 && ++completed >= maxtasks) return;
  }
}

}  // namespace

// ---------------------------------------------------------------- the parent

struct PoolCore::Impl : std::enable_shared_from_this<PoolCore::Impl> {
  struct Task {
    std::shared_ptr<JobSink> sink;
    std::uint64_t index = 0;
    const std::string* trampoline = nullptr;
    PoolBytes input;
  };
  struct InFlight {
    std::uint64_t seq = 0;
    Task task;
  };
  struct Worker {
    Process process;
    shared_ref channel_ref{};
    Channel* channel = nullptr;
    Connection doorbell;
    bool doorbell_open = true;
    pid_t pid = 0;
    std::deque<InFlight> inflight;
    std::uint64_t next_seq = 0;
    bool stop_sent = false;
    bool killed_for_timeout = false;
    std::uint64_t timeout_seq = 0;
    bool dead = false;
    Ring tasks() { return Ring(channel->tasks, channel->task_data); }
  };
  struct Completion {
    std::shared_ptr<JobSink> sink;
    std::uint64_t index;
    PoolBytes result;
    std::exception_ptr error;
  };
  enum class State { running, closed, terminated };

  PoolCoreOptions options;
  mutable std::mutex mutex;
  std::vector<std::unique_ptr<Worker>> workers;
  std::deque<Task> pending;
  State state = State::running;
  std::optional<std::string> broken;
  std::thread result_thread;
  posix::unique_fd wake_read, wake_write;
  std::atomic<bool> thread_sleeping{false};
  // Run time of recent tasks (written under the mutex, read anywhere): decides how many
  // tasks a worker is handed at once and whether waiting threads spin.
  std::atomic<double> average_task_ns{20000};
  static constexpr double kSpinWorthNs = 50000;  // spinning pays for tasks shorter than this
  bool short_tasks() const {
    return average_task_ns.load(std::memory_order_relaxed) < kSpinWorthNs;
  }
  void record_task_time(std::uint64_t ns) {
    average_task_ns.store(
        0.8 * average_task_ns.load(std::memory_order_relaxed) + 0.2 * static_cast<double>(ns),
        std::memory_order_relaxed);
  }
  int worker_counter = 0;
  bool joined = false;

  // ---- starting workers (mutex held)
  void start_worker() {
    auto worker = std::make_unique<Worker>();
    // The heap aligns to 16 bytes; the rings want their own cache lines (64). Arenas are
    // mapped page-aligned, so an aligned offset is an aligned address in every process.
    worker->channel_ref = heap_allocate(sizeof(Channel) + alignof(Channel));
    shared_ref aligned = worker->channel_ref;
    aligned.offset = (aligned.offset + alignof(Channel) - 1) & ~std::uint64_t{alignof(Channel) - 1};
    // Default-initialized: the control words start at zero, the ring bytes are left as
    // they are (each is written before it is read), so a worker's 512 KiB of rings cost
    // nothing until used instead of being faulted in and cleared by the parent.
    worker->channel = new (heap_address(aligned)) Channel;
    auto [reader, writer] = Pipe(false);
    worker->doorbell = std::move(reader);
    const std::string method =
        options.start_method.empty() ? *get_start_method() : options.start_method;
    std::string name = (method == "spawn" ? "SpawnPoolWorker-" : "ForkPoolWorker-") +
                       std::to_string(++worker_counter);
    try {
      worker->process = Process(
          ProcessOptions{.name = name, .daemon = true, .start_method = method}, &worker_main,
          aligned, std::move(writer), options.initializer, options.maxtasksperchild);
      worker->process.start();
    } catch (const std::system_error& e) {
      heap_free(worker->channel_ref);
      // "mp: fork: <reason>" becomes "mp: starting ForkPoolWorker-3: fork: <reason>".
      std::string_view step = e.what();
      if (step.starts_with("mp: ")) step.remove_prefix(4);
      if (const auto reason = ": " + e.code().message(); step.ends_with(reason))
        step.remove_suffix(reason.size());
      throw std::system_error(e.code(), "mp: starting " + name + ": " + std::string(step));
    } catch (...) {
      heap_free(worker->channel_ref);
      throw;
    }
    worker->pid = worker->process.pid();
    workers.push_back(std::move(worker));
  }

  void wake_thread() {
    if (wake_write) (void)posix::write_all(wake_write.get(), std::string_view("w", 1));
  }

  // Tasks a worker is handed at once: about 200 µs of work, and at least eight. A
  // worker finishing a task then finds the next one waiting instead of idling until this
  // thread wakes up to send more, and for a batched job it wakes this thread only when
  // fewer than two of its tasks wait (worker_main): once per six tasks at this depth,
  // where three (the least that keeps a worker fed) woke it every other task. Each
  // wake-up takes a CPU from a worker for a moment when the workers fill the machine
  // (pool_map_cpu, 64 tasks of 0.5 ms on 2 CPUs: median speedup 1.85-1.89 at three,
  // 1.89-1.91 at eight, beside each other). A worker left idle takes the other workers'
  // waiting tasks back (steal()), so queueing ahead costs no imbalance at a job's end.
  static constexpr double kMinDepth = 8;
  std::size_t depth() const {
    const double d = 200000.0 / std::max(average_task_ns.load(std::memory_order_relaxed), 1.0);
    return static_cast<std::size_t>(std::clamp(d, kMinDepth, 256.0));
  }

  // Gives pending tasks to workers with room (mutex held). Never blocks.
  void dispatch() {
    if (broken) return;
    const std::size_t max_depth = depth();
    while (!pending.empty()) {
      Worker* best = nullptr;
      for (auto& w : workers) {
        if (!can_take_tasks(*w) || w->inflight.size() >= max_depth) continue;
        if (!w->inflight.empty() && w->next_seq - w->inflight.front().seq >= kStateSlots)
          continue;  // see kStateSlots
        if (!best || w->inflight.size() < best->inflight.size()) best = w.get();
      }
      if (!best) return;
      if (!send_task(*best, pending.front())) return;
      pending.pop_front();
    }
    if (steal()) dispatch();
  }

  static constexpr std::chrono::nanoseconds kStealRetry = std::chrono::milliseconds(1);
  bool steal_possible() const {
    if (!pending.empty() || options.maxtasksperchild) return false;
    bool idle = false, queued = false;
    for (const auto& w : workers) {
      idle = idle || (can_take_tasks(*w) && w->inflight.empty());
      queued = queued || (!w->dead && w->inflight.size() >= 2);
    }
    return idle && queued;
  }

  bool can_take_tasks(const Worker& w) const {
    return !w.dead && !w.stop_sent &&
           !(options.maxtasksperchild && w.next_seq >= options.maxtasksperchild);
  }

  // With nothing pending and a worker idle, takes back a task that another worker has
  // been sent but not started (it will skip it) and queues it again. Not with
  // maxtasksperchild, which counts the tasks sent to each worker. True if it took one.
  bool steal() {
    if (!steal_possible()) return false;
    for (auto& w : workers) {
      if (w->dead || w->inflight.size() < 2) continue;
      // Only the task the worker would claim next, and only if it is not the first in
      // flight (that one is running, or about to: taking it would idle this worker).
      std::uint64_t next = w->channel->started.load(std::memory_order_acquire);
      if (w->inflight.front().seq < next) {
        // Tasks cancelled while queued (no longer in flight) may come first: claim them
        // in the worker's stead (it skips them) up to the next task in flight.
        auto ahead = std::find_if(w->inflight.begin() + 1, w->inflight.end(),
                                  [&](const InFlight& in) { return in.seq >= next; });
        while (ahead != w->inflight.end() && next < ahead->seq &&
               w->channel->started.compare_exchange_strong(next, next + 1))
          ++next;
      }
      for (auto it = w->inflight.begin() + 1; it != w->inflight.end(); ++it) {
        if (it->seq != next) continue;
        if (!w->channel->started.compare_exchange_strong(next, next + 1))
          break;  // the worker claimed it meanwhile
        pending.push_front(std::move(it->task));
        w->inflight.erase(it);
        return true;
      }
    }
    return false;
  }

  // Cancels task `seq` of worker `w` if the worker has not started it (it will skip
  // it); the caller removes it from w.inflight. True if it was cancelled.
  static bool take_back(Worker& w, std::uint64_t seq) {
    std::uint64_t queued = task_state(seq, kQueued);
    return w.channel->task_states[seq % kStateSlots].compare_exchange_strong(
        queued, task_state(seq, kCancelled), std::memory_order_acq_rel);
  }

  // Whether a task's input is too large for a record of the ring.
  static bool travels_in_heap(std::size_t trampoline_size, std::size_t input_size) {
    return 4 + trampoline_size + input_size > kInlineMax;
  }

  bool send_task(Worker& w, Task& task) {
    Ring ring = w.tasks();
    const auto trampoline_size = static_cast<std::uint32_t>(task.trampoline->size());
    const std::string_view size_bytes(reinterpret_cast<const char*>(&trampoline_size), 4);
    const std::uint64_t seq = w.next_seq;
    // The job's tag (see worker_main): tasks of one batched job share it.
    const std::uint64_t job =
        task.sink->batched() ? reinterpret_cast<std::uintptr_t>(task.sink.get()) : 0;
    // A large input travels in its heap block (kept until the task's result arrives, and
    // sent again if the worker dies before starting it), which submit() allocated.
    // Published with the record (try_write's release store).
    w.channel->task_states[seq % kStateSlots].store(task_state(seq, kQueued),
                                                    std::memory_order_relaxed);
    bool written;
    if (const auto& block = task.input.block()) {
      const BlobRef ref{*block, task.input.size()};
      written = ring.try_write(Kind::task_blob, seq, job,
                               {size_bytes, *task.trampoline,
                                std::string_view(reinterpret_cast<const char*>(&ref), sizeof ref)});
    } else {
      written =
          ring.try_write(Kind::task, seq, job, {size_bytes, *task.trampoline, task.input.view()});
    }
    if (!written) return false;
    if (ring.consumer_wants_wake()) ring.futex_wake_consumer();
    ++w.next_seq;
    w.inflight.push_back(InFlight{seq, std::move(task)});
    return true;
  }

  // ---- draining results (mutex held)
  void drain(Worker& w, std::vector<Completion>& done) {
    Ring ring(w.channel->results, w.channel->result_data);
    FrameHeader header;
    std::string_view payload;
    while (ring.peek(header, payload)) {
      if (header.kind == Kind::init_failed || header.kind == Kind::init_failed_blob) {
        auto [type, message] = decode_error(error_payload(header, payload));
        set_broken("the pool's initializer failed in worker " + std::to_string(w.pid) + ": " +
                       type + (message.empty() ? "" : ": ") + message,
                   done);
        ring.consume();
        continue;
      }
      // Results come in task order.
      while (!w.inflight.empty() && w.inflight.front().seq < header.seq) {
        // Cannot happen (every task gets exactly one result), but never leave a task hanging.
        fail_inflight(w.inflight.front(),
                      std::make_exception_ptr(BrokenProcessPool("mp::Pool: result lost")), done);
        w.inflight.pop_front();
      }
      if (w.inflight.empty() || w.inflight.front().seq != header.seq) {
        if (header.kind == Kind::result_blob || header.kind == Kind::error_blob) {
          BlobRef blob;  // nobody waits for it: give its block back
          std::memcpy(&blob, payload.data(), sizeof blob);
          heap_free(blob.ref);
        }
        ring.consume();
        continue;
      }
      InFlight in = std::move(w.inflight.front());
      w.inflight.pop_front();
      Completion c{std::move(in.task.sink), in.task.index, {}, nullptr};
      if (header.kind == Kind::result) {
        c.result = std::string(payload);
        record_task_time(header.aux);
      } else if (header.kind == Kind::result_blob) {
        BlobRef blob;
        std::memcpy(&blob, payload.data(), sizeof blob);
        c.result = PoolBytes::adopt(blob.ref, blob.size);  // read in place, freed with it
        record_task_time(header.aux);
      } else {
        auto [type, message] = decode_error(error_payload(header, payload));
        c.error = std::make_exception_ptr(RemoteError(std::move(type), std::move(message)));
      }
      ring.consume();
      done.push_back(std::move(c));
    }
  }

  void fail_inflight(InFlight& in, std::exception_ptr error, std::vector<Completion>& done) {
    in.task.input = {};
    done.push_back(Completion{std::move(in.task.sink), in.task.index, {}, std::move(error)});
  }

  void set_broken(std::string message, std::vector<Completion>& done) {
    if (broken) return;
    broken = std::move(message);
    auto error = std::make_exception_ptr(BrokenProcessPool(*broken));
    for (auto& task : pending)
      done.push_back(Completion{std::move(task.sink), task.index, {}, error});
    pending.clear();
    for (auto& w : workers) {
      for (auto& in : w->inflight) fail_inflight(in, error, done);
      w->inflight.clear();
      if (!w->dead) w->process.kill();
    }
  }

  // ---- a worker ended (mutex held)
  void reap(Worker& w, std::vector<Completion>& done) {
    drain(w, done);
    const std::optional<int> exitcode = w.process.exitcode();
    const std::uint64_t started = w.channel->started.load(std::memory_order_acquire);
    const bool initialized = w.channel->initialized.load() != 0;
    std::deque<Task> again;
    for (auto& in : w.inflight) {
      if (in.seq < started || state == State::terminated) {
        std::exception_ptr error;
        if (state == State::terminated)
          error = std::make_exception_ptr(BrokenProcessPool("mp::Pool: the pool was terminated"));
        else if (w.killed_for_timeout && in.seq == w.timeout_seq)
          error =
              std::make_exception_ptr(TimeoutError("mp::Pool: task exceeded task_timeout; worker " +
                                                   std::to_string(w.pid) + " was killed"));
        else
          error = std::make_exception_ptr(WorkerLostError(w.pid, exitcode));
        fail_inflight(in, error, done);
      } else {
        again.push_back(std::move(in.task));
      }
    }
    w.inflight.clear();
    if (!initialized && !broken && state != State::terminated && !w.stop_sent) {
      set_broken("a worker of the pool died in its initializer (pid " + std::to_string(w.pid) +
                     ", " + describe_exitcode(exitcode) + ")",
                 done);
    }
    if (broken) {
      auto error = std::make_exception_ptr(BrokenProcessPool(*broken));
      for (auto& task : again)
        done.push_back(Completion{std::move(task.sink), task.index, {}, error});
    } else {
      for (auto it = again.rbegin(); it != again.rend(); ++it) pending.push_front(std::move(*it));
    }
    w.dead = true;
  }

  void remove_dead_workers() {
    std::erase_if(workers, [](const std::unique_ptr<Worker>& w) {
      if (!w->dead) return false;
      heap_free(w->channel_ref);
      return true;
    });
  }

  bool need_more_workers() const {
    if (broken || state == State::terminated) return false;
    if (state == State::closed && pending.empty()) return false;
    return static_cast<int>(workers.size()) < options.processes;
  }

  // ---- the result thread
  // An exception must never end the program from here. None is expected; should one
  // escape a step all the same, it breaks the pool: every task fails with its message.
  void run() noexcept {
    for (;;) {
      try {
        run_loop();
        return;
      } catch (...) {
        auto [type, message] = describe_current_exception();
        std::vector<Completion> done;
        try {
          std::lock_guard lock(mutex);
          set_broken("mp::Pool: the pool's result thread failed: " + type + ": " + message, done);
        } catch (...) {
        }
        deliver(done);
      }
    }
  }

  void run_loop() {
    std::vector<Completion> done;
    std::vector<pollfd> fds;
    std::vector<Worker*> polled;
    auto last_liveness_check = Clock::now();
    bool recent_progress = false;
    for (;;) {
      done.clear();
      bool finished = false;
      bool progress = false;
      {
        std::lock_guard lock(mutex);
        for (auto& w : workers)
          if (!w->dead) drain(*w, done);
        progress = !done.empty();
        const auto now = Clock::now();
        if (now - last_liveness_check > std::chrono::milliseconds(2)) {
          last_liveness_check = now;
          check_liveness(done);
        }
        check_timeouts(now);
        maintain(done);
        finished = workers.empty() && (state != State::running) &&
                   (pending.empty() || broken || state == State::terminated);
      }
      if (finished) {
        std::lock_guard lock(mutex);
        auto error = std::make_exception_ptr(
            BrokenProcessPool(broken ? *broken : std::string("mp::Pool: the pool was terminated")));
        for (auto& task : pending)
          done.push_back(Completion{std::move(task.sink), task.index, {}, error});
        pending.clear();
      }
      deliver(done);
      if (finished) return;
      if (progress) {
        recent_progress = true;
        continue;
      }
      // Spin a little before sleeping while results are flowing: a pipelined worker
      // answers within microseconds. Only this thread changes `workers`, so it may read
      // them without the mutex.
      bool any = false;
      if (recent_progress && short_tasks()) {
        const auto spin_until = Clock::now() + std::chrono::microseconds(30);
        while (!any && Clock::now() < spin_until) {
          for (auto& w : workers)
            if (!w->dead && !Ring(w->channel->results, w->channel->result_data).empty()) any = true;
          if (!any)
            for (int i = 0; i < 64; ++i) posix::cpu_relax();
        }
      }
      recent_progress = false;
      if (any) continue;
      sleep(fds, polled, done);
      deliver(done);
      done.clear();
    }
  }

  // Called by a thread waiting for a result: drains the result rings itself instead of
  // waiting for the result thread to wake up (saves two thread wake-ups per round
  // trip). Returns at once if another thread holds the mutex.
  // 1: delivered something; 0: nothing yet; -1: not worth spinning for (long tasks:
  // the spinning thread would only take CPU time from the workers).
  int help() {
    std::vector<Completion> done;
    {
      std::unique_lock lock(mutex, std::try_to_lock);
      if (!lock) return 0;
      for (auto& w : workers)
        if (!w->dead) drain(*w, done);
      if (done.empty()) return short_tasks() ? 0 : -1;
      dispatch();
    }
    deliver(done);
    return 1;
  }

  void deliver(std::vector<Completion>& done) {
    for (auto& c : done) {
      if (c.error)
        c.sink->task_failed(c.index, c.error);
      else
        c.sink->task_done(c.index, std::move(c.result));
    }
    done.clear();
  }

  // Poll the pidfds without waiting (mutex held).
  void check_liveness(std::vector<Completion>& done) {
    std::vector<pollfd> fds;
    for (auto& w : workers) fds.push_back({w->process.sentinel(), POLLIN, 0});
    int ready = 0;
    if (posix::poll_until(fds, std::chrono::nanoseconds(0), ready) || ready == 0) return;
    for (std::size_t i = 0; i < fds.size(); ++i)
      if (fds[i].revents && !workers[i]->dead) reap(*workers[i], done);
  }

  void check_timeouts(Clock::time_point now) {
    if (!options.task_timeout) return;
    for (auto& w : workers) {
      if (w->dead || w->killed_for_timeout || w->inflight.empty()) continue;
      const std::uint64_t started = w->channel->running.load(std::memory_order_acquire);
      if (started == 0 || started - 1 != w->inflight.front().seq) continue;
      const Clock::time_point at(Clock::duration(w->channel->started_ns.load()));
      if (now - at >= *options.task_timeout) {
        w->killed_for_timeout = true;
        w->timeout_seq = started - 1;
        w->process.kill();
      }
    }
  }

  std::optional<std::chrono::nanoseconds> next_timeout(Clock::time_point now) {
    if (!options.task_timeout) return std::nullopt;
    std::chrono::nanoseconds wait = *options.task_timeout;
    for (auto& w : workers) {
      if (w->dead || w->killed_for_timeout || w->inflight.empty()) continue;
      const std::uint64_t started = w->channel->running.load(std::memory_order_acquire);
      if (started == 0 || started - 1 != w->inflight.front().seq) continue;
      const Clock::time_point at(Clock::duration(w->channel->started_ns.load()));
      wait = std::min(wait, std::chrono::duration_cast<std::chrono::nanoseconds>(
                                at + *options.task_timeout - now));
    }
    return std::max(wait, std::chrono::nanoseconds(std::chrono::milliseconds(1)));
  }

  // Replace lost workers, stop idle ones when closed, dispatch (mutex held).
  void maintain(std::vector<Completion>& done) {
    remove_dead_workers();
    while (need_more_workers()) {
      try {
        start_worker();
      } catch (...) {
        auto [type, message] = describe_current_exception();
        set_broken("mp::Pool: cannot start a worker: " + message, done);
      }
    }
    dispatch();
    if (state == State::closed && pending.empty()) {
      for (auto& w : workers) {
        if (w->dead || w->stop_sent || !w->inflight.empty()) continue;
        Ring ring = w->tasks();
        if (ring.try_write(Kind::stop, 0, 0, {})) {
          w->stop_sent = true;
          if (ring.consumer_wants_wake()) ring.futex_wake_consumer();
        }
      }
    }
  }

  void sleep(std::vector<pollfd>& fds, std::vector<Worker*>& polled,
             std::vector<Completion>& done) {
    fds.clear();
    polled.clear();
    std::optional<std::chrono::nanoseconds> timeout;
    {
      std::lock_guard lock(mutex);
      fds.push_back({wake_read.get(), POLLIN, 0});
      bool ready = false;
      for (auto& w : workers) {
        if (w->dead) continue;
        std::uint32_t seq;
        Ring ring(w->channel->results, w->channel->result_data);
        if (!ring.prepare_sleep(seq)) ready = true;
        polled.push_back(w.get());
        fds.push_back({w->process.sentinel(), POLLIN, 0});
        fds.push_back({w->doorbell_open ? w->doorbell.fileno() : -1, POLLIN, 0});
      }
      if (ready) {
        for (auto* w : polled) Ring(w->channel->results, w->channel->result_data).cancel_sleep();
        return;
      }
      timeout = next_timeout(Clock::now());
      // A steal can fail only because the busy worker has not claimed its first task
      // yet; no event would come to retry it, so look again shortly.
      if (steal_possible()) timeout = std::min(timeout.value_or(kStealRetry), kStealRetry);
      thread_sleeping.store(true);
    }
    int count = 0;
    (void)posix::poll_until(fds, timeout, count);
    thread_sleeping.store(false);
    std::lock_guard lock(mutex);
    char buffer[64];
    if (fds[0].revents) {
      std::size_t got = 0;
      (void)posix::read_some(wake_read.get(), buffer, sizeof buffer, got);
    }
    for (std::size_t i = 0; i < polled.size(); ++i) {
      Worker* w = polled[i];
      Ring(w->channel->results, w->channel->result_data).cancel_sleep();
      const pollfd& bell = fds[2 + 2 * i];
      if (bell.fd >= 0 && bell.revents) {
        std::size_t got = 0;
        if (posix::read_some(bell.fd, buffer, sizeof buffer, got) || got == 0)
          w->doorbell_open = false;  // the worker is ending: its pidfd will say so
      }
      if (fds[1 + 2 * i].revents && !w->dead) reap(*w, done);
    }
  }
};

PoolCore::PoolCore(PoolCoreOptions options) : impl_(std::make_shared<Impl>()) {
  if (options.processes < 1) throw std::invalid_argument("mp::Pool: processes must be at least 1");
  impl_->options = std::move(options);
  if (auto ec = posix::stream_pair(true, impl_->wake_read, impl_->wake_write))
    throw std::system_error(ec, "mp::Pool: socketpair");
  {
    std::lock_guard lock(impl_->mutex);
    try {
      for (int i = 0; i < impl_->options.processes; ++i) impl_->start_worker();
    } catch (...) {
      for (auto& w : impl_->workers) w->process.kill();
      for (auto& w : impl_->workers) {
        w->process.join();
        heap_free(w->channel_ref);
      }
      throw;
    }
  }
  impl_->result_thread = std::thread([impl = impl_] { impl->run(); });
}

PoolCore::~PoolCore() {
  if (impl_->result_thread.joinable()) {
    terminate();
    join();
  }
}

void PoolCore::submit(const std::shared_ptr<JobSink>& sink, std::uint64_t first_index,
                      std::vector<PoolTaskInput> tasks) {
  {
    std::lock_guard lock(impl_->mutex);
    if (impl_->state != Impl::State::running)
      throw std::invalid_argument(
          "mp::Pool: the pool is not running (close() or terminate() was called)");
  }
  // A large input travels in a block of the shared heap. It is allocated here, in the
  // caller's thread, so that a full heap (HeapExhausted) fails just this task through
  // its result, not the thread that hands tasks to the workers.
  std::vector<std::pair<std::uint64_t, std::exception_ptr>> refused;
  for (std::size_t i = 0; i < tasks.size(); ++i) {
    if (!Impl::travels_in_heap(tasks[i].trampoline->size(), tasks[i].input.size())) continue;
    try {
      tasks[i].input.move_to_heap();
    } catch (...) {
      refused.emplace_back(first_index + i, std::current_exception());
    }
  }
  std::exception_ptr broken_error;
  bool wake = false;
  {
    std::lock_guard lock(impl_->mutex);
    if (impl_->state != Impl::State::running)
      throw std::invalid_argument(
          "mp::Pool: the pool is not running (close() or terminate() was called)");
    if (impl_->broken) {
      broken_error = std::make_exception_ptr(BrokenProcessPool(*impl_->broken));
    } else {
      std::size_t next_refused = 0;
      for (std::size_t i = 0; i < tasks.size(); ++i) {
        if (next_refused < refused.size() && refused[next_refused].first == first_index + i) {
          ++next_refused;
          continue;
        }
        impl_->pending.push_back(
            Impl::Task{sink, first_index + i, tasks[i].trampoline, std::move(tasks[i].input)});
      }
      impl_->dispatch();
      wake = !impl_->pending.empty();
    }
  }
  if (broken_error) {
    for (std::size_t i = 0; i < tasks.size(); ++i) sink->task_failed(first_index + i, broken_error);
    return;
  }
  for (auto& [index, error] : refused) sink->task_failed(index, error);
  if (wake && impl_->thread_sleeping.load()) impl_->wake_thread();
}

void PoolCore::close() {
  std::lock_guard lock(impl_->mutex);
  if (impl_->state == Impl::State::running) impl_->state = Impl::State::closed;
  impl_->wake_thread();
}

void PoolCore::terminate(bool kill) {
  std::vector<Impl::Completion> done;
  {
    std::lock_guard lock(impl_->mutex);
    impl_->state = Impl::State::terminated;
    auto error = std::make_exception_ptr(BrokenProcessPool("mp::Pool: the pool was terminated"));
    for (auto& task : impl_->pending)
      done.push_back(Impl::Completion{std::move(task.sink), task.index, {}, error});
    impl_->pending.clear();
    for (auto& w : impl_->workers) {
      if (w->dead) continue;
      if (kill)
        w->process.kill();
      else
        w->process.terminate();
    }
    impl_->wake_thread();
  }
  impl_->deliver(done);
}

void PoolCore::join() {
  {
    std::lock_guard lock(impl_->mutex);
    if (impl_->state == Impl::State::running)
      throw std::logic_error("mp::Pool::join: call close() or terminate() first");
  }
  if (impl_->result_thread.joinable()) {
    if (impl_->result_thread.get_id() == std::this_thread::get_id())
      throw std::logic_error("mp::Pool::join: called from the pool's result thread");
    impl_->result_thread.join();
  }
}

bool PoolCore::cancel(const JobSink* sink, std::uint64_t index) {
  std::lock_guard lock(impl_->mutex);
  for (auto it = impl_->pending.begin(); it != impl_->pending.end(); ++it) {
    if (it->sink.get() == sink && it->index == index) {
      impl_->pending.erase(it);
      return true;
    }
  }
  for (auto& w : impl_->workers) {
    if (w->dead) continue;
    for (auto it = w->inflight.begin(); it != w->inflight.end(); ++it) {
      if (it->task.sink.get() != sink || it->task.index != index) continue;
      if (!Impl::take_back(*w, it->seq)) return false;  // it has started
      w->inflight.erase(it);
      return true;
    }
  }
  return false;
}

bool PoolCore::started(const JobSink* sink, std::uint64_t index) const {
  std::lock_guard lock(impl_->mutex);
  for (auto& task : impl_->pending)
    if (task.sink.get() == sink && task.index == index) return false;
  for (auto& w : impl_->workers) {
    if (w->dead) continue;
    for (auto& in : w->inflight) {
      if (in.task.sink.get() != sink || in.task.index != index) continue;
      return w->channel->task_states[in.seq % kStateSlots].load(std::memory_order_acquire) ==
             task_state(in.seq, kRunning);
    }
  }
  return true;  // neither waiting nor handed out: it ran, its outcome is on its way
}

std::vector<std::pair<std::shared_ptr<JobSink>, std::uint64_t>> PoolCore::take_pending() {
  std::vector<std::pair<std::shared_ptr<JobSink>, std::uint64_t>> out;
  std::lock_guard lock(impl_->mutex);
  for (auto& task : impl_->pending) out.emplace_back(std::move(task.sink), task.index);
  impl_->pending.clear();
  // And the tasks handed to workers that have not started them.
  for (auto& w : impl_->workers) {
    if (w->dead) continue;
    std::erase_if(w->inflight, [&](Impl::InFlight& in) {
      if (!Impl::take_back(*w, in.seq)) return false;
      out.emplace_back(std::move(in.task.sink), in.task.index);
      return true;
    });
  }
  return out;
}

int PoolCore::processes() const noexcept { return impl_->options.processes; }

std::function<int()> PoolCore::helper() const {
  return [weak = std::weak_ptr<Impl>(impl_)] {
    auto impl = weak.lock();
    return impl ? impl->help() : -1;
  };
}

std::vector<int> PoolCore::worker_pids() const {
  std::lock_guard lock(impl_->mutex);
  std::vector<int> pids;
  for (auto& w : impl_->workers)
    if (!w->dead) pids.push_back(w->pid);
  return pids;
}

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
      auto [type, message] = describe_current_exception();
      std::cerr << "mp::Pool: exception in a callback: " << type << ": " << message << std::endl;
    }
    lock.lock();
  }
  ready_ = true;
  ready_flag_.store(true, std::memory_order_release);
  changed_.notify_all();
}

bool ResultState::ready() const { return ready_flag_.load(std::memory_order_acquire); }

void ResultState::set_helper(std::function<int()> helper) { helper_ = std::move(helper); }

constexpr std::chrono::microseconds kHelpSpin{100};

// Spins a little first, draining the pool's result rings itself: a short task's result
// is then in hand microseconds after the worker wrote it.
void ResultState::help_until(Clock::time_point deadline) const {
  if (!helper_) return;
  const auto spin_until = std::min(deadline, Clock::now() + kHelpSpin);
  while (!ready()) {
    const int helped = helper_();
    if (helped < 0) return;
    if (helped == 0)
      for (int i = 0; i < 32; ++i) posix::cpu_relax();
    if (Clock::now() >= spin_until) return;
  }
}

void ResultState::wait() const {
  help_until(Clock::time_point::max());
  std::unique_lock lock(mutex_);
  changed_.wait(lock, [&] { return ready_; });
}

bool ResultState::wait_for(std::chrono::nanoseconds timeout) const {
  const posix::Deadline deadline = posix::Deadline::after(timeout);
  help_until(Clock::now() + std::min(timeout, std::chrono::nanoseconds(kHelpSpin)));
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

PoolBytes PoolBytes::heap_copy(std::string_view bytes) {
  const shared_ref block = heap_allocate(bytes.size());
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

namespace mp {

Pool::Pool(PoolOptions options) {
  detail::PoolCoreOptions core;
  core.processes = options.processes.value_or(cpu_count());
  core.initializer = std::move(options.initializer);
  core.maxtasksperchild = options.maxtasksperchild.value_or(0);
  if (options.maxtasksperchild && *options.maxtasksperchild == 0)
    throw std::invalid_argument("mp::Pool: maxtasksperchild must be at least 1");
  if (!options.start_method.empty()) (void)get_context(options.start_method);  // validates
  core.start_method = std::move(options.start_method);
  core.task_timeout = options.task_timeout;
  core_ = std::make_shared<detail::PoolCore>(std::move(core));
}

Pool::~Pool() {
  try {
    core_->close();
    core_->join();
  } catch (...) {
  }
}

void Pool::close() { core_->close(); }
void Pool::terminate() { core_->terminate(); }
void Pool::join() { core_->join(); }
int Pool::processes() const noexcept { return core_->processes(); }
std::vector<int> Pool::worker_pids() const { return core_->worker_pids(); }

}  // namespace mp
