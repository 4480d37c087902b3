// Private to mp: the byte ring of mp::Pool's shared-memory transport and the frames it
// carries. lib/src/pool_worker.cpp and lib/src/pool_shm_transport.cpp write and read
// frames with these types only; nothing here knows about tasks or processes, so a test
// or fuzz target can drive a Ring over plain memory.
//
// A ring is a single-producer single-consumer queue of frames in kRingSize bytes. A
// frame is a 24-byte FrameHeader and its payload, 8-byte aligned, never split across
// the ring's end (a padding frame fills the tail instead; a tail too short for a header
// is skipped by both sides). The producer publishes a frame by advancing `head`
// (release); the consumer frees space by advancing `tail`. Nobody sleeps while there is
// work: a consumer spins briefly, then sets `consumer_sleeping`, re-checks and sleeps;
// the producer, after publishing, wakes it only if that flag was set. So a busy pipeline
// makes no system calls at all.
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <initializer_list>
#include <string_view>

#include <mp/detail/heap.hpp>

#include "posix/futex.hpp"
#include "spin.hpp"

namespace mp::detail::pool_wire {

constexpr std::size_t kRingSize = 256 * 1024;  // per direction, a power of two

enum class FrameKind : std::uint32_t {
  padding = 1,
  task,         // payload: the task's payload (see pool_channel.hpp); word: the job tag
  task_blob,    // payload: u32 trampoline size, trampoline pickle, BlobRef of the input
  stop,         // the worker exits
  result,       // payload: the pickled result; word: run time in ns
  result_blob,  // payload: BlobRef of the pickled result; word: run time in ns
  error,        // payload: an error (see pool_channel.hpp)
  init_failed,  // payload: as error
  error_blob,   // payload: BlobRef of an error's payload (a long message)
  init_failed_blob,
};

// A frame's header. Its 64-bit `word` means one thing per kind, read and written only
// through the named accessors.
struct FrameHeader {
  std::uint32_t size = 0;  // of the payload
  FrameKind kind = FrameKind::padding;
  std::uint64_t seq = 0;  // the task's sequence number in its channel

  static FrameHeader task(FrameKind kind, std::uint64_t seq, std::uint64_t job) {
    return {0, kind, seq, job};
  }
  static FrameHeader result(FrameKind kind, std::uint64_t seq, std::uint64_t run_ns) {
    return {0, kind, seq, run_ns};
  }
  static FrameHeader other(FrameKind kind, std::uint64_t seq) { return {0, kind, seq, 0}; }

  // Task frames: the tag shared by the tasks of one batched job, 0 for none.
  std::uint64_t job() const { return word; }
  // Result frames: how long the task ran, in ns.
  std::uint64_t run_ns() const { return word; }

  std::uint64_t word = 0;
};
static_assert(sizeof(FrameHeader) == 24);

// A payload that travels out of line: a block of the shared heap and its length.
struct BlobRef {
  shared_ref ref;
  std::uint64_t size = 0;
};
static_assert(sizeof(BlobRef) == 24);

struct alignas(64) RingControl {
  alignas(64) std::atomic<std::uint64_t> head{0};  // written by the producer
  std::atomic<std::uint32_t> data_seq{0};          // futex: bumped to wake the consumer
  std::atomic<std::uint32_t> consumer_sleeping{0};
  alignas(64) std::atomic<std::uint64_t> tail{0};  // written by the consumer
  std::atomic<std::uint32_t> space_seq{0};         // futex: bumped to wake the producer
  std::atomic<std::uint32_t> producer_sleeping{0};
};

constexpr std::size_t align8(std::size_t n) { return (n + 7) & ~std::size_t{7}; }

// One direction of a channel, seen by either side.
class Ring {
 public:
  Ring(RingControl& control, char* data) : control_(control), data_(data) {}

  // Producer: appends a frame made of `parts` if it fits now (header.size is set here).
  // Never blocks.
  bool try_write(FrameHeader header, std::initializer_list<std::string_view> parts) {
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
      if (padding >= sizeof(FrameHeader)) {
        FrameHeader pad = FrameHeader::other(FrameKind::padding, 0);
        pad.size = static_cast<std::uint32_t>(padding - sizeof(FrameHeader));
        std::memcpy(data_ + pos, &pad, sizeof pad);
      }
      head += padding;
      pos = 0;
    }
    header.size = static_cast<std::uint32_t>(size);
    std::memcpy(data_ + pos, &header, sizeof header);
    char* out = data_ + pos + sizeof header;
    for (auto part : parts) {
      std::memcpy(out, part.data(), part.size());
      out += part.size();
    }
    control_.head.store(head + need, std::memory_order_release);
    return true;
  }

  // Producer: whether the consumer asked to be woken (clears the request). Call after a
  // write.
  bool consumer_wants_wake() {
    std::atomic_thread_fence(std::memory_order_seq_cst);
    return control_.consumer_sleeping.load(std::memory_order_relaxed) != 0 &&
           control_.consumer_sleeping.exchange(0) != 0;
  }
  // Producer: whether the consumer asks to be woken, leaving the request in place.
  bool consumer_asks_wake() const {
    std::atomic_thread_fence(std::memory_order_seq_cst);
    return control_.consumer_sleeping.load(std::memory_order_relaxed) != 0;
  }
  void futex_wake_consumer() {
    control_.data_seq.fetch_add(1);
    posix::futex_wake(control_.data_seq, 1);
  }

  bool empty() const {
    return control_.tail.load(std::memory_order_relaxed) ==
           control_.head.load(std::memory_order_acquire);
  }

  // Consumer: the next frame, if any (skipping padding). The payload stays valid until
  // consume(). A frame whose size runs past the ring's end is reported as a zero-size
  // frame of its kind (only a corrupt producer writes one).
  bool peek(FrameHeader& header, std::string_view& payload) {
    const std::uint64_t tail = control_.tail.load(std::memory_order_relaxed);
    std::uint64_t at = tail;
    if (!record_at(at, header)) return false;
    if (at != tail) control_.tail.store(at, std::memory_order_release);  // past padding
    next_tail_ = at + align8(sizeof(FrameHeader) + header.size);
    payload = std::string_view(data_ + (at & (kRingSize - 1)) + sizeof header, header.size);
    return true;
  }
  // Consumer: how many of the next frames (at most `limit`) carry job tag `job`, from the
  // first on, not counting frames numbered below `min_seq`.
  std::size_t queued_of(std::uint64_t job, std::size_t limit, std::uint64_t min_seq) const {
    std::uint64_t at = control_.tail.load(std::memory_order_relaxed);
    std::size_t count = 0;
    FrameHeader header;
    while (count < limit && record_at(at, header)) {
      at += align8(sizeof(FrameHeader) + header.size);
      if (header.seq < min_seq) continue;
      if (header.job() != job) break;
      ++count;
    }
    return count;
  }

  // Consumer: frees the frame peek() returned, waking a producer that waits for space.
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

  // Consumer (futex side): waits until a frame is there. The spin learns (`history`,
  // kept by the consumer): a worker whose tasks come too rarely for a spin to find them
  // (a remote feeder, a loaded machine) sleeps at once instead of holding a CPU that its
  // feeder may need.
  void wait_data(SpinHistory& history) {
    if (adaptive_spin_until([this] { return !empty(); }, kRingDataSpin, history)) return;
    while (empty()) {
      std::uint32_t seq;
      if (!prepare_sleep(seq)) return;
      (void)posix::futex_wait(control_.data_seq, seq, posix::Deadline::never());
      control_.consumer_sleeping.store(0);
    }
  }

  // Producer: waits until the consumer frees some space.
  void wait_space(std::uint64_t known_tail) {
    const auto space = [&] { return control_.tail.load(std::memory_order_acquire) != known_tail; };
    if (spin_until(space, kRingSpaceSpin)) return;
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
  // Producer: the end of the frames written so far.
  std::uint64_t head() const { return control_.head.load(std::memory_order_relaxed); }

 private:
  // Consumer: the header of the frame at or after `at` (moved past padding), if the
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
      if (header.kind != FrameKind::padding) {
        if (header.size > kRingSize - pos - sizeof header) header.size = 0;  // corrupt
        return true;
      }
      at += kRingSize - pos;
    }
  }

  RingControl& control_;
  char* data_;
  std::uint64_t next_tail_ = 0;
};

}  // namespace mp::detail::pool_wire
