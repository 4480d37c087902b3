// mp::Pool's worker loop: what a pool worker process runs. Takes tasks from its
// channel's task ring (claiming each first, see pool_channel.hpp), runs them through
// their trampolines, and writes results and errors to the result ring.
#include <malloc.h>
#include <signal.h>

#include <chrono>
#include <cstdlib>
#include <cstring>

#include <mp/connection.hpp>
#include <mp/detail/fd_passing.hpp>
#include <mp/errors.hpp>
#include <mp/pickle.hpp>

#include "pool_channel.hpp"
#include "posix/fd.hpp"
#include "posix/signal.hpp"

namespace mp::detail {
namespace {
std::uint64_t failed_item_position = 0;  // this worker's task: 1 + the failed item, or 0
}  // namespace
void note_failed_item(std::uint64_t position) noexcept { failed_item_position = position + 1; }
}  // namespace mp::detail

namespace mp::detail::pool_wire {
namespace {

// Wakes the parent through its doorbell if it sleeps on `ring`.
void ring_doorbell(Ring& ring, Connection& doorbell) {
  if (ring.consumer_wants_wake())
    (void)posix::write_all(doorbell.fileno(), std::string_view("x", 1));
}

// The same after a result, unless someone takes it first. A thread of the parent that
// waits on the result often collects it within a microsecond, or mutes the wake-ups
// meanwhile (ResultLoop::help): ringing would only wake the result thread for nothing,
// and cost this worker a system call. The spin learns (`history`): where nobody takes
// the results, the parent is rung at once.
void ring_doorbell_unless_taken(Ring& ring, Connection& doorbell, SpinHistory& history) {
  const std::uint64_t written = ring.head();
  const auto taken = [&] { return !ring.consumer_asks_wake() || ring.tail() >= written; };
  if (!ring.consumer_asks_wake()) return;
  (void)adaptive_spin_until(taken, kDoorbellSpin, history);
  // Consumed frames need no wake-up: the consumer reads them in order, so every frame
  // before this one was consumed too.
  if (ring.tail() >= written) return;
  ring_doorbell(ring, doorbell);
}

FrameKind blob_kind_of(FrameKind kind) {
  switch (kind) {
    case FrameKind::result:
      return FrameKind::result_blob;
    case FrameKind::error:
      return FrameKind::error_blob;
    default:
      return FrameKind::init_failed_blob;
  }
}

// Writes a result frame, waiting for space if the parent is behind, and rings the
// parent's doorbell if it sleeps, unless `quiet` (see worker_main).
// Throws HeapExhausted for a result too large for the heap; never for an error (a
// long message that does not fit is cut, and says so).
void worker_write(Ring& ring, Connection& doorbell, FrameHeader header, std::string_view payload,
                  bool quiet = false, SpinHistory* doorbell_spins = nullptr) {
  std::string_view body = payload;
  BlobRef blob{};
  std::string cut;
  if (payload.size() > kInlineMax) {
    try {
      blob.ref = heap_allocate_for_write(payload.size());
      blob.size = payload.size();
      std::memcpy(heap_address(blob.ref), payload.data(), payload.size());
      body = std::string_view(reinterpret_cast<const char*>(&blob), sizeof blob);
      header.kind = blob_kind_of(header.kind);
    } catch (...) {
      if (header.kind == FrameKind::result) throw;
      const std::string mark =
          "... [cut: " + std::to_string(payload.size()) + " bytes in all; the shared heap is full]";
      cut = std::string(payload.substr(0, kInlineMax - mark.size())) + mark;
      body = cut;
    }
  }
  for (;;) {
    const std::uint64_t tail = ring.tail();
    if (ring.try_write(header, {body})) break;
    ring_doorbell(ring, doorbell);  // only the parent can make room
    ring.wait_space(tail);
  }
  if (quiet) return;
  if (doorbell_spins)
    ring_doorbell_unless_taken(ring, doorbell, *doorbell_spins);
  else
    ring_doorbell(ring, doorbell);
}

// The task's trampoline, unpickled once per distinct trampoline in a row.
class TrampolineCache {
 public:
  PoolTrampoline get(std::string_view bytes) {
    if (!cached_ || bytes != bytes_) {
      cached_ = pickle::loads<PoolTrampoline>(bytes);
      bytes_ = bytes;
    }
    return cached_;
  }

 private:
  std::string bytes_;
  PoolTrampoline cached_ = nullptr;
};

// Runs one task frame's payload into `result`; throws what the task throws.
void run_task(const FrameHeader& header, std::string_view payload, TrampolineCache& trampolines,
              std::string& result) {
  const auto task = split_task_payload(payload);
  if (!task) throw std::length_error("mp::Pool: a task frame is shorter than it claims");
  std::string_view input = task->input;
  if (header.kind == FrameKind::task_blob) {  // the input is in a heap block
    BlobRef blob;
    if (input.size() < sizeof blob) throw std::length_error("mp::Pool: a task frame is cut");
    std::memcpy(&blob, input.data(), sizeof blob);
    input = std::string_view(static_cast<const char*>(heap_address(blob.ref)), blob.size);
  }
  trampolines.get(task->trampoline)(input, result);
}

// Claims task `seq` for this worker: false if the parent took it back (for an idle
// worker, or cancelled it), and the worker skips it.
enum class Claim { run, taken_back, cancelled };
Claim claim(Channel& channel, std::uint64_t seq) {
  std::uint64_t expected = seq;
  if (!channel.claimed.compare_exchange_strong(expected, seq + 1, std::memory_order_acq_rel))
    return Claim::taken_back;
  std::uint64_t queued = task_state_word(seq, TaskState::queued);
  if (!channel.state_of(seq).compare_exchange_strong(
          queued, task_state_word(seq, TaskState::running), std::memory_order_acq_rel))
    return Claim::cancelled;
  return Claim::run;
}

}  // namespace

namespace {

void put_sized(std::string& out, const std::string& text) {
  const auto size = static_cast<std::uint32_t>(text.size());
  out.append(reinterpret_cast<const char*>(&size), sizeof size);
  out += text;
}

// Takes a u32 size and that many bytes (fewer if the payload is cut) off `payload`.
std::string take_sized(std::string_view& payload) {
  std::uint32_t size = 0;
  if (payload.size() < sizeof size) {
    payload = {};
    return {};
  }
  std::memcpy(&size, payload.data(), sizeof size);
  payload.remove_prefix(sizeof size);
  size = std::min<std::uint32_t>(size, static_cast<std::uint32_t>(payload.size()));
  std::string text(payload.substr(0, size));
  payload.remove_prefix(size);
  return text;
}

}  // namespace

std::string encode_error(const ErrorText& error) {
  std::string out;
  put_sized(out, error.type);
  put_sized(out, error.traceback);
  out.append(reinterpret_cast<const char*>(&error.item), sizeof error.item);
  out += error.message;
  return out;
}

ErrorText decode_error(std::string_view payload) {
  if (payload.size() < sizeof(std::uint32_t)) return {"unknown exception", "", "", 0};
  ErrorText error;
  error.type = take_sized(payload);
  error.traceback = take_sized(payload);
  if (payload.size() >= sizeof error.item) {
    std::memcpy(&error.item, payload.data(), sizeof error.item);
    payload.remove_prefix(sizeof error.item);
  }
  error.message = std::string(payload);
  return error;
}

namespace {

// The exception being handled, with the stack of its throw and the failed map item.
ErrorText describe_task_exception() {
  ErrorText error = describe_current_exception();
  error.traceback = current_throw_traceback();
  error.item = failed_item_position;
  return error;
}

}  // namespace

void worker_main(shared_ref channel_ref, Connection& doorbell, const InitCall& init,
                 std::uint64_t maxtasks) {
  using Clock = std::chrono::steady_clock;
  // Ctrl-C goes to the whole process group: only the parent should react.
  posix::ignore_signal(SIGINT);
  // A worker decodes and encodes a chunk of up to a few MiB per task. With glibc's
  // defaults each such buffer is mmapped or trimmed away when freed, so every task
  // faults its buffers in afresh (half of pool_map_trivial's time). The worker is
  // ours: keep up to 64 MiB of freed memory for the next task instead.
  mallopt(M_MMAP_THRESHOLD, 32 << 20);
  mallopt(M_TRIM_THRESHOLD, 64 << 20);
  auto* channel = static_cast<Channel*>(heap_address(channel_ref));
  Ring tasks = channel->task_ring();
  Ring results = channel->result_ring();
  if (init.run) {
    try {
      init.run(init.bound);
    } catch (...) {
      worker_write(results, doorbell, FrameHeader::other(FrameKind::init_failed, 0),
                   encode_error(describe_task_exception()));
      return;
    }
  }
  channel->initialized.store(1);

  TrampolineCache trampolines;
  std::string result;
  std::uint64_t completed = 0;
  SpinHistory waits = 0;
  SpinHistory doorbell_spins = 0;
  for (;;) {
    FrameHeader header;
    std::string_view payload;
    while (!tasks.peek(header, payload)) tasks.wait_data(waits);
    if (header.kind == FrameKind::stop) return;
    const Claim claimed = claim(*channel, header.seq);
    if (claimed != Claim::run) {
      tasks.consume();
      // A task cancelled before it started counts as one of the worker's tasks: the
      // parent hands it no more than maxtasksperchild.
      if (claimed == Claim::cancelled && maxtasks != 0 && ++completed >= maxtasks) return;
      continue;
    }
    const auto start = Clock::now();
    channel->started_ns.store(start.time_since_epoch().count(), std::memory_order_relaxed);
    channel->running.store(header.seq + 1, std::memory_order_release);
    result.clear();
    FrameKind kind = FrameKind::result;
    try {
      failed_item_position = 0;
      run_task(header, payload, trampolines, result);
    } catch (...) {
      result = encode_error(describe_task_exception());
      kind = FrameKind::error;
    }
    const auto elapsed = std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now() - start);
    // The input is no longer needed. A result of a job whose next two tasks are queued
    // here already need not wake the parent: nobody can use it before those finish, and
    // the parent will be woken while the last of them runs, in time to send more. Each
    // wake-up costs the workers a context switch on a busy machine.
    // Queued tasks the parent took back (sequence numbers below `claimed`) do not
    // count, and if it takes more back after the count, the parent is rung after all:
    // it may be asleep by then, and only this result's doorbell would wake it.
    const std::uint64_t job = header.job();
    tasks.consume();
    const std::uint64_t claimed_now = channel->claimed.load(std::memory_order_acquire);
    const bool quiet =
        job != 0 && kind == FrameKind::result && tasks.queued_of(job, 2, claimed_now) >= 2;
    try {
      const auto out =
          kind == FrameKind::result
              ? FrameHeader::result(kind, header.seq, static_cast<std::uint64_t>(elapsed.count()))
              : FrameHeader::other(kind, header.seq);
      worker_write(results, doorbell, out, result, quiet, &doorbell_spins);
      if (quiet) {
        std::atomic_thread_fence(std::memory_order_seq_cst);  // pairs with prepare_sleep's
        if (channel->claimed.load(std::memory_order_relaxed) != claimed_now)
          ring_doorbell(results, doorbell);
      }
    } catch (...) {
      worker_write(results, doorbell, FrameHeader::other(FrameKind::error, header.seq),
                   encode_error(describe_current_exception()));
    }
    if (maxtasks != 0 && ++completed >= maxtasks) return;
  }
}

namespace {

void put_u64(PickleOutputArchive& out, std::uint64_t value) { out.write(&value, sizeof value); }

std::uint64_t get_u64(PickleInputArchive& in) {
  std::uint64_t value;
  in.read(&value, sizeof value);
  return value;
}

// What a spawned or forkserver worker runs: worker_main with the arguments its parent
// encoded.
void run_spawned_worker(std::string_view bytes) {
  WorkerArgs args = decode_worker_args(bytes);
  worker_main(args.channel, args.doorbell, args.init, args.maxtasks);
}

}  // namespace

std::string encode_worker_args(const WorkerArgs& args) {
  std::string bytes;
  PickleOutputArchive out(bytes);
  put_u64(out, args.channel.arena);
  put_u64(out, args.channel.offset);
  put_u64(out, args.maxtasks);
  put_u64(out, register_fd_for_child(args.doorbell.fileno(), "a Connection"));
  save_function_address(out, reinterpret_cast<const void*>(args.init.run));
  put_u64(out, args.init.bound.size());
  out.write(args.init.bound.data(), args.init.bound.size());
  return bytes;
}

WorkerArgs decode_worker_args(std::string_view bytes) {
  PickleInputArchive in(bytes);
  WorkerArgs args;
  args.channel.arena = get_u64(in);
  args.channel.offset = get_u64(in);
  args.maxtasks = get_u64(in);
  const std::uint64_t doorbell = get_u64(in);
  using Run = void (*)(std::string_view);
  args.init.run = reinterpret_cast<Run>(const_cast<void*>(load_function_address(in)));
  const std::uint64_t bound_size = get_u64(in);
  if (bound_size != in.remaining())
    throw UnpicklingError("mp: a pool worker's arguments are damaged (" +
                          std::to_string(in.remaining()) + " bytes left for a call of " +
                          std::to_string(bound_size) + ")");
  args.init.bound = in.read_view(in.remaining());
  if (doorbell > UINT32_MAX)
    throw UnpicklingError("mp: a pool worker's arguments name no passed descriptor");
  args.doorbell = Connection(take_inherited_fd(static_cast<std::uint32_t>(doorbell)), false, true);
  return args;
}

Target worker_target(WorkerArgs args) {
  auto bound = std::make_shared<WorkerArgs>(std::move(args));
  Target target;
  target.call = [bound] {
    worker_main(bound->channel, bound->doorbell, bound->init, bound->maxtasks);
  };
  target.pickle = [bound] { return encode_worker_args(*bound); };
  target.trampoline = &run_spawned_worker;
  target.after_start = [bound] { release_after_start(bound->doorbell, after_start_tag{}); };
  return target;
}

}  // namespace mp::detail::pool_wire
