// Private to mp: the layout of a Queue's records in shared memory and their decoder.
// lib/src/queues.cpp writes and reads records with these functions, and
// fuzz/queue_record_fuzzer.cpp feeds the same decoder arbitrary bytes, so every length
// read from shared memory is checked before it is used: a corrupt record is reported as
// such, never read out of bounds, and never makes anyone allocate its claimed size.
//
// A queue's records live in segments: 32 KiB heap blocks linked into a list. A segment
// starts with a 16-byte header (the offset of the next segment, 0 while there is none),
// followed by records, each 8-byte aligned:
//
//   inline item:   u32 length | u32 kInline   | length bytes of pickle, padded to 8
//   large item:    u32 0      | u32 kExternal | u64 offset of an item block in the arena
//   end:           u32 0      | u32 kEnd        (the rest of the segment is unused; the
//                                                items go on in the next segment)
//
// An item block (for items larger than kMaxInline) is its own heap block:
//   u64 capacity | u64 length | capacity bytes, of which the first `length` hold the pickle.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <string_view>

namespace mp::detail::queue_layout {

// Requested from the heap: with the heap's 16-byte block header a 32 KiB block (below
// the size from which freeing returns pages to the OS, so a recycled segment costs no
// page faults).
inline constexpr std::size_t kSegmentSize = 32768 - 16;
inline constexpr std::size_t kSegmentHeader = 16;
inline constexpr std::size_t kRecordHeader = 8;
// Larger pickles go to an item block of their own.
inline constexpr std::size_t kMaxInline = 4096;
inline constexpr std::size_t kBlockHeader = 16;

inline constexpr std::uint32_t kInline = 0x6d705149;    // "IQpm"
inline constexpr std::uint32_t kExternal = 0x6d705158;  // "XQpm"
inline constexpr std::uint32_t kEnd = 0x6d705145;       // "EQpm"

// The bytes a record of an inline pickle of `length` bytes takes.
inline constexpr std::size_t inline_record_size(std::size_t length) {
  return kRecordHeader + (length + 7) / 8 * 8;
}
inline constexpr std::size_t kExternalRecordSize = kRecordHeader + 8;
inline constexpr std::size_t kEndRecordSize = kRecordHeader;

enum class RecordStatus {
  item,     // an inline item (payload) or an item block (block_offset)
  end,      // end of this segment: go on at the next one
  corrupt,  // a record that cannot be (bad kind, length past the limit, misaligned)
};

struct Record {
  RecordStatus status = RecordStatus::corrupt;
  bool external = false;
  std::string_view payload;        // inline item: the pickle
  std::uint64_t block_offset = 0;  // external item: the item block's offset in the arena
  std::size_t size = 0;            // bytes the record takes in the segment
};

inline std::uint32_t load_u32(const std::byte* at) {
  std::uint32_t value;
  std::memcpy(&value, at, sizeof value);
  return value;
}
inline std::uint64_t load_u64(const std::byte* at) {
  std::uint64_t value;
  std::memcpy(&value, at, sizeof value);
  return value;
}

// Decodes the record at `index` of `segment` (a whole segment), given that committed
// records end at `limit` (the tail's index when the tail is in this segment, else the
// segment's size). Never reads outside [index, limit).
inline Record decode_record(std::span<const std::byte> segment, std::size_t index,
                            std::size_t limit) {
  Record record;
  if (limit > segment.size() || index % 8 != 0 || index < kSegmentHeader || index >= limit ||
      limit - index < kRecordHeader)
    return record;
  const std::byte* at = segment.data() + index;
  const std::uint32_t length = load_u32(at);
  const std::uint32_t kind = load_u32(at + 4);
  const std::size_t available = limit - index;
  if (kind == kEnd) {
    if (length != 0) return record;
    record.status = RecordStatus::end;
    record.size = kEndRecordSize;
  } else if (kind == kInline) {
    if (length > kMaxInline || inline_record_size(length) > available) return record;
    record.status = RecordStatus::item;
    record.payload = {reinterpret_cast<const char*>(at + kRecordHeader), length};
    record.size = inline_record_size(length);
  } else if (kind == kExternal) {
    if (length != 0 || kExternalRecordSize > available) return record;
    record.status = RecordStatus::item;
    record.external = true;
    record.block_offset = load_u64(at + kRecordHeader);
    record.size = kExternalRecordSize;
  }
  return record;
}

// The pickle in the item block at `offset` of `arena` (the whole arena mapping), or
// nullopt-like empty `ok == false` if the block header is impossible: outside the arena,
// misaligned, or a length beyond its capacity or the arena.
struct BlockView {
  bool ok = false;
  std::string_view payload;
};
inline BlockView decode_block(std::span<const std::byte> arena, std::uint64_t offset) {
  BlockView view;
  if (offset % 16 != 0 || offset >= arena.size() || arena.size() - offset < kBlockHeader)
    return view;
  const std::byte* at = arena.data() + offset;
  const std::uint64_t capacity = load_u64(at);
  const std::uint64_t length = load_u64(at + 8);
  const std::uint64_t room = arena.size() - offset - kBlockHeader;
  if (capacity > room || length > capacity || length <= kMaxInline) return view;
  view.ok = true;
  view.payload = {reinterpret_cast<const char*>(at + kBlockHeader), length};
  return view;
}

// A position in a queue: a segment's offset in the arena and an index into it.
inline constexpr std::uint64_t position(std::uint64_t segment, std::size_t index) {
  return segment << 16 | static_cast<std::uint64_t>(index);
}
inline constexpr std::uint64_t segment_of(std::uint64_t pos) { return pos >> 16; }
inline constexpr std::size_t index_of(std::uint64_t pos) {
  return static_cast<std::size_t>(pos & 0xffff);
}

// Whether a segment offset (read from shared memory) names a whole segment of `arena`.
inline bool segment_fits(std::span<const std::byte> arena, std::uint64_t segment) {
  return segment != 0 && segment % 16 == 0 && segment < arena.size() &&
         arena.size() - segment >= kSegmentSize;
}

// One step of a consumer at `head`, the committed records ending at `tail`.
struct Step {
  enum Kind {
    empty,         // head == tail
    item,          // an item: payload (in the segment or its item block)
    next_segment,  // an end record: go on at new_head, in the next segment
    corrupt,       // an impossible position, record, segment link or item block
  } kind = corrupt;
  std::string_view payload;
  std::uint64_t block_offset = 0;  // the item block to free after taking the item, or 0
  std::uint64_t new_head = 0;      // where the head goes after this step
};

// What lies at `head`. Every offset read from `arena` (the whole arena mapping) is
// checked before use; nothing is allocated. The queue's get() and its finalizer walk
// the queue with this, and fuzz/queue_record_fuzzer.cpp feeds it arbitrary bytes.
inline Step read_at(std::span<const std::byte> arena, std::uint64_t head, std::uint64_t tail) {
  Step step;
  if (head == tail) {
    step.kind = Step::empty;
    return step;
  }
  const std::uint64_t segment = segment_of(head);
  if (!segment_fits(arena, segment)) return step;
  const std::size_t limit = segment_of(tail) == segment ? index_of(tail) : kSegmentSize;
  const Record record = decode_record(arena.subspan(segment, kSegmentSize), index_of(head), limit);
  if (record.status == RecordStatus::corrupt) return step;
  if (record.status == RecordStatus::end) {
    const std::uint64_t next = load_u64(arena.data() + segment);
    if (!segment_fits(arena, next) || next == segment) return step;
    step.kind = Step::next_segment;
    step.new_head = position(next, kSegmentHeader);
    return step;
  }
  if (record.external) {
    const BlockView view = decode_block(arena, record.block_offset);
    if (!view.ok) return step;
    step.payload = view.payload;
    step.block_offset = record.block_offset;
  } else {
    step.payload = record.payload;
  }
  step.kind = Step::item;
  step.new_head = position(segment, index_of(head) + record.size);
  return step;
}

// Writers, used by the queue only (the fuzzer checks that what they write decodes back).
inline void write_inline(std::byte* at, std::string_view pickle) {
  const std::uint32_t length = static_cast<std::uint32_t>(pickle.size());
  std::memcpy(at, &length, 4);
  std::memcpy(at + 4, &kInline, 4);
  std::memcpy(at + kRecordHeader, pickle.data(), pickle.size());
}
inline void write_external(std::byte* at, std::uint64_t block_offset) {
  const std::uint32_t zero = 0;
  std::memcpy(at, &zero, 4);
  std::memcpy(at + 4, &kExternal, 4);
  std::memcpy(at + kRecordHeader, &block_offset, 8);
}
inline void write_end(std::byte* at) {
  const std::uint32_t zero = 0;
  std::memcpy(at, &zero, 4);
  std::memcpy(at + 4, &kEnd, 4);
}
inline void write_block_header(std::byte* at, std::uint64_t capacity, std::uint64_t length) {
  std::memcpy(at, &capacity, 8);
  std::memcpy(at + 8, &length, 8);
}

}  // namespace mp::detail::queue_layout

namespace mp::detail {

// The moments of put() and get() between which a SIGKILL leaves distinct states: the
// tests kill a child at each (tests/queues_test.cpp, QueueCrashPoints) and check that
// the survivors find the queue consistent. A hook that is null (always, outside those
// tests) costs one load per step.
enum class queue_step : int {
  put_segment_linked = 1,  // an end record and the next segment linked, not committed
  put_written,             // the record written past the tail
  put_journaled,           // the producers' journal written
  put_counted,             // put_count raised, tail not yet moved (the rollback case)
  put_committed,           // tail moved, put lock still held
  get_next_segment,        // head moved to the next segment, old one not yet recycled
  get_decoded,             // the item unpickled, head not moved
  get_journaled,           // the consumers' journal written
  get_committed,           // head moved, got_count not yet raised (the roll-forward case)
  get_counted,             // got_count raised, get lock still held
};
extern std::atomic<void (*)(queue_step)> queue_step_hook;

}  // namespace mp::detail
