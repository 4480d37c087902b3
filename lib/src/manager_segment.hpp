// The segment of a Manager, inside lib/src: its layout, and the transaction every
// operation of every container runs in (ManagerTransaction). The container kinds
// (manager_dict.cpp, manager_list.cpp) build on it; manager_segment.cpp holds ManagerCore.
//
// Segment layout (offsets from the segment's start, the same in every process):
//   - a header: magic (with the layout's version), size, the allocator's free lists and
//     its list of blocks waiting to be freed, the operation counter and the undo journal;
//   - blocks of 2^k bytes (k >= 5), each aligned to its size (offsets from the segment's
//     start) and made of a 16-byte block header (a tag: state, size class and the
//     operation that allocated it; a link) and a payload. Payloads are named by offset.
//
// The allocator is a binary buddy system: the space after the header starts as the
// largest aligned blocks that fit; allocation splits the smallest free block that is
// large enough, putting the upper halves on their lists; freeing merges a block with its
// buddy (the other half of the block of twice the size) while that is free and whole, so
// that freed small blocks serve large arrays again. The free lists are doubly linked (a
// free block's first payload word links backwards; the head's is meaningless) so that a
// buddy can leave the middle of its list.
//
// Crash consistency: every operation is a transaction under the lock.
//   - Before it changes a word that existed before the operation, it appends (offset,
//     old value) to the journal and then bumps the journal's count (undo logging). Memory
//     the operation allocated itself (a node, a new table) is written freely: nothing
//     reachable points to it until a logged word does.
//   - Blocks an operation makes unreachable are freed only at its end, so no block is
//     reused (and overwritten) while the operation could still be rolled back. A few
//     are freed in the operation's own journal, just before the commit. More would not
//     fit in it: they are chained (through their block headers' links) into the list of
//     blocks to free, whose head is a logged header word, and committing publishes the
//     list. Each block is then freed in a step of its own (taking it off that list,
//     merging, committing), so the journal stays bounded however many blocks an
//     operation frees, and a holder killed half-way leaves the rest on the list for the
//     next operation.
//   - Committing is one store: the journal's count back to 0.
//   - A process that takes the lock over from a dead holder (Lock::recovered()) finds a
//     non-zero count, writes the logged old values back in reverse order (idempotent, so
//     dying during this is fine too) and sets the count to 0: the dead operation never
//     happened. An operation that throws (a full segment, a user's function) is rolled back
//     the same way by its own process. Then it frees what the list of blocks to free holds.
// The allocator's words are part of the transaction too, so a crash never leaks a block.
// Freeing logs every word it changes. Allocation logs only the free-list heads (so that
// an operation allocating many blocks logs a bounded number of words): the blocks it took
// are a prefix of their restored lists, the ones not tagged free, and the rollback
// re-tags them and rewrites their backward links.
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

// The last byte is the layout's version: a segment of another layout is refused.
constexpr std::uint64_t kSegmentMagic = 0x3267736d706d00;  // "\0mpmsg2"
constexpr unsigned kMinClass = 5;                          // 32-byte blocks
constexpr unsigned kMaxClass = 40;
constexpr unsigned kClassCount = kMaxClass - kMinClass + 1;
constexpr std::uint64_t kBlockHeaderSize = 16;
constexpr std::size_t kJournalCapacity = 256;
// The most words freeing one block logs: two per size class it merges across, and four.
constexpr std::size_t kFreeLogBound = 2 * (kClassCount - 1) + 4;
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
  std::uint64_t operations;   // counts operations; stamps the blocks each one allocates
  std::uint64_t takeovers;    // locks taken over from dead holders
  std::uint64_t rolled_back;  // operations of dead holders undone
  std::uint64_t to_free;      // blocks of committed operations waiting to be freed
  std::uint64_t free_heads[kClassCount];
  std::atomic<std::uint64_t> journal_count;
  JournalEntry journal[kJournalCapacity];
};

constexpr std::uint64_t kFirstBlock = (sizeof(SegmentHeader) + 63) / 64 * 64;

struct BlockHeader {
  // The size class in the low 8 bits, the state (kBlockFree or kBlockUsed) in the next
  // 8, above them the number of the operation that allocated the block (48 bits).
  std::uint64_t tag;
  // While free: the next block of its list; while waiting to be freed: the next block of
  // that list (payload offsets). Meaningless otherwise.
  std::uint64_t next;
};
static_assert(sizeof(BlockHeader) == kBlockHeaderSize);

constexpr std::uint64_t kBlockFree = 0x46;  // 'F'
constexpr std::uint64_t kBlockUsed = 0x55;  // 'U'
constexpr std::uint64_t block_tag(std::uint64_t state, unsigned size_class,
                                  std::uint64_t operation) {
  return size_class | (state << 8) | (operation << 16);
}
constexpr unsigned class_of(std::uint64_t tag) { return static_cast<unsigned>(tag & 0xff); }
constexpr std::uint64_t state_of(std::uint64_t tag) { return (tag >> 8) & 0xff; }

// Puts the space of a new segment of `size` bytes on its free lists (its header must be
// zeroed but for magic and size).
void format_segment(std::byte* base, std::uint64_t size);

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
    // Left by a process that died while freeing a committed operation's blocks.
    if (header_.to_free != 0) [[unlikely]]
      free_waiting();
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
    unsigned from = size_class;
    while (from <= kMaxClass && header_.free_heads[from - kMinClass] == 0) ++from;
    if (from > kMaxClass) throw_full(bytes);
    // Only the heads of the lists are logged, so that an operation logs a bounded number
    // of words however many blocks it allocates: roll_back() repairs the rest.
    const std::uint64_t payload = header_.free_heads[from - kMinClass];
    log_write(head_offset(from), block(payload).next);
    while (from > size_class) {  // split: the upper halves go on their lists
      --from;
      // The lists of the classes between are empty. The upper half's header lies inside
      // the block taken, which a rollback puts back whole: written unlogged.
      const std::uint64_t upper = payload + (std::uint64_t{1} << from);
      block(upper).tag = block_tag(kBlockFree, from, 0);
      block(upper).next = 0;
      log_write(head_offset(from), upper);
    }
    block(payload).tag = block_tag(kBlockUsed, size_class, header_.operations);
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

  // Ends the operation: frees what it freed (now, or through the segment's list of
  // blocks to free) and empties the journal.
  void commit();

 private:
  BlockHeader& block(std::uint64_t payload) const {
    return *reinterpret_cast<BlockHeader*>(base_ + payload - kBlockHeaderSize);
  }

  static std::uint64_t head_offset(unsigned size_class) {
    return offsetof(SegmentHeader, free_heads) + (size_class - kMinClass) * 8;
  }
  static std::uint64_t tag_offset(std::uint64_t payload) {
    return payload - kBlockHeaderSize + offsetof(BlockHeader, tag);
  }
  static std::uint64_t next_offset(std::uint64_t payload) {
    return payload - kBlockHeaderSize + offsetof(BlockHeader, next);
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

  // The allocator's changes are logged always (in fresh arrays too).
  void log_write(std::uint64_t offset, std::uint64_t value) {
    log(offset);
    word(offset) = value;
  }

  // Takes the free block off its list.
  void unlink(std::uint64_t payload, unsigned size_class) {
    const std::uint64_t next = block(payload).next;
    const std::uint64_t head = head_offset(size_class);
    if (word(head) == payload) {
      log_write(head, next);
    } else {
      const std::uint64_t prev = word(payload);
      log_write(next_offset(prev), next);
      if (next != 0) log_write(next, prev);
    }
  }

  // Puts the block, tagged free already, at the head of its list.
  void push(std::uint64_t payload, unsigned size_class) {
    const std::uint64_t head = head_offset(size_class);
    const std::uint64_t old = word(head);
    log_write(next_offset(payload), old);
    if (old != 0) log_write(old, payload);
    log_write(head, payload);
  }

  // Gives one block back to the free lists, merged with its free buddies.
  void free_block(std::uint64_t payload) {
    unsigned size_class = class_of(block(payload).tag);
    std::uint64_t start = payload - kBlockHeaderSize;
    while (size_class < kMaxClass) {
      const std::uint64_t size = std::uint64_t{1} << size_class;
      const std::uint64_t buddy = start ^ size;
      // The header and what lies past the segment's end are never free.
      if (buddy < kFirstBlock || buddy + size > header_.size) break;
      if (word(buddy) != block_tag(kBlockFree, size_class, 0)) break;
      unlink(buddy + kBlockHeaderSize, size_class);
      start = std::min(start, buddy);
      ++size_class;
    }
    log_write(start, block_tag(kBlockFree, size_class, 0));
    push(start + kBlockHeaderSize, size_class);
  }

  // Frees the blocks of committed operations, each in a step of its own.
  void free_waiting() {
    while (const std::uint64_t payload = header_.to_free) {
      log_write(offsetof(SegmentHeader, to_free), block(payload).next);
      free_block(payload);
      commit_journal();
    }
  }

  void commit_journal() {
    std::atomic_signal_fence(std::memory_order_seq_cst);
    header_.journal_count.store(0, std::memory_order_release);
  }

  void roll_back() noexcept;

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

inline void ManagerTransaction::commit() {
  const std::vector<std::uint64_t>& to_free = scratch().to_free;
  // Few blocks (an overwritten value): freed in this operation's journal, which has room.
  if (header_.journal_count.load(std::memory_order_relaxed) + to_free.size() * kFreeLogBound <=
      kJournalCapacity) {
    for (const std::uint64_t payload : to_free) free_block(payload);
    commit_journal();
    committed_ = true;
    return;
  }
  // Else chains the blocks through their links, unlogged where the link is dead (a
  // block allocated before this operation); the link of a block this operation took
  // from a free list is restored on rollback.
  std::uint64_t chain = header_.to_free;
  for (const std::uint64_t payload : to_free) {
    if ((block(payload).tag >> 16) == header_.operations)
      log_write(next_offset(payload), chain);
    else
      word(next_offset(payload)) = chain;
    chain = payload;
  }
  if (chain != header_.to_free) log_write(offsetof(SegmentHeader, to_free), chain);
  scratch().fresh.clear();
  commit_journal();
  committed_ = true;
  if (chain != 0) free_waiting();
}

inline void ManagerTransaction::roll_back() noexcept {
  const std::uint64_t count = header_.journal_count.load(std::memory_order_relaxed);
  if (count == 0) return;
  for (std::uint64_t i = count; i-- > 0;)
    word(header_.journal[i].offset) = header_.journal[i].old_value;
  // The blocks the operation took are back on their lists (their heads were logged),
  // but their tags and backward links were written unlogged: they are a prefix of each
  // list, the blocks not tagged free. Idempotent, like the loop above.
  for (unsigned size_class = kMinClass; size_class <= kMaxClass; ++size_class) {
    const std::uint64_t free_tag = block_tag(kBlockFree, size_class, 0);
    std::uint64_t prev = 0;
    std::uint64_t payload = word(head_offset(size_class));
    for (; payload != 0 && block(payload).tag != free_tag; payload = block(payload).next) {
      block(payload).tag = free_tag;
      word(payload) = prev;
      prev = payload;
    }
    if (payload != 0 && prev != 0) word(payload) = prev;
  }
  std::atomic_signal_fence(std::memory_order_seq_cst);
  header_.journal_count.store(0, std::memory_order_release);
}

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
