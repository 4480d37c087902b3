// ManagerCore: a Manager's segment and its lock (the layout and the transactions are in
// manager_segment.hpp), and the per-thread buffers of the typed wrappers.
#include <algorithm>
#include <bit>
#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <string>

#include "manager_segment.hpp"

namespace mp::detail {

void format_segment(std::byte* base, std::uint64_t size) {
  auto& header = *reinterpret_cast<SegmentHeader*>(base);
  // The largest aligned blocks that fit, in ascending order of offset: each one is as
  // large as its offset's alignment and the space left allow.
  for (std::uint64_t start = kFirstBlock; size - start >= (std::uint64_t{1} << kMinClass);) {
    const unsigned size_class =
        std::min({static_cast<unsigned>(std::countr_zero(start)),
                  static_cast<unsigned>(std::bit_width(size - start)) - 1, kMaxClass});
    const std::uint64_t payload = start + kBlockHeaderSize;
    std::uint64_t& head = header.free_heads[size_class - kMinClass];
    auto* block = reinterpret_cast<BlockHeader*>(base + start);
    block->tag = block_tag(kBlockFree, size_class, 0);
    block->next = head;
    if (head != 0) std::memcpy(base + head, &payload, 8);  // the old head's backward link
    head = payload;
    start += std::uint64_t{1} << size_class;
  }
}

// A segment lives in mp's shared heap: one that does not fit says what to lower, not
// only which environment variable raises the heap.
ManagerCore::ManagerCore(std::size_t segment_size) try
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
  format_segment(segment(), header.size);
} catch (const HeapExhausted& e) {
  throw HeapExhausted("mp::Manager: a segment of " + std::to_string(segment_size) +
                          " bytes does not fit mp's shared heap (" + std::to_string(e.heap_size()) +
                          " bytes): lower ManagerOptions::segment_size, or raise MP_HEAP_SIZE",
                      e.requested(), e.heap_size());
}

void ManagerCore::check_bound() const {
  if (!lock_ || segment() == nullptr)
    throw std::logic_error("mp::Manager: this handle refers to no manager (default-constructed)");
}

std::size_t ManagerCore::segment_size() const {
  check_bound();
  return reinterpret_cast<const SegmentHeader*>(segment())->size + kHeapOverhead;
}

Recoveries ManagerCore::recoveries() const {
  ManagerTransaction t(*this);
  const Recoveries result{.takeovers = t.header().takeovers, .rolled_back = t.header().rolled_back};
  t.commit();
  return result;
}

void ManagerCore::check(std::uint64_t root, ContainerKind kind, std::uint64_t fingerprint) const {
  check_bound();
  const auto& header = *reinterpret_cast<const SegmentHeader*>(segment());
  const std::uint64_t* words = reinterpret_cast<const std::uint64_t*>(segment() + root);
  if (header.magic != kSegmentMagic)
    throw UnpicklingError("mp::Manager: the pickled handle names a segment of another layout");
  if (root < kFirstBlock || root % 16 != 0 || root + 16 > header.size ||
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
