// The segment of a Manager, inside lib/src: its layout, and the transaction every
// operation of every container runs in (ManagerTransaction). The container kinds
// (manager_dict.cpp, manager_list.cpp) build on it; manager_segment.cpp holds ManagerCore.
//
// Segment layout (offsets from the segment's start, the same in every process):
//   - a header: magic, size, the allocator's bump pointer and free lists, the operation
//     counter and the undo journal;
//   - blocks of 2^k bytes (k >= 5), each a 16-byte block header (size class, the operation
//     that allocated it, the free-list link) and a payload. Payloads are named by offset.
//
// Crash consistency: every operation is a transaction under the lock.
//   - Before it changes a word that existed before the operation, it appends (offset,
//     old value) to the journal and then bumps the journal's count (undo logging). Memory
//     the operation allocated itself (a node, a new table) is written freely: nothing
//     reachable points to it until a logged word does.
//   - Blocks an operation makes unreachable are freed only at its end, so no block is
//     reused (and overwritten) while the operation could still be rolled back.
//   - Committing is one store: the journal's count back to 0.
//   - A process that takes the lock over from a dead holder (Lock::recovered()) finds a
//     non-zero count, writes the logged old values back in reverse order (idempotent, so
//     dying during this is fine too) and sets the count to 0: the dead operation never
//     happened. An operation that throws (a full segment, a user's function) is rolled back
//     the same way by its own process.
// The allocator's words (bump pointer, free-list heads) are logged like any other, so
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
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <mp/detail/manager_core.hpp>
#include <mp/errors.hpp>

namespace mp::detail {

constexpr std::uint64_t kSegmentMagic = 0x3167736d706d00;  // "\0mpmsg1"
constexpr unsigned kMinClass = 5;                          // 32-byte blocks
constexpr unsigned kMaxClass = 40;
constexpr unsigned kClassCount = kMaxClass - kMinClass + 1;
constexpr std::uint64_t kBlockHeaderSize = 16;
constexpr std::size_t kJournalCapacity = 256;
constexpr std::size_t kMinSegmentSize = std::size_t{1} << 16;
// The heap adds its own headers (32 bytes) to the segment: subtracting them keeps a
// segment of 2^k bytes in a heap block of 2^k bytes.
constexpr std::size_t kHeapOverhead = 32;

struct JournalEntry {
  std::uint64_t offset;
  std::uint64_t old_value;
};

struct SegmentHeader {
  std::uint64_t magic;
  std::uint64_t size;
  std::uint64_t bump;
  std::uint64_t operations;   // counts operations; stamps the blocks each one allocates
  std::uint64_t takeovers;    // locks taken over from dead holders
  std::uint64_t rolled_back;  // operations of dead holders undone
  std::uint64_t free_heads[kClassCount];
  std::atomic<std::uint64_t> journal_count;
  JournalEntry journal[kJournalCapacity];
};

constexpr std::uint64_t kFirstBlock = (sizeof(SegmentHeader) + 63) / 64 * 64;

struct BlockHeader {
  // The size class in the low 8 bits, above them the number of the operation that
  // allocated the block (56 bits: never wraps).
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

// One operation on a segment: holds the lock, logs, allocates, commits or rolls back.
class ManagerTransaction {
 public:
  // Takes the lock. Throws std::logic_error on a handle that refers to nothing.
  explicit ManagerTransaction(const ManagerCore& core)
      : lock_((core.check_bound(), *core.lock_)),
        base_(core.segment()),
        header_(*reinterpret_cast<SegmentHeader*>(base_)) {
    lock_.acquire();
    if (lock_.recovered()) [[unlikely]] {
      // Counted before the rollback: if this process dies during it, the next one counts
      // again, which only overstates the diagnostics.
      ++header_.takeovers;
      if (header_.journal_count.load(std::memory_order_relaxed) != 0) ++header_.rolled_back;
      roll_back();
    }
    ++header_.operations;
    reset_scratch();
  }
  ~ManagerTransaction() {
    if (!committed_) roll_back();
    lock_.release();
  }
  ManagerTransaction(const ManagerTransaction&) = delete;
  ManagerTransaction& operator=(const ManagerTransaction&) = delete;

  std::byte* at(std::uint64_t offset) const { return base_ + offset; }
  std::uint64_t& word(std::uint64_t offset) const {
    return *reinterpret_cast<std::uint64_t*>(base_ + offset);
  }
  const SegmentHeader& header() const { return header_; }
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

  // A payload of at least `bytes` bytes, contents unspecified. Throws mp::HeapExhausted.
  std::uint64_t allocate(std::uint64_t bytes) {
    const std::uint64_t wanted = bytes + kBlockHeaderSize;
    if (wanted > header_.size || wanted < bytes) throw_full(bytes);
    const unsigned size_class =
        std::max(kMinClass, static_cast<unsigned>(std::bit_width(wanted - 1)));
    const std::uint64_t head_offset =
        offsetof(SegmentHeader, free_heads) + (size_class - kMinClass) * 8;
    std::uint64_t payload = word(head_offset);
    if (payload != 0) {
      write(head_offset, block(payload).next);
    } else {
      const std::uint64_t block_size = std::uint64_t{1} << size_class;
      const std::uint64_t start = header_.bump;
      if (block_size > header_.size - start) throw_full(bytes);
      write(offsetof(SegmentHeader, bump), start + block_size);
      payload = start + kBlockHeaderSize;
    }
    block(payload).class_and_stamp = size_class | (header_.operations << 8);
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
    header_.journal_count.store(0, std::memory_order_release);
    committed_ = true;
  }

 private:
  BlockHeader& block(std::uint64_t payload) const {
    return *reinterpret_cast<BlockHeader*>(base_ + payload - kBlockHeaderSize);
  }

  bool is_fresh(std::uint64_t offset) const {
    for (const auto& [begin, end] : scratch().fresh)
      if (offset >= begin && offset < end) return true;
    return false;
  }

  void log(std::uint64_t offset) {
    const std::uint64_t count = header_.journal_count.load(std::memory_order_relaxed);
    for (std::uint64_t i = 0; i < count; ++i)
      if (header_.journal[i].offset == offset) return;  // the oldest value is logged already
    if (count == kJournalCapacity)  // a bug: every operation bounds the words it logs
      throw std::logic_error("mp::Manager: operation too large for the journal");
    header_.journal[count] = {offset, word(offset)};
    // The entry is complete before it counts, and it counts before the word changes: a
    // process killed between any two of these steps leaves a journal that undoes exactly
    // what happened.
    std::atomic_signal_fence(std::memory_order_seq_cst);
    header_.journal_count.store(count + 1, std::memory_order_relaxed);
    std::atomic_signal_fence(std::memory_order_seq_cst);
  }

  void free_now(std::uint64_t payload) {
    BlockHeader& freed = block(payload);
    const std::uint64_t head_offset =
        offsetof(SegmentHeader, free_heads) + ((freed.class_and_stamp & 0xff) - kMinClass) * 8;
    // The link of a block that was allocated before this operation is dead while the
    // block is allocated, so a rollback need not restore it. A block this operation took
    // from a free list needs its old link back on rollback: log it.
    const std::uint64_t link_offset = payload - kBlockHeaderSize + offsetof(BlockHeader, next);
    if ((freed.class_and_stamp >> 8) == header_.operations)
      write(link_offset, word(head_offset));
    else
      word(link_offset) = word(head_offset);
    write(head_offset, payload);
  }

  void roll_back() noexcept {
    const std::uint64_t count = header_.journal_count.load(std::memory_order_relaxed);
    for (std::uint64_t i = count; i-- > 0;)
      word(header_.journal[i].offset) = header_.journal[i].old_value;
    std::atomic_signal_fence(std::memory_order_seq_cst);
    header_.journal_count.store(0, std::memory_order_release);
  }

  [[noreturn]] void throw_full(std::uint64_t bytes) const {
    throw HeapExhausted("mp::Manager segment full (" + std::to_string(header_.size) +
                            " bytes; see ManagerOptions::segment_size): cannot allocate " +
                            std::to_string(bytes) + " bytes",
                        bytes, header_.size);
  }

  Lock& lock_;
  std::byte* base_;
  SegmentHeader& header_;
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
