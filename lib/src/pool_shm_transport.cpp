// mp::Pool's shared-memory transport: workers on this machine, each with a channel in
// the shared heap (pool_channel.hpp) and a doorbell socket. The parent wakes a sleeping
// worker with a futex wake; a worker wakes the sleeping parent with a byte on its
// doorbell, which the result thread polls together with the workers' pidfds.
#include <algorithm>
#include <cstring>
#include <new>
#include <string>
#include <string_view>
#include <system_error>

#include <mp/connection.hpp>
#include <mp/context.hpp>
#include <mp/process.hpp>

#include "pool_channel.hpp"
#include "pool_transport.hpp"
#include "posix/socket.hpp"
#include "process_state.hpp"

namespace mp::detail {
namespace {

using namespace pool_wire;

class ShmWorkerLink final : public WorkerLink {
 public:
  // Starts the worker. Throws what Process::start() throws.
  explicit ShmWorkerLink(const WorkerLaunch& launch) {
    // The heap aligns to 16 bytes; the rings want their own cache lines (64). Arenas are
    // mapped page-aligned, so an aligned offset is an aligned address in every process.
    block_ = heap_allocate(sizeof(Channel) + alignof(Channel));
    shared_ref aligned = block_;
    aligned.offset = (aligned.offset + alignof(Channel) - 1) & ~std::uint64_t{alignof(Channel) - 1};
    // Default-initialized: the control words start at zero, the ring bytes are left as
    // they are (each is written before it is read), so a worker's 512 KiB of rings cost
    // nothing until used instead of being faulted in and cleared by the parent.
    channel_ = new (heap_address(aligned)) Channel;
    try {
      auto [reader, writer] = Pipe(false);
      doorbell_ = std::move(reader);
      // Fork is replaced when unsafe (other threads alive): see pool_worker_start_method.
      const std::string method = pool_worker_start_method(launch.start_method);
      const std::string name = pool_worker_name(method, launch.number);
      process_ = ProcessAccess::make(
          ProcessOptions{.name = name, .daemon = true, .start_method = method},
          worker_target({aligned, std::move(writer), launch.initializer, launch.maxtasksperchild}));
      try {
        process_.start();
      } catch (const std::system_error& e) {
        // "mp: fork: <reason>" becomes "mp: starting ForkPoolWorker-3: fork: <reason>".
        std::string_view step = e.what();
        if (step.starts_with("mp: ")) step.remove_prefix(4);
        if (const auto reason = ": " + e.code().message(); step.ends_with(reason))
          step.remove_suffix(reason.size());
        throw std::system_error(e.code(), "mp: starting " + name + ": " + std::string(step));
      }
    } catch (...) {
      heap_free(block_);
      throw;
    }
    pid_ = process_.pid();
  }
  // The channel is freed only once the worker cannot touch it any more.
  ~ShmWorkerLink() override {
    if (process_.exitcode()) {
      heap_free(block_);
      return;
    }
    process_.kill();
    process_.join();
    heap_free(block_);
  }

  int pid() const override { return pid_; }

  std::size_t send(std::span<const OutgoingTask> tasks) override {
    Ring ring = channel_->task_ring();
    std::size_t sent = 0;
    for (const OutgoingTask& task : tasks) {
      if (!write_task(ring, task)) break;
      ++sent;
    }
    if (sent && ring.consumer_wants_wake()) ring.futex_wake_consumer();
    return sent;
  }

  bool send_stop() override {
    Ring ring = channel_->task_ring();
    if (!ring.try_write(FrameHeader::other(FrameKind::stop, 0), {})) return false;
    if (ring.consumer_wants_wake()) ring.futex_wake_consumer();
    return true;
  }

  void receive(std::vector<WorkerReply>& out) override {
    Ring ring = channel_->result_ring();
    FrameHeader header;
    std::string_view payload;
    while (ring.peek(header, payload)) {
      out.push_back(decode_reply(header, payload));
      ring.consume();
    }
  }

  bool has_replies() const override { return !channel_->result_ring().empty(); }

  std::uint64_t claimed() const override {
    return channel_->claimed.load(std::memory_order_acquire);
  }
  bool claim_instead(std::uint64_t& next) override {
    return channel_->claimed.compare_exchange_strong(next, next + 1);
  }
  bool cancel(std::uint64_t seq) override {
    std::uint64_t queued = task_state_word(seq, TaskState::queued);
    return channel_->state_of(seq).compare_exchange_strong(
        queued, task_state_word(seq, TaskState::cancelled), std::memory_order_acq_rel);
  }
  bool has_started(std::uint64_t seq) const override {
    return channel_->state_of(seq).load(std::memory_order_acquire) ==
           task_state_word(seq, TaskState::running);
  }
  std::optional<RunningTask> running_task() const override {
    const std::uint64_t running = channel_->running.load(std::memory_order_acquire);
    if (running == 0) return std::nullopt;
    using Clock = std::chrono::steady_clock;
    return RunningTask{running - 1,
                       Clock::time_point(Clock::duration(channel_->started_ns.load()))};
  }
  bool initialized() const override { return channel_->initialized.load() != 0; }

  void kill() override { process_.kill(); }
  void terminate() override { process_.terminate(); }
  void join() override { process_.join(); }
  std::optional<int> exitcode() override { return process_.exitcode(); }

  int ended_fd() const override { return process_.sentinel(); }
  int reply_fd() const override { return doorbell_open_ ? doorbell_.fileno() : -1; }
  bool arm() override {
    std::uint32_t seq;
    return channel_->result_ring().prepare_sleep(seq);
  }
  // The worker rings the doorbell only while the ring asks for it (consumer_sleeping).
  void mute() override { channel_->result_ring().cancel_sleep(); }
  bool unmute() override { return arm(); }
  void disarm(bool readable) override {
    channel_->result_ring().cancel_sleep();
    if (!readable || !doorbell_open_) return;
    char buffer[64];
    std::size_t got = 0;
    if (posix::read_some(doorbell_.fileno(), buffer, sizeof buffer, got) || got == 0)
      doorbell_open_ = false;  // the worker is ending: its pidfd will say so
  }

 private:
  bool write_task(Ring& ring, const OutgoingTask& task) {
    const auto trampoline_size = static_cast<std::uint32_t>(task.trampoline->size());
    const std::string_view size_bytes(reinterpret_cast<const char*>(&trampoline_size), 4);
    // Published with the frame (try_write's release store).
    channel_->state_of(task.seq).store(task_state_word(task.seq, TaskState::queued),
                                       std::memory_order_relaxed);
    // A large input travels in its heap block (kept until the task's reply arrives, and
    // sent again if the worker dies before starting it), which submit() allocated.
    if (const auto& block = task.input->block()) {
      const BlobRef ref{*block, task.input->size()};
      return ring.try_write(FrameHeader::task(FrameKind::task_blob, task.seq, task.job),
                            {size_bytes, *task.trampoline,
                             std::string_view(reinterpret_cast<const char*>(&ref), sizeof ref)});
    }
    return ring.try_write(FrameHeader::task(FrameKind::task, task.seq, task.job),
                          {size_bytes, *task.trampoline, task.input->view()});
  }

  // A payload in the frame, or in the heap block it names (which is then owned by the
  // returned bytes, or freed).
  static PoolBytes frame_bytes(std::string_view payload, bool blob) {
    if (!blob) return PoolBytes(std::string(payload));
    BlobRef ref;
    if (payload.size() < sizeof ref) return PoolBytes();
    std::memcpy(&ref, payload.data(), sizeof ref);
    return PoolBytes::adopt(ref.ref, ref.size);  // read in place, freed with it
  }

  static WorkerReply decode_reply(const FrameHeader& header, std::string_view payload) {
    WorkerReply reply;
    reply.seq = header.seq;
    switch (header.kind) {
      case FrameKind::result:
      case FrameKind::result_blob:
        reply.kind = WorkerReply::Kind::result;
        reply.run_ns = header.run_ns();
        reply.result = frame_bytes(payload, header.kind == FrameKind::result_blob);
        return reply;
      case FrameKind::init_failed:
      case FrameKind::init_failed_blob:
        reply.kind = WorkerReply::Kind::init_failed;
        break;
      default:
        reply.kind = WorkerReply::Kind::error;
        break;
    }
    const bool blob =
        header.kind == FrameKind::error_blob || header.kind == FrameKind::init_failed_blob;
    const PoolBytes bytes = frame_bytes(payload, blob);
    ErrorText error = decode_error(bytes.view());
    reply.error_type = std::move(error.type);
    reply.error_message = std::move(error.message);
    reply.error_traceback = std::move(error.traceback);
    reply.error_item = error.item;
    return reply;
  }

  Process process_;
  shared_ref block_{};
  Channel* channel_ = nullptr;
  Connection doorbell_;
  bool doorbell_open_ = true;
  int pid_ = 0;
};

class ShmTransport final : public WorkerTransport {
 public:
  ShmTransport() : WorkerTransport(kInlineMax, kStateSlots) {}
  std::unique_ptr<WorkerLink> start(const WorkerLaunch& launch) override {
    return std::make_unique<ShmWorkerLink>(launch);
  }
};

}  // namespace

std::unique_ptr<WorkerTransport> make_shared_memory_transport() {
  return std::make_unique<ShmTransport>();
}

}  // namespace mp::detail
