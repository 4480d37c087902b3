// Python's multiprocessing/shared_memory.py, with the lifetime rule documented in
// <mp/shared_memory.hpp> instead of a resource tracker.
//
// The registry of a process tree's non-persistent segments lives in the tree's shared
// heap arena (root word kRegistryRoot: the first chunk), so that every process of the
// tree finds it and the watchdog can read it after the tree is gone. Chunks are only
// appended (one CAS on a null link); entries change state with one atomic operation
// each (FREE -> WRITING by CAS, then plain stores by their owner), so a process killed
// at any point leaves every entry FREE, WRITING (ignored, leaked), CREATING or ACTIVE.
//
// A ShareableList segment: a header (magic, slot count, a robust writer lock), one
// descriptor per slot, then the slots' data, two buffers of `capacity` bytes each. A
// slot's descriptor is one 64-bit word: length (40 bits), type (3), which buffer holds
// the value (1) and a version (20). A writer, under the lock, writes the new value into
// the other buffer and then stores the new descriptor; readers copy the buffer the
// descriptor names and retry if the descriptor changed meanwhile (a seqlock whose
// writers never touch the published buffer).
#include <mp/shared_memory.hpp>

#include <algorithm>
#include <atomic>
#include <bit>
#include <cstring>
#include <stdexcept>
#include <string>
#include <system_error>
#include <utility>

#include "heap_arena.hpp"
#include "identity.hpp"
#include "lock_core.hpp"
#include "posix/proc.hpp"
#include "posix/shm.hpp"

namespace mp {

namespace detail {

struct shm_mapping {
  std::string name;                       // without the leading slash
  std::string posix_name;                 // "/" + name
  std::atomic<std::byte*> base{nullptr};  // null once closed (close() may race close())
  std::size_t size = 0;
  bool huge_pages = false;
  std::uint64_t device = 0, inode = 0;

  ~shm_mapping() {
    if (std::byte* mapped = base.load()) posix::unmap(mapped, size);
  }
};

}  // namespace detail

namespace {

// ---- Names ------------------------------------------------------------------------------

constexpr std::size_t kMaxNameLength = 255;  // NAME_MAX of /dev/shm

// Returns the name without its leading slash; throws std::invalid_argument if bad.
std::string checked_name(std::string_view name) {
  if (!name.empty() && name.front() == '/') name.remove_prefix(1);
  if (name.empty() || name.size() > kMaxNameLength || name == "." || name == ".." ||
      name.find('/') != std::string_view::npos || name.find('\0') != std::string_view::npos)
    throw std::invalid_argument("mp::SharedMemory: invalid segment name \"" + std::string(name) +
                                "\" (1 to 255 bytes, no '/' after the first, no NUL)");
  return std::string(name);
}

std::string random_name() {
  unsigned char bytes[8];
  if (auto ec = posix::random_bytes(bytes, sizeof bytes))
    throw std::system_error(ec, "mp::SharedMemory: getrandom");
  static constexpr char kHex[] = "0123456789abcdef";
  std::string name = "mp-";
  for (unsigned char byte : bytes) {
    name += kHex[byte >> 4];
    name += kHex[byte & 15];
  }
  return name;
}

// ---- The registry ---------------------------------------------------------------------

constexpr unsigned kWatchdogRoot = 0;  // owner id (pid + start time) of the watchdog
constexpr unsigned kRegistryRoot = 1;  // offset of the first chunk

enum EntryState : std::uint32_t { kFree = 0, kWriting = 1, kCreating = 2, kActive = 3 };

struct RegistryEntry {
  std::atomic<std::uint32_t> state;
  std::uint32_t random_name;  // 1: a default name (nobody else can have made it)
  std::uint64_t device;
  std::uint64_t inode;
  char posix_name[kMaxNameLength + 9];  // "/" + name + NUL
};

constexpr std::size_t kEntriesPerChunk = 14;
struct RegistryChunk {
  std::atomic<std::uint64_t> next;
  std::uint64_t reserved;
  RegistryEntry entries[kEntriesPerChunk];
};
static_assert(sizeof(RegistryChunk) <= 4096);

RegistryChunk* chunk_at(const std::byte* base, std::uint64_t offset) {
  return reinterpret_cast<RegistryChunk*>(const_cast<std::byte*>(base) + offset);
}

// Claims a FREE entry (now WRITING) in `arena`'s registry, adding a chunk if needed.
RegistryEntry& claim_entry(detail::Arena& arena) {
  for (;;) {
    std::atomic<std::uint64_t>* link = &arena.root(kRegistryRoot);
    for (std::uint64_t offset = link->load(std::memory_order_acquire); offset != 0;
         offset = link->load(std::memory_order_acquire)) {
      RegistryChunk* chunk = chunk_at(arena.base(), offset);
      for (auto& entry : chunk->entries) {
        std::uint32_t expected = kFree;
        if (entry.state.load(std::memory_order_relaxed) == kFree &&
            entry.state.compare_exchange_strong(expected, kWriting, std::memory_order_acquire))
          return entry;
      }
      link = &chunk->next;
    }
    // Every entry is taken: append a zeroed chunk (if another process appended one
    // first, ours goes back and the walk continues into theirs).
    const std::uint64_t offset = arena.allocate(sizeof(RegistryChunk));
    std::memset(arena.base() + offset, 0, sizeof(RegistryChunk));
    std::uint64_t expected = 0;
    if (!link->compare_exchange_strong(expected, offset, std::memory_order_release))
      arena.free(offset);
  }
}

// Forgets the ACTIVE entry for (posix_name, device, inode), if this tree registered it.
void forget_entry(const std::string& posix_name, std::uint64_t device, std::uint64_t inode) {
  detail::Arena& arena = detail::heap_main_arena();
  for (std::uint64_t offset = arena.root(kRegistryRoot).load(std::memory_order_acquire);
       offset != 0;) {
    RegistryChunk* chunk = chunk_at(arena.base(), offset);
    for (auto& entry : chunk->entries) {
      if (entry.state.load(std::memory_order_acquire) != kActive || entry.device != device ||
          entry.inode != inode || posix_name != entry.posix_name)
        continue;
      std::uint32_t expected = kActive;
      entry.state.compare_exchange_strong(expected, kFree, std::memory_order_release);
    }
    offset = chunk->next.load(std::memory_order_acquire);
  }
}

// In the watchdog, once the tree has ended (async-signal-safe calls only).
void remove_registered(const std::byte* base, std::uint64_t size) noexcept {
  std::uint64_t offset = detail::arena_root(base, kRegistryRoot).load(std::memory_order_acquire);
  while (offset != 0 && offset < size && size - offset >= sizeof(RegistryChunk)) {
    RegistryChunk* chunk = chunk_at(base, offset);
    for (auto& entry : chunk->entries) {
      const std::uint32_t state = entry.state.load(std::memory_order_acquire);
      char name[sizeof entry.posix_name];
      std::memcpy(name, entry.posix_name, sizeof name);
      name[sizeof name - 1] = '\0';
      if (state == kCreating && entry.random_name == 1) {
        (void)posix::shm_remove(name);
      } else if (state == kActive) {
        // Only the segment the tree created, not a later one of the same name.
        posix::unique_fd fd;
        std::uint64_t device = 0, inode = 0;
        if (posix::shm_attach(name, fd) || posix::file_identity(fd.get(), device, inode)) continue;
        if (device == entry.device && inode == entry.inode) (void)posix::shm_remove(name);
      }
    }
    offset = chunk->next.load(std::memory_order_acquire);
  }
}

// Starts this tree's watchdog unless a live one is recorded. Two threads or processes of
// the tree may both start one at the same moment: harmless (both remove the same
// segments), so no lock (which a fork could inherit held).
void ensure_watchdog(detail::Arena& arena) {
  auto& recorded = arena.root(kWatchdogRoot);
  const std::uint64_t id = recorded.load(std::memory_order_acquire);
  if (id != 0 && detail::owner_alive(id)) return;
  std::vector<posix::MappedRange> ranges;
  for (auto [base, size] : detail::heap_mappings()) ranges.push_back({base, size});
  pid_t pid = 0;
  if (auto ec = posix::start_tree_watchdog(arena.fd(), ranges.data(), ranges.size(),
                                           &remove_registered, pid))
    throw std::system_error(ec, "mp::SharedMemory: starting the segment watchdog");
  posix::ProcessStatus status;
  std::uint64_t ticks = 0;
  if (!posix::process_status(pid, status) && status.running) ticks = status.start_ticks;
  recorded.store(static_cast<std::uint64_t>(pid) | ((ticks & 0xffffffff) << 32),
                 std::memory_order_release);
}

// Maps `fd` (size bytes) into `mapping`, with the options' paging.
void map_segment(detail::shm_mapping& mapping, int fd, std::size_t size,
                 const SharedMemoryOptions& options) {
  void* address = nullptr;
  if (auto ec = posix::map_shared(fd, size, address))
    throw std::system_error(ec, "mp::SharedMemory: mapping \"" + mapping.name + "\"");
  mapping.base = static_cast<std::byte*>(address);
  mapping.size = size;
  if (options.huge_pages) posix::advise_huge_pages(address, size, mapping.huge_pages);
  if (options.prefault) {
    if (auto ec = posix::populate_for_write(address, size))
      throw std::system_error(ec, "mp::SharedMemory: pre-faulting \"" + mapping.name + "\" (" +
                                      std::to_string(size) + " bytes)");
  }
}

}  // namespace

pid_t detail::shared_memory_watchdog_pid() {
  return static_cast<pid_t>(detail::heap_main_arena().root(kWatchdogRoot).load() & 0xffffffff);
}

// ---- SharedMemory -------------------------------------------------------------------------

namespace {

// The end of both create_only constructors, once the segment exists as `fd`: records its
// identity in the registry entry (if the tree cleans it up), then maps it; a failure
// removes the segment and frees the entry.
std::shared_ptr<detail::shm_mapping> finish_creation(std::shared_ptr<detail::shm_mapping> mapping,
                                                     const posix::unique_fd& fd,
                                                     RegistryEntry* entry, std::size_t size,
                                                     const SharedMemoryOptions& options) {
  (void)posix::file_identity(fd.get(), mapping->device, mapping->inode);
  if (entry) {
    entry->device = mapping->device;
    entry->inode = mapping->inode;
    entry->state.store(kActive, std::memory_order_release);
  }
  try {
    map_segment(*mapping, fd.get(), size, options);
  } catch (...) {
    (void)posix::shm_remove(mapping->posix_name.c_str());
    if (entry) entry->state.store(kFree, std::memory_order_release);
    throw;
  }
  return mapping;
}

}  // namespace

SharedMemory::SharedMemory(create_only_t, std::size_t size, SharedMemoryOptions options) {
  if (size == 0) throw std::invalid_argument("mp::SharedMemory: size must be positive");
  auto mapping = std::make_shared<detail::shm_mapping>();
  detail::Arena* arena = nullptr;
  if (!options.persist) {
    arena = &detail::heap_main_arena();
    ensure_watchdog(*arena);
  }
  posix::unique_fd fd;
  RegistryEntry* entry = nullptr;
  for (;;) {
    mapping->name = random_name();
    mapping->posix_name = "/" + mapping->name;
    if (arena) {
      entry = &claim_entry(*arena);
      entry->random_name = 1;
      std::memcpy(entry->posix_name, mapping->posix_name.c_str(), mapping->posix_name.size() + 1);
      entry->state.store(kCreating, std::memory_order_release);
    }
    const auto ec = posix::shm_create(mapping->posix_name.c_str(), size, fd);
    if (!ec) break;
    if (entry) entry->state.store(kFree, std::memory_order_release);
    if (ec != std::errc::file_exists)
      throw std::system_error(
          ec, "mp::SharedMemory: creating a segment of " + std::to_string(size) + " bytes");
  }
  mapping_ = finish_creation(std::move(mapping), fd, entry, size, options);
}

SharedMemory::SharedMemory(create_only_t, std::string_view name, std::size_t size,
                           SharedMemoryOptions options) {
  auto mapping = std::make_shared<detail::shm_mapping>();
  mapping->name = checked_name(name);
  mapping->posix_name = "/" + mapping->name;
  if (size == 0) throw std::invalid_argument("mp::SharedMemory: size must be positive");
  RegistryEntry* entry = nullptr;
  if (!options.persist) {
    detail::Arena& arena = detail::heap_main_arena();
    ensure_watchdog(arena);
    entry = &claim_entry(arena);
    entry->random_name = 0;
    std::memcpy(entry->posix_name, mapping->posix_name.c_str(), mapping->posix_name.size() + 1);
    entry->state.store(kCreating, std::memory_order_release);
  }
  posix::unique_fd fd;
  if (auto ec = posix::shm_create(mapping->posix_name.c_str(), size, fd)) {
    if (entry) entry->state.store(kFree, std::memory_order_release);
    throw std::system_error(ec, "mp::SharedMemory: creating \"" + mapping->name + "\"");
  }
  mapping_ = finish_creation(std::move(mapping), fd, entry, size, options);
}

SharedMemory::SharedMemory(open_only_t, std::string_view name, SharedMemoryOptions options) {
  if (options.persist)
    throw std::invalid_argument(
        "mp::SharedMemory: persist applies to creating a segment, not to attaching");
  auto mapping = std::make_shared<detail::shm_mapping>();
  mapping->name = checked_name(name);
  mapping->posix_name = "/" + mapping->name;
  posix::unique_fd fd;
  if (auto ec = posix::shm_attach(mapping->posix_name.c_str(), fd))
    throw std::system_error(ec, "mp::SharedMemory: attaching to \"" + mapping->name + "\"");
  std::uint64_t size = 0;
  if (auto ec = posix::file_size(fd.get(), size))
    throw std::system_error(ec, "mp::SharedMemory: inspecting \"" + mapping->name + "\"");
  if (size == 0)
    throw std::invalid_argument("mp::SharedMemory: segment \"" + mapping->name + "\" is empty");
  (void)posix::file_identity(fd.get(), mapping->device, mapping->inode);
  map_segment(*mapping, fd.get(), size, options);
  mapping_ = std::move(mapping);
}

const std::string& SharedMemory::name() const noexcept {
  static const std::string empty;
  return mapping_ ? mapping_->name : empty;
}

std::size_t SharedMemory::size() const noexcept { return mapping_ ? mapping_->size : 0; }

std::span<std::byte> SharedMemory::buf() const noexcept {
  if (!mapping_) return {};
  std::byte* mapped = mapping_->base.load(std::memory_order_acquire);
  if (!mapped) return {};
  return {mapped, mapping_->size};
}

bool SharedMemory::huge_pages() const noexcept { return mapping_ && mapping_->huge_pages; }

void SharedMemory::close() const noexcept {
  if (!mapping_) return;
  if (std::byte* mapped = mapping_->base.exchange(nullptr)) posix::unmap(mapped, mapping_->size);
}

void SharedMemory::unlink() const {
  if (!mapping_) throw std::logic_error("mp::SharedMemory::unlink: an empty handle");
  if (auto ec = posix::shm_remove(mapping_->posix_name.c_str()))
    throw std::system_error(ec, "mp::SharedMemory: unlinking \"" + mapping_->name + "\"");
  forget_entry(mapping_->posix_name, mapping_->device, mapping_->inode);
}

// ---- ShareableList ------------------------------------------------------------------------

namespace {

constexpr std::uint64_t kListMagic = 0x3174736c6873706d;  // "mpshlst1"

struct ListHeader {
  std::uint64_t magic;
  std::uint64_t count;
  std::uint64_t reserved[2];
  detail::LockState lock;
};
constexpr std::size_t kListHeaderSize = 64;
static_assert(sizeof(ListHeader) <= kListHeaderSize);

struct SlotHeader {
  std::atomic<std::uint64_t> descriptor;
  std::uint64_t capacity;
  std::uint64_t offset;  // of the first buffer; the second follows at offset + capacity
  std::uint64_t reserved;
};
static_assert(sizeof(SlotHeader) == 32);

enum ItemType : std::uint64_t { kNone = 0, kInt, kDouble, kBool, kString, kBytes, kTypeCount };

constexpr unsigned kLengthBits = 40, kTypeShift = 40, kIndexShift = 43, kVersionShift = 44;
constexpr std::uint64_t kLengthMask = (std::uint64_t{1} << kLengthBits) - 1;

std::uint64_t length_of(std::uint64_t d) { return d & kLengthMask; }
std::uint64_t type_of(std::uint64_t d) { return (d >> kTypeShift) & 7; }
std::uint64_t buffer_of(std::uint64_t d) { return (d >> kIndexShift) & 1; }
std::uint64_t version_of(std::uint64_t d) { return d >> kVersionShift; }
std::uint64_t make_descriptor(std::uint64_t length, std::uint64_t type, std::uint64_t buffer,
                              std::uint64_t version) {
  return length | (type << kTypeShift) | (buffer << kIndexShift) |
         ((version & 0xfffff) << kVersionShift);
}

ListHeader& header_of(std::byte* base) { return *reinterpret_cast<ListHeader*>(base); }
SlotHeader& slot_of(std::byte* base, std::size_t index) {
  return reinterpret_cast<SlotHeader*>(base + kListHeaderSize)[index];
}

// An item's type and bytes.
struct Encoded {
  std::uint64_t type;
  std::string bytes;
};

Encoded encode(const ShareableItem& item) {
  return std::visit(
      [](const auto& value) -> Encoded {
        using V = std::decay_t<decltype(value)>;
        if constexpr (std::is_same_v<V, std::monostate>) {
          return {kNone, {}};
        } else if constexpr (std::is_same_v<V, std::int64_t>) {
          return {kInt, std::string(reinterpret_cast<const char*>(&value), sizeof value)};
        } else if constexpr (std::is_same_v<V, double>) {
          return {kDouble, std::string(reinterpret_cast<const char*>(&value), sizeof value)};
        } else if constexpr (std::is_same_v<V, bool>) {
          return {kBool, std::string(1, value ? '\1' : '\0')};
        } else if constexpr (std::is_same_v<V, std::string>) {
          return {kString, value};
        } else {
          return {kBytes, std::string(reinterpret_cast<const char*>(value.data()), value.size())};
        }
      },
      item);
}

ShareableItem decode(std::uint64_t type, const std::string& bytes) {
  switch (type) {
    case kInt: {
      std::int64_t value = 0;
      std::memcpy(&value, bytes.data(), std::min(bytes.size(), sizeof value));
      return value;
    }
    case kDouble: {
      double value = 0;
      std::memcpy(&value, bytes.data(), std::min(bytes.size(), sizeof value));
      return value;
    }
    case kBool:
      return !bytes.empty() && bytes[0] != '\0';
    case kString:
      return bytes;
    case kBytes: {
      const auto* data = reinterpret_cast<const std::byte*>(bytes.data());
      return ShareableBytes(data, data + bytes.size());
    }
    default:
      return std::monostate{};
  }
}

constexpr std::size_t kMinSlotCapacity = 8;

std::size_t round8(std::size_t n) { return (n + 7) / 8 * 8; }

[[noreturn]] void throw_not_a_list(const std::string& name) {
  throw std::invalid_argument("mp::ShareableList: segment \"" + name +
                              "\" does not hold a ShareableList");
}

[[noreturn]] void throw_corrupt_slot(std::size_t index, const std::string& name) {
  throw std::invalid_argument("mp::ShareableList: slot " + std::to_string(index) + " of \"" + name +
                              "\" is corrupt");
}

// Where a slot's two buffers lie in the segment.
struct SlotLayout {
  std::uint64_t capacity;
  std::uint64_t offset;
};

// Reads the capacity and offset of slot `index` (< `slots`) once and checks that both
// buffers lie in the data area of the segment. Checking once at open is not enough: any
// process that maps the segment can overwrite them later, and the reader would copy from
// wherever they point. Throws std::invalid_argument if they do not fit.
SlotLayout checked_layout(const SharedMemory& shm, std::size_t slots, std::size_t index) {
  SlotHeader& slot = slot_of(shm.buf().data(), index);
  const SlotLayout layout{
      std::atomic_ref<std::uint64_t>(slot.capacity).load(std::memory_order_relaxed),
      std::atomic_ref<std::uint64_t>(slot.offset).load(std::memory_order_relaxed)};
  const std::uint64_t size = shm.size();
  const std::uint64_t data_start = kListHeaderSize + std::uint64_t{slots} * sizeof(SlotHeader);
  if (layout.capacity > kLengthMask || layout.offset < data_start || layout.offset > size ||
      (size - layout.offset) / 2 < layout.capacity)
    throw_corrupt_slot(index, shm.name());
  return layout;
}

}  // namespace

ShareableList::ShareableList(create_only_t, std::vector<ShareableItem> values,
                             ShareableListOptions options) {
  create(std::move(values), options, nullptr);
}

ShareableList::ShareableList(create_only_t, std::string_view name,
                             std::vector<ShareableItem> values, ShareableListOptions options) {
  create(std::move(values), options, &name);
}

void ShareableList::create(std::vector<ShareableItem> values, const ShareableListOptions& options,
                           const std::string_view* name) {
  std::vector<Encoded> encoded;
  std::vector<std::size_t> capacities;
  std::size_t total = kListHeaderSize + values.size() * sizeof(SlotHeader);
  for (std::size_t i = 0; i < values.size(); ++i) {
    encoded.push_back(encode(values[i]));
    std::size_t capacity = std::max(encoded.back().bytes.size(), kMinSlotCapacity);
    if (i < options.capacities.size()) capacity = std::max(capacity, options.capacities[i]);
    if (capacity > kLengthMask) throw std::invalid_argument("mp::ShareableList: slot too large");
    capacity = round8(capacity);
    capacities.push_back(capacity);
    total += 2 * capacity;
  }
  // A list of no items still needs a segment (size 0 is not one).
  shm_ = name ? SharedMemory(create_only, *name, total, options.memory)
              : SharedMemory(create_only, total, options.memory);
  std::byte* base = this->base();
  std::size_t offset = kListHeaderSize + values.size() * sizeof(SlotHeader);
  for (std::size_t i = 0; i < values.size(); ++i) {
    auto& slot = slot_of(base, i);
    slot.capacity = capacities[i];
    slot.offset = offset;
    std::memcpy(base + offset, encoded[i].bytes.data(), encoded[i].bytes.size());
    slot.descriptor.store(make_descriptor(encoded[i].bytes.size(), encoded[i].type, 0, 0),
                          std::memory_order_relaxed);
    offset += 2 * capacities[i];
  }
  auto& header = header_of(base);
  header.count = values.size();
  std::atomic_ref<std::uint64_t>(header.magic).store(kListMagic, std::memory_order_release);
  slots_ = values.size();
}

ShareableList::ShareableList(open_only_t, std::string_view name) : shm_(open_only, name) {
  check_layout();
}

void ShareableList::check_layout() {
  const std::size_t size = shm_.size();
  std::byte* base = this->base();
  if (size < kListHeaderSize) throw_not_a_list(shm_.name());
  auto& header = header_of(base);
  if (std::atomic_ref<std::uint64_t>(header.magic).load(std::memory_order_acquire) != kListMagic)
    throw_not_a_list(shm_.name());
  const std::uint64_t count = header.count;
  if (count > (size - kListHeaderSize) / sizeof(SlotHeader)) throw_not_a_list(shm_.name());
  for (std::uint64_t i = 0; i < count; ++i) {
    try {
      (void)checked_layout(shm_, count, i);
    } catch (const std::invalid_argument&) {
      throw_not_a_list(shm_.name());
    }
  }
  slots_ = count;
}

namespace {
// The layout of slot `index` of a list of `slots` in `shm`, checked. Throws
// std::out_of_range for a bad index, std::logic_error once the segment is closed and
// std::invalid_argument for a corrupt layout.
// A negative index counts from the end, as in Python; `index` becomes the slot's number.
SlotLayout slot_layout(const SharedMemory& shm, std::size_t slots, std::int64_t& index) {
  const auto size = static_cast<std::int64_t>(slots);
  if (index < -size || index >= size)
    throw std::out_of_range("mp::ShareableList: index " + std::to_string(index) +
                            " out of range (size " + std::to_string(slots) + ")");
  if (index < 0) index += size;
  if (!shm.buf().data()) throw std::logic_error("mp::ShareableList: the segment is closed");
  return checked_layout(shm, slots, static_cast<std::size_t>(index));
}
}  // namespace

std::size_t ShareableList::capacity(std::int64_t index) const {
  return slot_layout(shm_, slots_, index).capacity;
}

ShareableItem ShareableList::operator[](std::int64_t index) const { return at(index); }

ShareableItem ShareableList::at(std::int64_t index) const {
  const SlotLayout layout = slot_layout(shm_, slots_, index);
  auto& slot = slot_of(base(), static_cast<std::size_t>(index));
  std::string bytes;
  for (;;) {
    const std::uint64_t before = slot.descriptor.load(std::memory_order_acquire);
    const std::uint64_t length = length_of(before);
    if (length > layout.capacity || type_of(before) >= kTypeCount)
      throw_corrupt_slot(static_cast<std::size_t>(index), shm_.name());
    bytes.assign(
        reinterpret_cast<const char*>(base() + layout.offset + buffer_of(before) * layout.capacity),
        length);
    std::atomic_thread_fence(std::memory_order_acquire);
    if (slot.descriptor.load(std::memory_order_relaxed) == before)
      return decode(type_of(before), bytes);
  }
}

void ShareableList::set(std::int64_t index, const ShareableItem& value) {
  const SlotLayout layout = slot_layout(shm_, slots_, index);
  const std::uint64_t capacity = layout.capacity;
  const Encoded encoded = encode(value);
  if (encoded.bytes.size() > capacity)
    throw std::invalid_argument("mp::ShareableList: a value of " +
                                std::to_string(encoded.bytes.size()) + " bytes does not fit slot " +
                                std::to_string(index) + " (capacity " + std::to_string(capacity) +
                                " bytes)");
  auto& header = header_of(base());
  auto& slot = slot_of(base(), static_cast<std::size_t>(index));
  (void)detail::robust_lock_acquire(header.lock, true, std::nullopt);
  const std::uint64_t old = slot.descriptor.load(std::memory_order_relaxed);
  const std::uint64_t buffer = buffer_of(old) ^ 1;
  std::memcpy(base() + layout.offset + buffer * capacity, encoded.bytes.data(),
              encoded.bytes.size());
  slot.descriptor.store(
      make_descriptor(encoded.bytes.size(), encoded.type, buffer, version_of(old) + 1),
      std::memory_order_release);
  (void)detail::robust_lock_release(header.lock);
}

std::vector<ShareableItem> ShareableList::to_vector() const {
  std::vector<ShareableItem> items;
  items.reserve(slots_);
  for (std::size_t i = 0; i < slots_; ++i) items.push_back(at(static_cast<std::int64_t>(i)));
  return items;
}

std::string ShareableList::format() const {
  // Python's struct codes per slot: q (int), d (float), xxxxxxx? (bool), xxxxxx?x (None),
  // <capacity>s (str, bytes).
  std::string codes;
  for (std::size_t i = 0; i < slots_; ++i) {
    const auto index = static_cast<std::int64_t>(i);
    const ShareableItem item = at(index);
    if (std::holds_alternative<std::monostate>(item))
      codes += "xxxxxx?x";
    else if (std::holds_alternative<std::int64_t>(item))
      codes += "q";
    else if (std::holds_alternative<double>(item))
      codes += "d";
    else if (std::holds_alternative<bool>(item))
      codes += "xxxxxxx?";
    else
      codes += std::to_string(capacity(index)) + "s";
  }
  return codes;
}

std::size_t ShareableList::count(const ShareableItem& value) const {
  std::size_t found = 0;
  for (std::size_t i = 0; i < slots_; ++i)
    found += at(static_cast<std::int64_t>(i)) == value ? 1 : 0;
  return found;
}

std::size_t ShareableList::index(const ShareableItem& value) const {
  for (std::size_t i = 0; i < slots_; ++i)
    if (at(static_cast<std::int64_t>(i)) == value) return i;
  throw std::invalid_argument("mp::ShareableList::index: value not in the list");
}

}  // namespace mp
