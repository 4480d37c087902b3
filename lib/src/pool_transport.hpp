// Private to mp: the seam between mp::Pool's scheduler and the workers. The scheduler
// (pool_scheduler.cpp), the worker handler (pool_workers.cpp) and the result loop
// (pool_result_loop.cpp) reach "a set of workers" only through WorkerTransport and
// WorkerLink; the shared-memory rings (pool_shm_transport.cpp) are one transport, and
// another (workers on other machines) is one more file implementing these two classes.
//
// Calls are per batch, not per task: send() takes a run of tasks and receive() returns
// every finished reply, so a virtual call is amortised over the batch.
//
// The claim protocol every transport keeps: tasks sent to a worker are numbered 0, 1,
// 2... (`seq`) in the order sent; the worker claims them in that order before running
// each, and the parent may claim one in the worker's stead (the worker then skips it)
// or cancel it while it is still queued. So a task is run at most once, and when a
// worker is lost, the tasks below claimed() without a reply are exactly the one it was
// running (plus those skipped), and the rest may run elsewhere.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <mp/detail/pool_core.hpp>

namespace mp::detail {

// One task handed to a worker.
struct OutgoingTask {
  std::uint64_t seq;  // the worker's next number
  std::uint64_t job;  // the tag shared by a batched job's tasks (0: none)
  const std::string* trampoline;
  const PoolBytes* input;  // lives until the task's reply arrives
};

// What a worker sent back.
struct WorkerReply {
  enum class Kind {
    result,       // `result` holds the pickled result
    error,        // the task threw: error_type, error_message
    init_failed,  // the initializer threw: error_type, error_message
  };
  Kind kind = Kind::result;
  std::uint64_t seq = 0;
  std::uint64_t run_ns = 0;  // result only
  PoolBytes result;
  std::string error_type;
  std::string error_message;
  std::string error_traceback;   // the stack of the throw, if known
  std::uint64_t error_item = 0;  // 1 + the failed item's position in its chunk; 0: unknown
};

// What a worker is started with.
struct WorkerLaunch {
  int number = 0;            // 1 for the pool's first worker, 2 for the next...
  std::string start_method;  // empty: the default
  InitCall initializer;
  std::uint64_t maxtasksperchild = 0;
};

// The task a worker is running now and since when.
struct RunningTask {
  std::uint64_t seq;
  std::chrono::steady_clock::time_point since;
};

// One worker, as the parent reaches it. All calls are made with the pool's mutex held
// (or by the result thread, which alone adds and removes links), never block, and are
// not made after the worker was reaped, except exitcode() and the destructor.
class WorkerLink {
 public:
  virtual ~WorkerLink() = default;

  virtual int pid() const = 0;

  // ---- tasks
  // Hands tasks to the worker in order; returns how many it took (fewer when its channel
  // is full).
  virtual std::size_t send(std::span<const OutgoingTask> tasks) = 0;
  // Tells the worker to exit after its tasks; false if it cannot take it now.
  virtual bool send_stop() = 0;
  // Appends every finished reply, in task order.
  virtual void receive(std::vector<WorkerReply>& out) = 0;
  virtual bool has_replies() const = 0;

  // ---- the claim protocol
  // Tasks numbered below this were claimed (run, running or skipped).
  virtual std::uint64_t claimed() const = 0;
  // Claims task `next` in the worker's stead (it will skip it). On failure (the worker
  // claimed it first) `next` becomes claimed().
  virtual bool claim_instead(std::uint64_t& next) = 0;
  // Cancels task `seq` if the worker has not started it; true if cancelled.
  virtual bool cancel(std::uint64_t seq) = 0;
  // Whether the worker has started task `seq` (and it is still in flight).
  virtual bool has_started(std::uint64_t seq) const = 0;
  // The task the worker runs now, if any (for task timeouts).
  virtual std::optional<RunningTask> running_task() const = 0;
  // Whether the worker finished its initializer.
  virtual bool initialized() const = 0;

  // ---- the process
  virtual void kill() = 0;
  virtual void terminate() = 0;
  virtual void join() = 0;
  virtual std::optional<int> exitcode() = 0;

  // ---- sleeping: the result thread polls these between bursts of work
  // Readable once the worker has ended.
  virtual int ended_fd() const = 0;
  // Readable when replies arrive while armed; -1 if there is none to poll.
  virtual int reply_fd() const = 0;
  // Asks to be woken through reply_fd(); false (not armed) if replies are there already.
  virtual bool arm() = 0;
  // After the poll: stops asking; `readable` says whether reply_fd() was readable.
  virtual void disarm(bool readable) = 0;
  // While armed and polled: stops asking for the wake-ups (a thread waiting on a result
  // collects the replies itself meanwhile), then asks again (unmute: false, and not
  // armed, if replies are there already). A link may keep its wake-ups (the defaults).
  virtual void mute() {}
  virtual bool unmute() { return true; }
};

// Starts workers of one kind.
class WorkerTransport {
 public:
  // tasks_in_heap_from: a task whose pickled trampoline and input together exceed this
  // should have its input in the shared heap (PoolBytes::move_to_heap) before submit.
  // window: a worker is never handed a task `window` or more after the oldest one it
  // still holds.
  WorkerTransport(std::size_t tasks_in_heap_from, std::uint64_t window)
      : tasks_in_heap_from_(tasks_in_heap_from), window_(window) {}
  virtual ~WorkerTransport() = default;

  // Starts a worker. Throws what starting a process throws.
  virtual std::unique_ptr<WorkerLink> start(const WorkerLaunch& launch) = 0;

  // Whether the workers are on other machines.
  virtual bool remote() const { return false; }

  bool input_in_heap(std::size_t trampoline_size, std::size_t input_size) const {
    return sizeof(std::uint32_t) + trampoline_size + input_size > tasks_in_heap_from_;
  }
  std::uint64_t window() const { return window_; }

 private:
  std::size_t tasks_in_heap_from_;
  std::uint64_t window_;
};

// Workers on this machine, reached through rings in the shared heap.
MP_API std::unique_ptr<WorkerTransport> make_shared_memory_transport();

// A transport Pool{.start_method = name} uses instead of local workers of a start method
// (mp::mpi registers "mpi"). It sets `processes` to its default when that is 0, and may
// return nullptr: then the pool is local, with the default start method.
using TransportFactory = std::unique_ptr<WorkerTransport> (*)(int& processes);
// Registers `factory` under `name` (nullptr: removes it).
MP_API void register_pool_transport(const std::string& name, TransportFactory factory);
TransportFactory find_pool_transport(const std::string& name);

}  // namespace mp::detail
