// Fuzzes the queue record decoder: lib/src/queue_record.hpp's read_at(), the step that
// mp::Queue::get() (and the queue's finalizer) run on shared memory, followed by the
// unpickling get() does. The input builds an arena image (a queue's segments, records and
// item blocks as another process could have left them, corrupt or not) and names a head
// and a tail; the harness walks from head to tail as get() would. Bad bytes must give a
// Step::corrupt or mp::UnpicklingError (from the pickle in a record), never a read
// outside the arena, a crash, an allocation of a claimed size, or a loop.
//
// Input: u64 head | u64 tail | patches, each u32 offset | u16 length | length bytes,
// copied into a zeroed arena of kArenaSize bytes at offset (mod the arena size, cut at
// its end). Positions are (segment offset << 16 | index), as the queue stores them.
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <mp/errors.hpp>
#include <mp/pickle.hpp>

#include "fuzz_support.hpp"
#include "queue_record.hpp"

namespace {

using namespace mp::detail::queue_layout;

// Room for the arena header page, two segments and an item block.
constexpr std::size_t kArenaSize = 4096 + 2 * 32768 + 16384;
constexpr std::uint64_t kFirst = 4096;           // the first segment's offset
constexpr std::uint64_t kSecond = 4096 + 32768;  // the second's
constexpr std::uint64_t kBlock = 4096 + 2 * 32768;
constexpr int kMaxSteps = 512;

std::vector<std::byte>& arena_buffer() {
  static std::vector<std::byte> buffer(kArenaSize);
  return buffer;
}

void put_u64(std::string& out, std::uint64_t value) {
  out.append(reinterpret_cast<const char*>(&value), sizeof value);
}

// A patch: `bytes` at `offset` of the arena.
void patch(std::string& out, std::uint32_t offset, std::string_view bytes) {
  const auto length = static_cast<std::uint16_t>(bytes.size());
  out.append(reinterpret_cast<const char*>(&offset), sizeof offset);
  out.append(reinterpret_cast<const char*>(&length), sizeof length);
  out.append(bytes.substr(0, length));
}

std::string inline_record(std::string_view pickle) {
  std::string out(inline_record_size(pickle.size()), '\0');
  write_inline(reinterpret_cast<std::byte*>(out.data()), pickle);
  return out;
}

std::string external_record(std::uint64_t block) {
  std::string out(kExternalRecordSize, '\0');
  write_external(reinterpret_cast<std::byte*>(out.data()), block);
  return out;
}

std::string end_record() {
  std::string out(kEndRecordSize, '\0');
  write_end(reinterpret_cast<std::byte*>(out.data()));
  return out;
}

std::string u64_bytes(std::uint64_t value) {
  return std::string(reinterpret_cast<const char*>(&value), sizeof value);
}

// Valid queue images: items inline, an item block, an end record and a second segment.
std::vector<std::string> seeds() {
  std::vector<std::string> valid;
  const std::string a = mp::pickle::dumps(std::string("first item"));
  const std::string b = mp::pickle::dumps(std::string(kMaxInline + 100, 'b'));
  const std::string c = mp::pickle::dumps(std::string());
  {  // one segment: two inline items
    std::string in;
    const std::string records = inline_record(a) + inline_record(c);
    put_u64(in, position(kFirst, kSegmentHeader));
    put_u64(in, position(kFirst, kSegmentHeader + records.size()));
    patch(in, kFirst + kSegmentHeader, records);
    valid.push_back(in);
  }
  {  // an item in its own block, then an end record and an item in the next segment
    std::string in;
    const std::string first = external_record(kBlock) + end_record();
    const std::string second = inline_record(a);
    put_u64(in, position(kFirst, kSegmentHeader));
    put_u64(in, position(kSecond, kSegmentHeader + second.size()));
    std::string block(kBlockHeader, '\0');
    write_block_header(reinterpret_cast<std::byte*>(block.data()), b.size() + 40, b.size());
    patch(in, kBlock, block + b);
    patch(in, kFirst, u64_bytes(kSecond));  // the first segment's link
    patch(in, kFirst + kSegmentHeader, first);
    patch(in, kSecond + kSegmentHeader, second);
    valid.push_back(in);
  }
  {  // empty: head == tail
    std::string in;
    put_u64(in, position(kFirst, kSegmentHeader));
    put_u64(in, position(kFirst, kSegmentHeader));
    valid.push_back(in);
  }
  return mp_fuzz::with_truncations(valid);
}
MP_FUZZ_SEEDS(seeds);

std::uint64_t read_u64(const std::uint8_t* at) {
  std::uint64_t value;
  std::memcpy(&value, at, sizeof value);
  return value;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 16) return 0;
  std::vector<std::byte>& buffer = arena_buffer();
  std::fill(buffer.begin(), buffer.end(), std::byte{0});
  std::uint64_t head = read_u64(data);
  const std::uint64_t tail = read_u64(data + 8);
  for (std::size_t at = 16; at + 6 <= size;) {
    std::uint32_t offset;
    std::uint16_t length;
    std::memcpy(&offset, data + at, 4);
    std::memcpy(&length, data + at + 4, 2);
    at += 6;
    const std::size_t count = std::min<std::size_t>(length, size - at);
    offset %= kArenaSize;
    std::memcpy(buffer.data() + offset, data + at,
                std::min<std::size_t>(count, kArenaSize - offset));
    at += count;
  }
  const std::span<const std::byte> arena(buffer);
  for (int step_count = 0; step_count < kMaxSteps; ++step_count) {
    const Step step = read_at(arena, head, tail);
    if (step.kind == Step::empty || step.kind == Step::corrupt) break;
    mp_fuzz::check(step.new_head != head, "a step moves the head");
    if (step.kind == Step::item) {
      const auto* begin = reinterpret_cast<const std::byte*>(step.payload.data());
      mp_fuzz::check(begin >= arena.data() && step.payload.size() <= arena.size() &&
                         begin + step.payload.size() <= arena.data() + arena.size(),
                     "an item's bytes lie inside the arena");
      mp_fuzz::expect_only<mp::UnpicklingError>([&] {
        const std::string item = mp::pickle::loads<std::string>(step.payload);
        mp_fuzz::check(item.size() < step.payload.size(),
                       "a loaded item is no larger than its pickle");
      });
    }
    head = step.new_head;
  }
  return 0;
}
