// ManagerCore: a Manager's segment and its lanes (the layout and the transactions are in
// manager_segment.hpp), and the per-thread buffers of the typed wrappers.
#include <cstdint>
#include <stdexcept>
#include <string>

#include "manager_segment.hpp"

namespace mp::detail {

// A segment lives in mp's shared heap: one that does not fit says what to lower, not
// only which environment variable raises the heap.
ManagerCore::ManagerCore(std::size_t segment_size) try
    : shared_object(
          shared_kind::manager, segment_size >= kMinSegmentSize ? segment_size - kHeapOverhead : 0,
          segment_size >= kMinSegmentSize ? first_block_for(lanes_for(segment_size)) : 0) {
  if (segment_size < kMinSegmentSize)  // the base allocated an empty object: fine to drop
    throw std::invalid_argument("mp::Manager: segment_size " + std::to_string(segment_size) +
                                " is below the minimum of " + std::to_string(kMinSegmentSize) +
                                " bytes");
  auto& header = *reinterpret_cast<SegmentHeader*>(segment());
  header.magic = kSegmentMagic;
  header.size = segment_size - kHeapOverhead;
  header.lane_count = lanes_for(segment_size);
  header.first_block = first_block_for(header.lane_count);
  // Lane 0 (lists, values, a lane whose own room ran out) gets half of the blocks' room,
  // the others share the rest.
  const std::uint64_t room = (header.size - header.first_block) / 16 * 16;
  const std::uint64_t lane_room =
      header.lane_count == 1 ? room : room / 2 / (header.lane_count - 1) / 16 * 16;
  std::uint64_t start = header.first_block;
  for (std::size_t j = header.lane_count; j-- > 0;) {
    auto& lane = *reinterpret_cast<Lane*>(segment() + kLanesOffset + j * kLaneStride);
    lane.bump = start;
    lane.end = j == 0 ? header.size : start + lane_room;
    start = lane.end;
  }
} catch (const HeapExhausted& e) {
  throw HeapExhausted("mp::Manager: a segment of " + std::to_string(segment_size) +
                          " bytes does not fit mp's shared heap (" + std::to_string(e.heap_size()) +
                          " bytes): lower ManagerOptions::segment_size, or raise MP_HEAP_SIZE",
                      e.requested(), e.heap_size());
}

void ManagerCore::check_bound() const {
  if (segment() == nullptr)
    throw std::logic_error("mp::Manager: this handle refers to no manager (default-constructed)");
}

std::size_t ManagerCore::segment_size() const {
  check_bound();
  return reinterpret_cast<const SegmentHeader*>(segment())->size + kHeapOverhead;
}

Recoveries ManagerCore::recoveries() const {
  ManagerTransaction t(*this);
  const Recoveries result{.takeovers = t.header().takeovers.load(std::memory_order_relaxed),
                          .rolled_back = t.header().rolled_back.load(std::memory_order_relaxed)};
  t.commit();
  return result;
}

void ManagerCore::check(std::uint64_t root, ContainerKind kind, std::uint64_t fingerprint) const {
  check_bound();
  const auto& header = *reinterpret_cast<const SegmentHeader*>(segment());
  const std::uint64_t* words = reinterpret_cast<const std::uint64_t*>(segment() + root);
  if (root < header.first_block || root % 16 != 0 || root + 16 > header.size ||
      words[kRootKind] != (kRootMagic | static_cast<std::uint32_t>(kind)))
    throw UnpicklingError("mp::Manager: the pickled handle names no container of this kind");
  if (words[kRootFingerprint] != fingerprint)
    throw UnpicklingError("mp::Manager: the pickled container holds other types");
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
