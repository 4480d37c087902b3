// Manager, SharedDict, SharedList and Namespace: Python's multiprocessing/managers.py
// without the server. The containers live in one segment of the shared heap and every
// process operates on them directly, under one mp::Lock per segment.
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
#include <mp/managers.hpp>

#include <algorithm>
#include <atomic>
#include <bit>
#include <cstring>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace mp::detail {
namespace {

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

// Container roots: arrays of words.
constexpr std::uint64_t kRootKind = 0;  // container kind
constexpr std::uint64_t kRootFingerprint = 1;
// dict (and namespace)
constexpr std::uint64_t kDictTable = 2;     // offset of the index table
constexpr std::uint64_t kDictCapacity = 3;  // slots in the table (a power of two)
constexpr std::uint64_t kDictEntries = 4;   // offset of the entries array
constexpr std::uint64_t kDictUsable = 5;    // capacity of the entries array
constexpr std::uint64_t kDictUsed = 6;      // entries appended (deleted ones included)
constexpr std::uint64_t kDictCount = 7;     // live entries
constexpr std::uint64_t kDictWords = 8;
// list
constexpr std::uint64_t kListItems = 2;
constexpr std::uint64_t kListCapacity = 3;
constexpr std::uint64_t kListLength = 4;
constexpr std::uint64_t kListWords = 5;

constexpr std::uint64_t kRootMagic = 0x6d706374'00000000;  // "mpct" in the high half

// Index table slots: 0 empty, 1 deleted, else (hash tag << 40) | (entry index + 2), as
// CPython's compact dict (the entries array keeps insertion order).
constexpr std::uint64_t kSlotEmpty = 0;
constexpr std::uint64_t kSlotDeleted = 1;
constexpr unsigned kTagShift = 40;
constexpr std::uint64_t kIndexMask = (std::uint64_t{1} << kTagShift) - 1;

// A dict node: hash, key length, value length, key bytes, value bytes.
constexpr std::uint64_t kNodeHeader = 16;
// A list node: length, bytes.
constexpr std::uint64_t kItemHeader = 8;

std::uint64_t mix(std::uint64_t x) {
  x ^= x >> 30;
  x *= 0xbf58476d1ce4e5b9;
  x ^= x >> 27;
  x *= 0x94d049bb133111eb;
  x ^= x >> 31;
  return x;
}

// The same in every process (no per-process seed): the table is shared.
std::uint64_t hash_bytes(std::string_view bytes) {
  std::uint64_t h = 0x9e3779b97f4a7c15 ^ bytes.size();
  std::size_t i = 0;
  for (; i + 8 <= bytes.size(); i += 8) {
    std::uint64_t word;
    std::memcpy(&word, bytes.data() + i, 8);
    h = mix(h ^ word);
  }
  if (i < bytes.size()) {
    std::uint64_t word = 0;
    std::memcpy(&word, bytes.data() + i, bytes.size() - i);
    h = mix(h ^ word ^ 0xff);
  }
  return h;
}

// What one thread's current operation needs besides the segment; reused so that an
// operation does not allocate (operations of one thread never nest).
struct Scratch {
  std::vector<std::uint64_t> to_free;
  std::vector<std::pair<std::uint64_t, std::uint64_t>> fresh;  // [begin, end) of new arrays
  std::string copy;
};
thread_local Scratch scratch;

}  // namespace

// One operation on a segment: holds the lock, logs, allocates, commits or rolls back.
class manager_transaction {
 public:
  explicit manager_transaction(const manager_core& core)
      : lock_(*core.lock_),
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
    scratch.to_free.clear();
    scratch.fresh.clear();
  }
  ~manager_transaction() {
    if (!committed_) roll_back();
    lock_.release();
  }
  manager_transaction(const manager_transaction&) = delete;
  manager_transaction& operator=(const manager_transaction&) = delete;

  std::byte* at(std::uint64_t offset) const { return base_ + offset; }
  std::uint64_t& word(std::uint64_t offset) const {
    return *reinterpret_cast<std::uint64_t*>(base_ + offset);
  }
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
    scratch.fresh.emplace_back(payload, payload + count * 8);
    return payload;
  }
  // Frees the payload when the operation commits.
  void free_later(std::uint64_t payload) { scratch.to_free.push_back(payload); }

  void commit() {
    for (const std::uint64_t payload : scratch.to_free) free_now(payload);
    std::atomic_signal_fence(std::memory_order_seq_cst);
    header_.journal_count.store(0, std::memory_order_release);
    committed_ = true;
  }

 private:
  BlockHeader& block(std::uint64_t payload) const {
    return *reinterpret_cast<BlockHeader*>(base_ + payload - kBlockHeaderSize);
  }

  bool is_fresh(std::uint64_t offset) const {
    for (const auto& [begin, end] : scratch.fresh)
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

namespace {

using transaction = manager_transaction;

// ---- dict ----------------------------------------------------------------------------

struct NodeView {
  std::uint64_t hash;
  std::string_view key;
  std::string_view value;
};

NodeView node_at(const transaction& t, std::uint64_t node) {
  const std::byte* p = t.at(node);
  NodeView view;
  std::uint32_t key_size, value_size;
  std::memcpy(&view.hash, p, 8);
  std::memcpy(&key_size, p + 8, 4);
  std::memcpy(&value_size, p + 12, 4);
  const char* chars = reinterpret_cast<const char*>(p + kNodeHeader);
  view.key = std::string_view(chars, key_size);
  view.value = std::string_view(chars + key_size, value_size);
  return view;
}

std::uint64_t new_node(transaction& t, std::uint64_t hash, std::string_view key,
                       std::string_view value) {
  if (key.size() > UINT32_MAX || value.size() > UINT32_MAX)
    throw std::length_error("mp::SharedDict: a key or value of 4 GiB or more");
  const std::uint64_t node = t.allocate(kNodeHeader + key.size() + value.size());
  std::byte* p = t.at(node);
  const auto key_size = static_cast<std::uint32_t>(key.size());
  const auto value_size = static_cast<std::uint32_t>(value.size());
  std::memcpy(p, &hash, 8);
  std::memcpy(p + 8, &key_size, 4);
  std::memcpy(p + 12, &value_size, 4);
  std::memcpy(p + kNodeHeader, key.data(), key.size());
  std::memcpy(p + kNodeHeader + key.size(), value.data(), value.size());
  return node;
}

struct Lookup {
  bool found = false;
  std::uint64_t slot = 0;         // where the key is, or where to insert it
  std::uint64_t entry_index = 0;  // if found
  std::uint64_t node = 0;         // if found
};

Lookup dict_find(const transaction& t, std::uint64_t root, std::string_view key,
                 std::uint64_t hash) {
  const std::uint64_t table = t.root_word(root, kDictTable);
  const std::uint64_t mask = t.root_word(root, kDictCapacity) - 1;
  const std::uint64_t entries = t.root_word(root, kDictEntries);
  const std::uint64_t tag = hash >> kTagShift;
  Lookup result;
  bool have_insert_slot = false;
  // There is always an empty slot: used entries stay below 2/3 of the slots.
  for (std::uint64_t i = hash & mask;; i = (i + 1) & mask) {
    const std::uint64_t slot = t.word(table + i * 8);
    if (slot == kSlotEmpty) {
      if (!have_insert_slot) result.slot = i;
      return result;
    }
    if (slot == kSlotDeleted) {
      if (!have_insert_slot) {
        result.slot = i;
        have_insert_slot = true;
      }
      continue;
    }
    if ((slot >> kTagShift) != tag) continue;
    const std::uint64_t index = (slot & kIndexMask) - 2;
    const std::uint64_t node = t.word(entries + index * 8);
    const NodeView view = node_at(t, node);
    if (view.hash == hash && view.key == key) {
      result.found = true;
      result.slot = i;
      result.entry_index = index;
      result.node = node;
      return result;
    }
  }
}

std::uint64_t table_slot_value(std::uint64_t hash, std::uint64_t index) {
  return ((hash >> kTagShift) << kTagShift) | (index + 2);
}

// Replaces the table and entries by fresh ones with room for `live` entries and more,
// holding the live entries compacted (in order). A few logged root words.
void dict_rebuild(transaction& t, std::uint64_t root, std::uint64_t live) {
  std::uint64_t usable_wanted = std::max<std::uint64_t>(5, live * 2);
  std::uint64_t capacity = 8;
  while (capacity * 2 / 3 < usable_wanted) capacity *= 2;
  const std::uint64_t usable = capacity * 2 / 3;
  const std::uint64_t table = t.allocate_array(capacity);
  const std::uint64_t entries = t.allocate_array(usable);
  const std::uint64_t old_table = t.root_word(root, kDictTable);
  const std::uint64_t old_entries = t.root_word(root, kDictEntries);
  const std::uint64_t used = t.root_word(root, kDictUsed);
  std::uint64_t kept = 0;
  for (std::uint64_t i = 0; i < used; ++i) {
    const std::uint64_t node = t.word(old_entries + i * 8);
    if (node == 0) continue;
    const std::uint64_t hash = node_at(t, node).hash;
    std::uint64_t slot = hash & (capacity - 1);
    while (t.word(table + slot * 8) != kSlotEmpty) slot = (slot + 1) & (capacity - 1);
    t.word(table + slot * 8) = table_slot_value(hash, kept);
    t.word(entries + kept * 8) = node;
    ++kept;
  }
  t.set_root_word(root, kDictTable, table);
  t.set_root_word(root, kDictCapacity, capacity);
  t.set_root_word(root, kDictEntries, entries);
  t.set_root_word(root, kDictUsable, usable);
  t.set_root_word(root, kDictUsed, kept);
  t.free_later(old_table);
  t.free_later(old_entries);
}

void dict_store(transaction& t, std::uint64_t root, std::string_view key, std::string_view value) {
  const std::uint64_t hash = hash_bytes(key);
  Lookup found = dict_find(t, root, key, hash);
  if (found.found) {
    const std::uint64_t node = new_node(t, hash, key, value);
    t.write(t.root_word(root, kDictEntries) + found.entry_index * 8, node);
    t.free_later(found.node);
    return;
  }
  if (t.root_word(root, kDictUsed) >= t.root_word(root, kDictUsable)) {
    dict_rebuild(t, root, t.root_word(root, kDictCount) + 1);
    found = dict_find(t, root, key, hash);
  }
  const std::uint64_t node = new_node(t, hash, key, value);
  const std::uint64_t used = t.root_word(root, kDictUsed);
  // Past `used`: unreachable until the logged write of `used` below.
  t.word(t.root_word(root, kDictEntries) + used * 8) = node;
  t.set_root_word(root, kDictUsed, used + 1);
  t.write(t.root_word(root, kDictTable) + found.slot * 8, table_slot_value(hash, used));
  t.set_root_word(root, kDictCount, t.root_word(root, kDictCount) + 1);
}

void dict_remove(transaction& t, std::uint64_t root, const Lookup& found) {
  t.write(t.root_word(root, kDictEntries) + found.entry_index * 8, 0);
  t.write(t.root_word(root, kDictTable) + found.slot * 8, kSlotDeleted);
  t.set_root_word(root, kDictCount, t.root_word(root, kDictCount) - 1);
  t.free_later(found.node);
}

// ---- list ----------------------------------------------------------------------------

std::uint64_t new_item(transaction& t, std::string_view bytes) {
  const std::uint64_t node = t.allocate(kItemHeader + bytes.size());
  const std::uint64_t size = bytes.size();
  std::memcpy(t.at(node), &size, 8);
  std::memcpy(t.at(node + kItemHeader), bytes.data(), bytes.size());
  return node;
}

std::string_view item_at(const transaction& t, std::uint64_t node) {
  std::uint64_t size;
  std::memcpy(&size, t.at(node), 8);
  return std::string_view(reinterpret_cast<const char*>(t.at(node + kItemHeader)), size);
}

// Python's index normalization; throws std::out_of_range (IndexError).
std::uint64_t list_position(const transaction& t, std::uint64_t root, std::int64_t index,
                            const char* what) {
  const auto length = static_cast<std::int64_t>(t.root_word(root, kListLength));
  const std::int64_t position = index < 0 ? index + length : index;
  if (position < 0 || position >= length)
    throw std::out_of_range(std::string("mp::SharedList::") + what + ": index " +
                            std::to_string(index) + " out of range (size " +
                            std::to_string(length) + ")");
  return static_cast<std::uint64_t>(position);
}

// Replaces the items array by a fresh one of at least `capacity` words holding the items
// of the old one with `skip` left out (if < length) and a gap of `gap_size` words at
// `gap` (if gap_size > 0). Returns the new array; sets length to the new count.
std::uint64_t list_rebuild(transaction& t, std::uint64_t root, std::uint64_t capacity,
                           std::uint64_t skip, std::uint64_t gap, std::uint64_t gap_size) {
  const std::uint64_t old_items = t.root_word(root, kListItems);
  const std::uint64_t length = t.root_word(root, kListLength);
  const std::uint64_t items = t.allocate_array(capacity);
  std::uint64_t out = 0;
  for (std::uint64_t i = 0; i <= length; ++i) {
    if (i == gap) out += gap_size;
    if (i == length) break;
    if (i == skip) continue;
    t.word(items + out * 8) = t.word(old_items + i * 8);
    ++out;
  }
  t.set_root_word(root, kListItems, items);
  t.set_root_word(root, kListCapacity, capacity);
  t.set_root_word(root, kListLength, out);
  t.free_later(old_items);
  return items;
}

std::int64_t list_find(const transaction& t, std::uint64_t root, std::string_view item) {
  const std::uint64_t items = t.root_word(root, kListItems);
  const std::uint64_t length = t.root_word(root, kListLength);
  for (std::uint64_t i = 0; i < length; ++i)
    if (item_at(t, t.word(items + i * 8)) == item) return static_cast<std::int64_t>(i);
  return -1;
}

void list_take(transaction& t, std::uint64_t root, std::uint64_t position) {
  const std::uint64_t items = t.root_word(root, kListItems);
  const std::uint64_t length = t.root_word(root, kListLength);
  t.free_later(t.word(items + position * 8));
  if (position + 1 == length)
    t.set_root_word(root, kListLength, length - 1);
  else  // shifting would log every moved word: copy into a fresh array instead
    list_rebuild(t, root, t.root_word(root, kListCapacity), position, length + 1, 0);
}

}  // namespace

// ---- manager_core ----------------------------------------------------------------------

manager_core::manager_core(std::size_t segment_size)
    : shared_object(shared_kind::manager,
                    segment_size >= kMinSegmentSize ? segment_size - kHeapOverhead : 0,
                    sizeof(SegmentHeader)),
      lock_(std::in_place) {
  if (segment_size < kMinSegmentSize)  // the base allocated an empty object: fine to drop
    throw std::invalid_argument("mp::Manager: segment_size " + std::to_string(segment_size) +
                                " is below the minimum of " + std::to_string(kMinSegmentSize) +
                                " bytes");
  auto& header = *reinterpret_cast<SegmentHeader*>(segment());
  header.magic = kSegmentMagic;
  header.size = segment_size - kHeapOverhead;
  header.bump = kFirstBlock;
}

void manager_core::check_bound() const {
  if (!lock_ || segment() == nullptr)
    throw std::logic_error("mp::Manager: this handle refers to no manager (default-constructed)");
}

std::size_t manager_core::segment_size() const {
  check_bound();
  return reinterpret_cast<const SegmentHeader*>(segment())->size + kHeapOverhead;
}

std::pair<std::uint64_t, std::uint64_t> manager_core::recoveries() const {
  check_bound();
  transaction t(*this);
  const auto& header = *reinterpret_cast<const SegmentHeader*>(segment());
  const std::pair result(header.takeovers, header.rolled_back);
  t.commit();
  return result;
}

std::uint64_t manager_core::create(container kind, std::uint64_t fingerprint) const {
  check_bound();
  transaction t(*this);
  std::uint64_t root = 0;
  if (kind == container::list) {
    root = t.allocate(kListWords * 8);
    t.word(root + kListItems * 8) = t.allocate_array(8);
    t.word(root + kListCapacity * 8) = 8;
    t.word(root + kListLength * 8) = 0;
  } else {
    root = t.allocate(kDictWords * 8);
    t.word(root + kDictTable * 8) = t.allocate_array(8);
    t.word(root + kDictCapacity * 8) = 8;
    t.word(root + kDictEntries * 8) = t.allocate_array(5);
    t.word(root + kDictUsable * 8) = 5;
    t.word(root + kDictUsed * 8) = 0;
    t.word(root + kDictCount * 8) = 0;
  }
  t.word(root + kRootKind * 8) = kRootMagic | static_cast<std::uint32_t>(kind);
  t.word(root + kRootFingerprint * 8) = fingerprint;
  t.commit();
  return root;
}

void manager_core::check(std::uint64_t root, container kind, std::uint64_t fingerprint) const {
  check_bound();
  const auto& header = *reinterpret_cast<const SegmentHeader*>(segment());
  const std::uint64_t* words = reinterpret_cast<const std::uint64_t*>(segment() + root);
  if (root < kFirstBlock || root % 16 != 0 || root + 16 > header.size ||
      words[kRootKind] != (kRootMagic | static_cast<std::uint32_t>(kind)))
    throw UnpicklingError("mp::Manager: the pickled handle names no container of this kind");
  if (words[kRootFingerprint] != fingerprint)
    throw UnpicklingError("mp::Manager: the pickled container holds other types");
}

void manager_core::dict_set(std::uint64_t root, std::string_view key,
                            std::string_view value) const {
  check_bound();
  transaction t(*this);
  dict_store(t, root, key, value);
  t.commit();
}

bool manager_core::dict_get(std::uint64_t root, std::string_view key, std::string& out) const {
  check_bound();
  transaction t(*this);
  const Lookup found = dict_find(t, root, key, hash_bytes(key));
  if (found.found) out.assign(node_at(t, found.node).value);
  t.commit();
  return found.found;
}

bool manager_core::dict_contains(std::uint64_t root, std::string_view key) const {
  check_bound();
  transaction t(*this);
  const bool found = dict_find(t, root, key, hash_bytes(key)).found;
  t.commit();
  return found;
}

bool manager_core::dict_erase(std::uint64_t root, std::string_view key, std::string* out) const {
  check_bound();
  transaction t(*this);
  const Lookup found = dict_find(t, root, key, hash_bytes(key));
  if (found.found) {
    if (out) out->assign(node_at(t, found.node).value);
    dict_remove(t, root, found);
  }
  t.commit();
  return found.found;
}

void manager_core::dict_setdefault(std::uint64_t root, std::string_view key, std::string_view value,
                                   std::string& out) const {
  check_bound();
  transaction t(*this);
  const Lookup found = dict_find(t, root, key, hash_bytes(key));
  if (found.found) {
    out.assign(node_at(t, found.node).value);
  } else {
    dict_store(t, root, key, value);
    out.assign(value);
  }
  t.commit();
}

void manager_core::dict_update(std::uint64_t root, const std::vector<std::string>& keys,
                               const std::vector<std::string>& values) const {
  check_bound();
  transaction t(*this);
  // Many keys: fresh arrays first, so that their slots and entries are written unlogged.
  if (keys.size() > 32) dict_rebuild(t, root, t.root_word(root, kDictCount) + keys.size());
  for (std::size_t i = 0; i < keys.size(); ++i) dict_store(t, root, keys[i], values[i]);
  t.commit();
}

void manager_core::dict_modify(std::uint64_t root, std::string_view key, modify_function modify,
                               void* context) const {
  check_bound();
  transaction t(*this);
  // Copies: the user's function may pickle other keys into the per-thread buffers.
  const std::string key_copy(key);
  const Lookup found = dict_find(t, root, key_copy, hash_bytes(key_copy));
  std::string old;
  if (found.found) old.assign(node_at(t, found.node).value);
  std::string& out = scratch.copy;
  modify(context, found.found ? &old : nullptr, out);  // may throw: rolled back
  // The function may have run operations on other managers, which reuse the scratch
  // lists; this operation has put nothing in them yet.
  scratch.to_free.clear();
  scratch.fresh.clear();
  dict_store(t, root, key_copy, out);
  t.commit();
}

std::size_t manager_core::dict_size(std::uint64_t root) const {
  check_bound();
  transaction t(*this);
  const std::uint64_t count = t.root_word(root, kDictCount);
  t.commit();
  return count;
}

void manager_core::dict_clear(std::uint64_t root) const {
  check_bound();
  transaction t(*this);
  const std::uint64_t entries = t.root_word(root, kDictEntries);
  const std::uint64_t used = t.root_word(root, kDictUsed);
  for (std::uint64_t i = 0; i < used; ++i)
    if (const std::uint64_t node = t.word(entries + i * 8)) t.free_later(node);
  t.set_root_word(root, kDictCount, 0);
  t.set_root_word(root, kDictUsed, 0);  // so the rebuild keeps nothing
  dict_rebuild(t, root, 0);
  t.commit();
}

void manager_core::dict_snapshot(std::uint64_t root, std::vector<std::string>* keys,
                                 std::vector<std::string>* values) const {
  check_bound();
  transaction t(*this);
  const std::uint64_t entries = t.root_word(root, kDictEntries);
  const std::uint64_t used = t.root_word(root, kDictUsed);
  const std::uint64_t count = t.root_word(root, kDictCount);
  if (keys) keys->reserve(count);
  if (values) values->reserve(count);
  for (std::uint64_t i = 0; i < used; ++i) {
    const std::uint64_t node = t.word(entries + i * 8);
    if (node == 0) continue;
    const NodeView view = node_at(t, node);
    if (keys) keys->emplace_back(view.key);
    if (values) values->emplace_back(view.value);
  }
  t.commit();
}

void manager_core::list_append(std::uint64_t root, std::span<const std::string> new_items) const {
  check_bound();
  transaction t(*this);
  const std::uint64_t length = t.root_word(root, kListLength);
  std::uint64_t items = t.root_word(root, kListItems);
  if (length + new_items.size() > t.root_word(root, kListCapacity)) {
    items = list_rebuild(t, root, std::max<std::uint64_t>(8, 2 * (length + new_items.size())),
                         length, length + 1, 0);
  }
  // Past `length`: unreachable until the logged write of the length.
  for (std::size_t i = 0; i < new_items.size(); ++i)
    t.word(items + (length + i) * 8) = new_item(t, new_items[i]);
  t.set_root_word(root, kListLength, length + new_items.size());
  t.commit();
}

void manager_core::list_get(std::uint64_t root, std::int64_t index, std::string& out) const {
  check_bound();
  transaction t(*this);
  const std::uint64_t position = list_position(t, root, index, "get");
  out.assign(item_at(t, t.word(t.root_word(root, kListItems) + position * 8)));
  t.commit();
}

void manager_core::list_set(std::uint64_t root, std::int64_t index, std::string_view item) const {
  check_bound();
  transaction t(*this);
  const std::uint64_t position = list_position(t, root, index, "set");
  const std::uint64_t slot = t.root_word(root, kListItems) + position * 8;
  const std::uint64_t old = t.word(slot);
  t.write(slot, new_item(t, item));
  t.free_later(old);
  t.commit();
}

void manager_core::list_pop(std::uint64_t root, std::int64_t index, std::string& out) const {
  check_bound();
  transaction t(*this);
  const std::uint64_t position = list_position(t, root, index, "pop");
  out.assign(item_at(t, t.word(t.root_word(root, kListItems) + position * 8)));
  list_take(t, root, position);
  t.commit();
}

void manager_core::list_insert(std::uint64_t root, std::int64_t index,
                               std::string_view item) const {
  check_bound();
  transaction t(*this);
  const auto length = static_cast<std::int64_t>(t.root_word(root, kListLength));
  std::int64_t position =
      index < 0 ? std::max<std::int64_t>(0, index + length) : std::min<std::int64_t>(index, length);
  const auto capacity = std::max<std::uint64_t>(t.root_word(root, kListCapacity),
                                                static_cast<std::uint64_t>(length) + 1);
  // A fresh array with a gap: inserting in place would log every moved word.
  const std::uint64_t node = new_item(t, item);
  const std::uint64_t items =
      list_rebuild(t, root, std::max<std::uint64_t>(capacity, 8),
                   static_cast<std::uint64_t>(length), static_cast<std::uint64_t>(position), 1);
  t.word(items + static_cast<std::uint64_t>(position) * 8) = node;
  t.set_root_word(root, kListLength, static_cast<std::uint64_t>(length) + 1);
  t.commit();
}

std::int64_t manager_core::list_index(std::uint64_t root, std::string_view item) const {
  check_bound();
  transaction t(*this);
  const std::int64_t found = list_find(t, root, item);
  t.commit();
  return found;
}

bool manager_core::list_remove(std::uint64_t root, std::string_view item) const {
  check_bound();
  transaction t(*this);
  const std::int64_t found = list_find(t, root, item);
  if (found >= 0) list_take(t, root, static_cast<std::uint64_t>(found));
  t.commit();
  return found >= 0;
}

std::size_t manager_core::list_size(std::uint64_t root) const {
  check_bound();
  transaction t(*this);
  const std::uint64_t length = t.root_word(root, kListLength);
  t.commit();
  return length;
}

void manager_core::list_clear(std::uint64_t root) const {
  check_bound();
  transaction t(*this);
  const std::uint64_t items = t.root_word(root, kListItems);
  const std::uint64_t length = t.root_word(root, kListLength);
  for (std::uint64_t i = 0; i < length; ++i) t.free_later(t.word(items + i * 8));
  t.set_root_word(root, kListLength, 0);
  t.commit();
}

void manager_core::list_snapshot(std::uint64_t root, std::vector<std::string>& out) const {
  check_bound();
  transaction t(*this);
  const std::uint64_t items = t.root_word(root, kListItems);
  const std::uint64_t length = t.root_word(root, kListLength);
  out.reserve(length);
  for (std::uint64_t i = 0; i < length; ++i) out.emplace_back(item_at(t, t.word(items + i * 8)));
  t.commit();
}

std::string& manager_key_buffer() {
  thread_local std::string buffer;
  return buffer;
}
std::string& manager_value_buffer() {
  thread_local std::string buffer;
  return buffer;
}
std::string& manager_out_buffer() {
  thread_local std::string buffer;
  return buffer;
}

}  // namespace mp::detail
