// The segment of a Manager, inside lib/src: its layout, and the transaction every
// operation of every container runs in (ManagerTransaction). The container kinds
// (manager_dict.cpp, manager_list.cpp) build on it; manager_segment.cpp holds ManagerCore.
//
// Segment layout (offsets from the segment's start, the same in every process):
//   - a header: magic, size, the recovery counters, and its lanes (one, or kMaxLanes in a
//     segment of at least kLanedSegmentSize bytes). A lane is a robust lock with what an
//     operation under it needs: an undo journal, an operation counter and an allocator
//     (free lists and a region of the segment to bump through);
//   - blocks of 2^k bytes (k >= 5), each a 16-byte block header (size class, the operation
//     that allocated it, the free-list link) and a payload. Payloads are named by offset.
//
// Concurrency: an operation holds one lane, or every lane (taken in increasing order).
// A dict spreads its keys over one stripe per lane (by hash), so that writers of
// different keys mostly hold different lanes; a list's or a value's operations hold lane
// 0. A one-lane operation changes only words its lane guards: its stripe, its lane's
// allocator. An operation holding every lane changes anything and logs in lane 0's
// journal; while it holds lane j > 0, that lane's `in_multi` is set, so that a process
// taking lane j over from it (dead) first takes lane 0 (rolling the dead operation back)
// before it uses what lane j guards.
//
// Crash consistency: every operation is a transaction under its lane(s).
//   - Before it changes a word that existed before the operation, it appends (offset,
//     old value) to the journal and then bumps the journal's count (undo logging). Memory
//     the operation allocated itself (a node, a new table) is written freely: nothing
//     reachable points to it until a logged word does.
//   - Blocks an operation makes unreachable are freed only at its end, so no block is
//     reused (and overwritten) while the operation could still be rolled back.
//   - Committing is one store: the journal's count back to 0.
//   - A process that takes a lane over from a dead holder (the lock's `recovered`) finds
//     a non-zero count, writes the logged old values back in reverse order (idempotent, so
//     dying during this is fine too) and sets the count to 0: the dead operation never
//     happened. An operation that throws (a full segment, a user's function) is rolled back
//     the same way by its own process.
// The allocator's words (bump pointers, free-list heads) are logged like any other, so
// allocation and freeing are part of the transaction and a crash never leaks a block.
// Operations that would log an unbounded number of words (a big update(), clear(), an
// insert into the middle of a list) build fresh arrays instead and swap a few root
// words, so the journal's fixed capacity always suffices.
#pragma once

#include <algorithm>
#include <atomic>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <mp/detail/lock_state.hpp>
#include <mp/detail/manager_core.hpp>
#include <mp/errors.hpp>

#include "lock_core.hpp"

namespace mp::detail {

constexpr std::uint64_t kSegmentMagic = 0x3267736d706d00;  // "\0mpmsg2"
constexpr unsigned kMinClass = 5;                          // 32-byte blocks
constexpr unsigned kMaxClass = 40;
constexpr unsigned kClassCount = kMaxClass - kMinClass + 1;
constexpr std::uint64_t kBlockHeaderSize = 16;
constexpr std::size_t kJournalCapacity = 256;
constexpr std::size_t kMinSegmentSize = std::size_t{1} << 16;
// Segments of at least this size have kMaxLanes lanes, smaller ones one.
// (Small ones have one: a dict's stripes each keep tables with room to grow, which a small
// segment cannot spare.)
constexpr std::size_t kLanedSegmentSize = std::size_t{1} << 24;
constexpr std::size_t kMaxLanes = 8;
// The heap adds its own headers (32 bytes) to the segment: subtracting them keeps a
// segment of 2^k bytes in a heap block of 2^k bytes.
constexpr std::size_t kHeapOverhead = 32;

struct JournalEntry {
  std::uint64_t offset;
  std::uint64_t old_value;
};

struct Lane {
  LockState lock;
  std::atomic<std::uint64_t> in_multi;  // 1 while an operation holding every lane holds it
  std::uint64_t operations;             // counts operations; stamps the blocks each one allocates
  std::uint64_t bump;                   // this lane's next new block, below `end`
  std::uint64_t end;
  std::uint64_t free_heads[kClassCount];
  std::atomic<std::uint64_t> journal_count;
  JournalEntry journal[kJournalCapacity];
};

struct SegmentHeader {
  std::uint64_t magic;
  std::uint64_t size;
  std::uint64_t lane_count;
  std::uint64_t first_block;
  std::atomic<std::uint64_t> takeovers;    // lanes taken over from dead holders
  std::atomic<std::uint64_t> rolled_back;  // operations of dead holders undone
};

// Lanes start at kLanesOffset, kLaneStride bytes apart (whole cache lines).
constexpr std::uint64_t kLanesOffset = (sizeof(SegmentHeader) + 63) / 64 * 64;
constexpr std::uint64_t kLaneStride = (sizeof(Lane) + 63) / 64 * 64;

inline std::size_t lanes_for(std::size_t segment_size) {
  return segment_size >= kLanedSegmentSize ? kMaxLanes : 1;
}
inline std::uint64_t first_block_for(std::size_t lanes) {
  return kLanesOffset + lanes * kLaneStride;
}

struct BlockHeader {
  // The size class in the low 8 bits, above them the number of the operation that
  // allocated the block (56 bits: never wraps). Numbers are per lane: a block freed by
  // an operation of another lane with the same number only has its link logged needlessly.
  std::uint64_t class_and_stamp;
  std::uint64_t next;  // free-list link (payload offset), meaningful only while free
};
static_assert(sizeof(BlockHeader) == kBlockHeaderSize);

// Every container's root is an array of words; the first two are the same for all.
constexpr std::uint64_t kRootKind = 0;  // kRootMagic | the ContainerKind
constexpr std::uint64_t kRootFingerprint = 1;
constexpr std::uint64_t kRootMagic = 0x6d706374'00000000;  // "mpct" in the high half

// What one thread's current operation needs besides the segment; reused so that an
// operation does not allocate (operations of one thread never nest).
struct Scratch {
  std::vector<std::uint64_t> to_free;
  std::vector<std::pair<std::uint64_t, std::uint64_t>> fresh;  // [begin, end) of new arrays
  std::string copy;
};

inline Scratch& scratch() {  // this thread's (one instance in every file: an inline function)
  thread_local Scratch instance;
  return instance;
}

// Thrown by a one-lane operation on a lane other than 0 whose allocator has no room: the
// caller runs the operation again holding every lane (whose allocation may use any lane's
// room).
struct LaneFull {};

// Asks ManagerTransaction for every lane.
struct AllLanes {};

// One operation on a segment: holds its lane(s), logs, allocates, commits or rolls back.
class ManagerTransaction {
 public:
  // Lane 0 (lists, values, diagnostics); it takes every lane if lane 0 runs out of room.
  // Throws std::logic_error on a handle that refers to nothing.
  explicit ManagerTransaction(const ManagerCore& core) : ManagerTransaction(core, 0) {}
  ManagerTransaction(const ManagerCore& core, std::size_t lane)
      : base_((core.check_bound(), core.segment())),
        header_(*reinterpret_cast<SegmentHeader*>(base_)),
        first_(lane) {
    take(lane);
    held_ = lane + 1;
    lane_ = &lane_at(lane);
    ++lane_->operations;
    reset_scratch();
  }
  ManagerTransaction(const ManagerCore& core, AllLanes) : ManagerTransaction(core, 0) { widen(); }
  ~ManagerTransaction() {
    if (!committed_) roll_back(*lane_);
    for (std::size_t j = held_; j-- > first_;) {
      if (j != first_) lane_at(j).in_multi.store(0, std::memory_order_relaxed);
      release(lane_at(j).lock);
    }
  }
  ManagerTransaction(const ManagerTransaction&) = delete;
  ManagerTransaction& operator=(const ManagerTransaction&) = delete;

  // The word at `offset` of a segment, read without any lane: only for words that never
  // change after the operation that wrote them (a dict's stripes).
  static std::uint64_t fixed_word(const ManagerCore& core, std::uint64_t offset) {
    core.check_bound();
    return *reinterpret_cast<const std::uint64_t*>(core.segment() + offset);
  }

  std::byte* at(std::uint64_t offset) const { return base_ + offset; }
  std::uint64_t& word(std::uint64_t offset) const {
    return *reinterpret_cast<std::uint64_t*>(base_ + offset);
  }
  const SegmentHeader& header() const { return header_; }
  std::size_t lane_count() const { return header_.lane_count; }
  std::uint64_t root_word(std::uint64_t root, std::uint64_t index) const {
    return word(root + index * 8);
  }
  void set_root_word(std::uint64_t root, std::uint64_t index, std::uint64_t value) {
    write(root + index * 8, value);
  }

  // Changes a word, logging its old value unless the operation allocated it.
  void write(std::uint64_t offset, std::uint64_t value) {
    if (!is_fresh(offset)) log(offset);
    word(offset) = value;
  }

  // A payload of at least `bytes` bytes, contents unspecified. Throws mp::HeapExhausted,
  // or LaneFull from a one-lane operation on a lane other than 0.
  std::uint64_t allocate(std::uint64_t bytes) {
    const std::uint64_t wanted = bytes + kBlockHeaderSize;
    if (wanted > header_.size || wanted < bytes) throw_full(bytes);
    const unsigned size_class =
        std::max(kMinClass, static_cast<unsigned>(std::bit_width(wanted - 1)));
    std::uint64_t payload = allocate_in(*lane_, size_class);
    if (payload == 0) {
      if (held_ - first_ == 1 && first_ != 0) throw LaneFull{};
      widen();  // lane 0's operations may take the others: they come later in the order
      for (std::size_t j = 0; j < held_ && payload == 0; ++j)
        payload = allocate_in(lane_at(j), size_class);
      if (payload == 0) throw_full(bytes);
    }
    block(payload).class_and_stamp = size_class | (lane_->operations << 8);
    return payload;
  }
  // An array of `count` words, zeroed, that this operation may write without logging.
  std::uint64_t allocate_array(std::uint64_t count) {
    const std::uint64_t payload = allocate(count * 8);
    std::memset(at(payload), 0, count * 8);
    scratch().fresh.emplace_back(payload, payload + count * 8);
    return payload;
  }
  // A new container's root of `words` words (the first two its kind and fingerprint,
  // the others for the container to set, unlogged, before it commits).
  std::uint64_t allocate_root(ContainerKind kind, std::uint64_t fingerprint, std::uint64_t words) {
    const std::uint64_t root = allocate(words * 8);
    word(root + kRootKind * 8) = kRootMagic | static_cast<std::uint32_t>(kind);
    word(root + kRootFingerprint * 8) = fingerprint;
    return root;
  }
  // Empties this thread's scratch lists. DictCore::modify calls it again after the user's
  // function, which may have run operations of other managers (they reuse the lists).
  void reset_scratch() {
    scratch().to_free.clear();
    scratch().fresh.clear();
  }
  // Frees the payload when the operation commits.
  void free_later(std::uint64_t payload) { scratch().to_free.push_back(payload); }

  void commit() {
    for (const std::uint64_t payload : scratch().to_free) free_now(payload);
    std::atomic_signal_fence(std::memory_order_seq_cst);
    lane_->journal_count.store(0, std::memory_order_release);
    committed_ = true;
  }

 private:
  Lane& lane_at(std::size_t j) const {
    return *reinterpret_cast<Lane*>(base_ + kLanesOffset + j * kLaneStride);
  }
  BlockHeader& block(std::uint64_t payload) const {
    return *reinterpret_cast<BlockHeader*>(base_ + payload - kBlockHeaderSize);
  }

  // The lane locks' uncontended paths inline (one compare-and-swap, one compare-and-swap
  // back), as Lock's; anything else through the robust lock's own functions.
  static void acquire(LockState& lock) {
    std::uint64_t expected = 0;
    if (!lock.word.compare_exchange_strong(expected, current_owner_id(), std::memory_order_acquire,
                                           std::memory_order_relaxed)) [[unlikely]]
      robust_lock_acquire(lock, true, std::nullopt);
  }
  static void release(LockState& lock) {
    std::uint64_t expected = current_owner_id();
    if (lock.recovered.load(std::memory_order_relaxed) != 0 ||
        !lock.word.compare_exchange_strong(expected, 0, std::memory_order_release,
                                           std::memory_order_relaxed)) [[unlikely]]
      robust_lock_release(lock);
  }

  // Takes lane j's lock; rolls a dead holder's operation back.
  void take(std::size_t j) {
    Lane& lane = lane_at(j);
    acquire(lane.lock);
    if (lane.lock.recovered.load(std::memory_order_relaxed) != 0) [[unlikely]] {
      // Counted before the rollback: if this process dies during it, the next one counts
      // again, which only overstates the diagnostics.
      header_.takeovers.fetch_add(1, std::memory_order_relaxed);
      if (lane.journal_count.load(std::memory_order_relaxed) != 0) {
        header_.rolled_back.fetch_add(1, std::memory_order_relaxed);
        roll_back(lane);
      }
    }
    if (j != 0 && first_ != 0 && lane.in_multi.load(std::memory_order_relaxed) != 0) [[unlikely]] {
      // An operation holding every lane died holding this one; its journal is lane 0's.
      // Lane 0 first (rolling it back), then this one again: the lanes' order.
      release(lane.lock);
      take(0);
      acquire(lane.lock);
      lane.in_multi.store(0, std::memory_order_relaxed);
      release(lane_at(0).lock);
    }
  }

  // Takes the lanes after those held (only from lane 0): an operation on every lane.
  void widen() {
    for (; held_ < header_.lane_count; ++held_) {
      take(held_);
      lane_at(held_).in_multi.store(1, std::memory_order_relaxed);
    }
  }

  std::uint64_t allocate_in(Lane& lane, unsigned size_class) {
    const std::uint64_t head_offset = offset_of(&lane.free_heads[size_class - kMinClass]);
    std::uint64_t payload = word(head_offset);
    if (payload != 0) {
      write(head_offset, block(payload).next);
      return payload;
    }
    const std::uint64_t block_size = std::uint64_t{1} << size_class;
    const std::uint64_t start = lane.bump;
    if (block_size > lane.end - start) return 0;
    write(offset_of(&lane.bump), start + block_size);
    return start + kBlockHeaderSize;
  }

  std::uint64_t offset_of(const void* p) const {
    return static_cast<std::uint64_t>(static_cast<const std::byte*>(p) - base_);
  }

  bool is_fresh(std::uint64_t offset) const {
    for (const auto& [begin, end] : scratch().fresh)
      if (offset >= begin && offset < end) return true;
    return false;
  }

  void log(std::uint64_t offset) {
    const std::uint64_t count = lane_->journal_count.load(std::memory_order_relaxed);
    for (std::uint64_t i = 0; i < count; ++i)
      if (lane_->journal[i].offset == offset) return;  // the oldest value is logged already
    if (count == kJournalCapacity)  // a bug: every operation bounds the words it logs
      throw std::logic_error("mp::Manager: operation too large for the journal");
    lane_->journal[count] = {offset, word(offset)};
    // The entry is complete before it counts, and it counts before the word changes: a
    // process killed between any two of these steps leaves a journal that undoes exactly
    // what happened.
    std::atomic_signal_fence(std::memory_order_seq_cst);
    lane_->journal_count.store(count + 1, std::memory_order_relaxed);
    std::atomic_signal_fence(std::memory_order_seq_cst);
  }

  void free_now(std::uint64_t payload) {
    BlockHeader& freed = block(payload);
    const std::uint64_t head_offset =
        offset_of(&lane_->free_heads[(freed.class_and_stamp & 0xff) - kMinClass]);
    // The link of a block that was allocated before this operation is dead while the
    // block is allocated, so a rollback need not restore it. A block this operation took
    // from a free list needs its old link back on rollback: log it.
    const std::uint64_t link_offset = payload - kBlockHeaderSize + offsetof(BlockHeader, next);
    if ((freed.class_and_stamp >> 8) == lane_->operations)
      write(link_offset, word(head_offset));
    else
      word(link_offset) = word(head_offset);
    write(head_offset, payload);
  }

  void roll_back(Lane& lane) noexcept {
    const std::uint64_t count = lane.journal_count.load(std::memory_order_relaxed);
    for (std::uint64_t i = count; i-- > 0;)
      word(lane.journal[i].offset) = lane.journal[i].old_value;
    std::atomic_signal_fence(std::memory_order_seq_cst);
    lane.journal_count.store(0, std::memory_order_release);
  }

  [[noreturn]] void throw_full(std::uint64_t bytes) const {
    throw HeapExhausted("mp::Manager segment full (" + std::to_string(header_.size) +
                            " bytes; see ManagerOptions::segment_size): cannot allocate " +
                            std::to_string(bytes) + " bytes",
                        bytes, header_.size);
  }

  std::byte* base_;
  SegmentHeader& header_;
  Lane* lane_ = nullptr;  // whose journal and allocator come first: first_'s
  std::size_t first_;     // the lanes held: [first_, held_)
  std::size_t held_ = 0;
  bool committed_ = false;
};

// An item node of a list or a value: length, bytes.
constexpr std::uint64_t kItemHeader = 8;

inline std::uint64_t new_item(ManagerTransaction& t, std::string_view bytes) {
  const std::uint64_t node = t.allocate(kItemHeader + bytes.size());
  const std::uint64_t size = bytes.size();
  std::memcpy(t.at(node), &size, 8);
  std::memcpy(t.at(node + kItemHeader), bytes.data(), bytes.size());
  return node;
}

inline std::string_view item_at(const ManagerTransaction& t, std::uint64_t node) {
  std::uint64_t size;
  std::memcpy(&size, t.at(node), 8);
  return std::string_view(reinterpret_cast<const char*>(t.at(node + kItemHeader)), size);
}

}  // namespace mp::detail
