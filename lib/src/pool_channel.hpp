// Private to mp: one worker's channel of mp::Pool's shared-memory transport, the
// payloads of its frames, and the claim protocol both sides follow. Written by the
// worker loop (pool_worker.cpp) and the parent's side of the transport
// (pool_shm_transport.cpp).
//
// A channel is a block of the shared heap holding two rings (pool_ring.hpp): tasks
// (parent -> worker) and results (worker -> parent). Payloads larger than kInlineMax
// travel out of line in a heap block named by a BlobRef.
//
// Crash consistency. A channel belongs to one worker and the parent; nobody else
// touches it, and it is freed only after the worker has been reaped. A frame is visible
// only once complete, so a worker killed while writing leaves nothing half-read. Before
// it runs task number s, the worker claims it by advancing `claimed` from s to s + 1
// (compare-and-swap: the parent may have advanced it first to take the task back for
// an idle worker, and the worker then skips it). When the worker dies the parent drains
// the complete results, fails every task below `claimed` that has no result (exactly
// the task the worker was running) with WorkerLostError, and queues the rest again.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

#include <mp/connection.hpp>
#include <mp/detail/pool_core.hpp>
#include <mp/process.hpp>

#include "exception_text.hpp"
#include "pool_ring.hpp"

namespace mp::detail::pool_wire {

constexpr std::size_t kInlineMax = PoolBytes::kHeapFrom;  // larger payloads go out of line

// A task's state word in its channel, slot seq % kStateSlots: seq * 4 + a TaskState.
// The parent writes `queued` before it publishes the task; the worker moves it to
// `running` before it starts the task, the parent to `cancelled` to take it back: one
// compare-and-swap each, so a task either starts or is cancelled, never both. A worker
// is never handed a task kStateSlots or more after the oldest one it still holds, so
// no two of its unfinished tasks share a slot.
constexpr std::size_t kStateSlots = 512;
enum class TaskState : std::uint64_t { queued = 1, running = 2, cancelled = 3 };
constexpr std::uint64_t task_state_word(std::uint64_t seq, TaskState state) {
  return seq * 4 + static_cast<std::uint64_t>(state);
}

struct Channel {
  RingControl tasks;
  RingControl results;
  // Tasks claimed by the worker or taken back by the parent: the next task's sequence
  // number. Each side advances it from s to s + 1 by compare-and-swap, so task s is
  // either run or taken back, never both.
  alignas(64) std::atomic<std::uint64_t> claimed{0};
  std::atomic<std::uint64_t> running{0};    // the running task's sequence number + 1
  std::atomic<std::int64_t> started_ns{0};  // steady clock, of the last start
  std::atomic<std::uint32_t> initialized{0};
  alignas(64) std::atomic<std::uint64_t> task_states[kStateSlots]{};
  alignas(64) char task_data[kRingSize];
  char result_data[kRingSize];

  std::atomic<std::uint64_t>& state_of(std::uint64_t seq) { return task_states[seq % kStateSlots]; }
  Ring task_ring() { return Ring(tasks, task_data); }
  Ring result_ring() { return Ring(results, result_data); }
};

// A task frame's payload: u32 trampoline size, the trampoline's pickle, then the input
// (inline) or a BlobRef of it (task_blob).
struct TaskPayload {
  std::string_view trampoline;
  std::string_view input;
};
// Splits a task payload; nullopt if it is too short for what it claims.
inline std::optional<TaskPayload> split_task_payload(std::string_view payload) {
  std::uint32_t size = 0;
  if (payload.size() < sizeof size) return std::nullopt;
  std::memcpy(&size, payload.data(), sizeof size);
  payload.remove_prefix(sizeof size);
  if (payload.size() < size) return std::nullopt;
  return TaskPayload{payload.substr(0, size), payload.substr(size)};
}
// Bytes a task's payload takes inline: whether it fits a frame decides task vs task_blob.
inline std::size_t task_payload_size(std::size_t trampoline_size, std::size_t input_size) {
  return sizeof(std::uint32_t) + trampoline_size + input_size;
}

// An error's payload: u32 type-name size, the type name, the message.
using ErrorText = ExceptionText;
std::string encode_error(const ErrorText& error);
ErrorText decode_error(std::string_view payload);  // never throws on short input but bad_alloc

// The type name and message of the exception being handled (exception_text.hpp).
using detail::describe_current_exception;

// The worker process's body: runs tasks from the channel at `channel_ref` until told to
// stop (or after `maxtasks` tasks, 0: no limit), writing results back and ringing
// `doorbell` when the parent sleeps.
void worker_main(shared_ref channel_ref, Connection& doorbell, const InitCall& init,
                 std::uint64_t maxtasks);

// worker_main's arguments.
struct WorkerArgs {
  shared_ref channel;
  Connection doorbell;
  InitCall init;
  std::uint64_t maxtasks = 0;
};

// What a worker's Process runs: worker_main(args). A child that does not share the
// parent's memory (spawn, forkserver) receives the arguments as encode_worker_args()
// wrote them: a fixed layout rather than a pickled tuple, since parent and child run
// the same binary and only these four values cross.
Target worker_target(WorkerArgs args);

// The arguments' bytes: channel, maxtasks, the doorbell's fd index (to be passed with
// SCM_RIGHTS; needs an active FdCollector), the initializer's code reference and bound
// call. decode_worker_args() throws mp::UnpicklingError for bytes that are cut short,
// too long, or name an fd that was not passed.
std::string encode_worker_args(const WorkerArgs& args);
WorkerArgs decode_worker_args(std::string_view bytes);

}  // namespace mp::detail::pool_wire
