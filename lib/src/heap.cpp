// The shared heap: Python's multiprocessing/heap.py, without its lock.
//
// An arena is a memfd mapped MAP_SHARED | MAP_NORESERVE. Its first page holds the
// header: a magic, the arena's random id, its size, the bump pointer and one free list
// per size class. Blocks are powers of two from 64 bytes to 1 TiB, each with a 16-byte
// block header (state, size class, free-list link); the caller's bytes follow it.
//
// Crash safety comes from having no lock to poison: every change is one compare-and-swap
// on one word.
//   - Fresh space: CAS on the bump pointer. A request that does not fit throws
//     HeapExhausted and leaves the pointer alone, so smaller requests still succeed.
//   - Free lists: Treiber stacks. The head is one 64-bit word, the block offset / 64 in
//     the low 34 bits and an ABA tag (bumped on every change) in the high 30 bits.
//   - A process killed between taking a block and using it (or between unlinking and
//     pushing it) leaks that block; no other state is ever half-updated.
// Large blocks are powers of two as well (not whole pages): rounding up costs address
// space, of which a sparse 64 GiB arena has plenty, but no memory, since untouched
// pages are never allocated. Freeing a block of 64 KiB or more gives its pages back to
// the system (MADV_REMOVE) apart from the first, which holds the block header, unless
// the block is small enough to stay warm and the arena's warm budget has room: such a
// block goes on its class's warm list with its pages, and allocation takes warm blocks
// first. The budget is one counter, changed before a push and after a pop; a process
// killed in between leaves it too high, which only makes later caching more sparing.
#include <mp/detail/heap.hpp>

#include <sys/random.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <bit>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mp/errors.hpp>
#include <mutex>
#include <new>
#include <stdexcept>
#include <string>
#include <system_error>

#include "heap_arena.hpp"
#include "identity.hpp"
#include "posix/shm.hpp"

namespace mp::detail {
namespace {

constexpr std::uint64_t kArenaMagic = 0x3170616568706d00;  // "\0mpheap1"
constexpr std::uint64_t kHeaderSize = 4096;
constexpr unsigned kMinClass = 6;   // 64-byte blocks
constexpr unsigned kMaxClass = 40;  // 1 TiB blocks
constexpr unsigned kClassCount = kMaxClass - kMinClass + 1;
constexpr std::uint64_t kBlockHeaderSize = 16;
constexpr std::uint64_t kDiscardFrom = Arena::kDiscardFrom;
constexpr std::uint64_t kDefaultHeapSize = std::uint64_t{64} << 30;

constexpr std::uint32_t kBlockUsed = 0x55534544;  // "USED"
constexpr std::uint32_t kBlockFree = 0x46524545;  // "FREE"

constexpr unsigned kOffsetBits = 34;  // offset / 64 < 2^34 for arenas up to 1 TiB
constexpr std::uint64_t kOffsetMask = (std::uint64_t{1} << kOffsetBits) - 1;

struct ArenaHeader {
  std::uint64_t magic;
  std::uint64_t id;
  std::uint64_t size;
  std::atomic<std::uint64_t> bump;
  std::atomic<std::uint64_t> serials;
  std::atomic<std::uint64_t> free_heads[kClassCount];
  std::atomic<std::uint64_t> roots[Arena::kRootCount];
  std::atomic<std::uint64_t> warm_heads[kClassCount];  // free blocks that kept their pages
  std::atomic<std::uint64_t> warm_bytes;
};
static_assert(sizeof(ArenaHeader) <= kHeaderSize);

struct BlockHeader {
  std::atomic<std::uint32_t> state;
  std::uint32_t size_class;
  std::atomic<std::uint64_t> next;  // block offset of the next free block (on a free list)
};
static_assert(sizeof(BlockHeader) == kBlockHeaderSize);

ArenaHeader& header_of(std::byte* base) { return *reinterpret_cast<ArenaHeader*>(base); }
BlockHeader& block_at(std::byte* base, std::uint64_t block) {
  return *reinterpret_cast<BlockHeader*>(base + block);
}

std::uint64_t tagged(std::uint64_t block, std::uint64_t old_head) {
  const std::uint64_t tag = (old_head >> kOffsetBits) + 1;
  return (tag << kOffsetBits) | (block / 64);
}
std::uint64_t head_block(std::uint64_t head) { return (head & kOffsetMask) * 64; }

std::uint64_t random_id() {
  std::uint64_t id = 0;
  while (id == 0) {
    if (::getrandom(&id, sizeof id, 0) != static_cast<ssize_t>(sizeof id)) {
      if (errno == EINTR) continue;
      throw std::system_error(errno, std::system_category(), "mp: getrandom");
    }
  }
  return id;
}

// Whether a freed block of this size may keep its pages (on its class's warm list).
bool warmable(std::uint64_t block_size) {
  return block_size >= kDiscardFrom && block_size <= Arena::kWarmMaxBlock;
}

std::uint64_t round_up(std::uint64_t value, std::uint64_t alignment) {
  return (value + alignment - 1) / alignment * alignment;
}

}  // namespace

// ---- Arena ---------------------------------------------------------------------------

Arena Arena::create(std::uint64_t size) {
  size = round_up(size, posix::page_size());
  if (size < kMinSize || size > kMaxSize)
    throw std::invalid_argument("mp: shared heap size " + std::to_string(size) + " is outside [" +
                                std::to_string(kMinSize) + ", " + std::to_string(kMaxSize) +
                                "] bytes");
  posix::unique_fd fd;
  if (auto ec = posix::memfd_create_sized("mp-heap", size, fd))
    throw std::system_error(
        ec, "mp: creating the shared heap (memfd of " + std::to_string(size) + " bytes)");
  void* address = nullptr;
  if (auto ec = posix::map_shared(fd.get(), size, address))
    throw std::system_error(ec, "mp: mapping the shared heap (" + std::to_string(size) +
                                    " bytes; set MP_HEAP_SIZE to a smaller size in bytes)");
  auto* base = static_cast<std::byte*>(address);
  // A fresh memfd reads as zeros: the free lists start empty.
  auto& header = header_of(base);
  header.magic = kArenaMagic;
  header.id = random_id();
  header.size = size;
  header.bump.store(kHeaderSize, std::memory_order_release);
  return Arena(std::move(fd), base, size);
}

Arena Arena::attach(posix::unique_fd fd) {
  std::uint64_t size = 0;
  if (auto ec = posix::file_size(fd.get(), size))
    throw std::system_error(ec, "mp: inspecting the inherited shared heap");
  if (size < kMinSize || size > kMaxSize)
    throw std::invalid_argument("mp: the inherited fd does not hold a shared heap arena");
  void* address = nullptr;
  if (auto ec = posix::map_shared(fd.get(), size, address))
    throw std::system_error(ec, "mp: mapping the inherited shared heap");
  auto* base = static_cast<std::byte*>(address);
  const auto& header = header_of(base);
  if (header.magic != kArenaMagic || header.size != size) {
    posix::unmap(address, size);
    throw std::invalid_argument("mp: the inherited fd does not hold a shared heap arena");
  }
  return Arena(std::move(fd), base, size);
}

Arena::Arena(Arena&& other) noexcept
    : fd_(std::move(other.fd_)),
      base_(std::exchange(other.base_, nullptr)),
      size_(std::exchange(other.size_, 0)) {}

Arena& Arena::operator=(Arena&& other) noexcept {
  if (this != &other) {
    if (base_) posix::unmap(base_, size_);
    fd_ = std::move(other.fd_);
    base_ = std::exchange(other.base_, nullptr);
    size_ = std::exchange(other.size_, 0);
  }
  return *this;
}

Arena::~Arena() {
  if (base_) posix::unmap(base_, size_);
}

std::atomic<std::uint64_t>& arena_root(const std::byte* base, unsigned index) noexcept {
  return header_of(const_cast<std::byte*>(base)).roots[index];
}

std::atomic<std::uint64_t>& Arena::root(unsigned index) const noexcept {
  return arena_root(base_, index);
}

std::uint64_t Arena::id() const noexcept { return header_of(base_).id; }

std::uint64_t Arena::next_serial() noexcept {
  return header_of(base_).serials.fetch_add(1, std::memory_order_relaxed) + 1;
}

std::uint64_t Arena::bump_used() const noexcept {
  return header_of(base_).bump.load(std::memory_order_relaxed);
}

std::uint64_t Arena::allocate(std::size_t size) {
  const std::uint64_t wanted = std::uint64_t{size} + kBlockHeaderSize;
  if (wanted > kMaxSize || wanted < size) throw HeapExhausted(size, size_);
  const unsigned size_class =
      std::max(kMinClass, static_cast<unsigned>(std::bit_width(wanted - 1)));
  const std::uint64_t block_size = std::uint64_t{1} << size_class;
  auto& header = header_of(base_);

  // A free block of this class, if any: a warm one first.
  std::uint64_t block = 0;
  if (warmable(block_size)) {
    block = pop(header.warm_heads[size_class - kMinClass]);
    if (block != 0) header.warm_bytes.fetch_sub(block_size, std::memory_order_relaxed);
  }
  if (block == 0) block = pop(header.free_heads[size_class - kMinClass]);

  if (block == 0) {  // fresh space from the bump pointer
    const std::uint64_t alignment = std::min<std::uint64_t>(block_size, 4096);
    std::uint64_t bump = header.bump.load(std::memory_order_relaxed);
    for (;;) {
      block = round_up(bump, alignment);
      if (block + block_size > size_ || block + block_size < block)
        throw HeapExhausted(size, size_);
      if (header.bump.compare_exchange_weak(bump, block + block_size, std::memory_order_relaxed))
        break;
    }
  }
  auto& block_header = block_at(base_, block);
  block_header.size_class = size_class;
  block_header.state.store(kBlockUsed, std::memory_order_release);
  return block + kBlockHeaderSize;
}

bool Arena::is_allocated(std::uint64_t offset) const noexcept {
  if (offset < kHeaderSize + kBlockHeaderSize || offset % 16 != 0) return false;
  const std::uint64_t block = offset - kBlockHeaderSize;
  if (block >= header_of(base_).bump.load(std::memory_order_acquire)) return false;
  const auto& block_header = block_at(base_, block);
  return block_header.state.load(std::memory_order_acquire) == kBlockUsed &&
         block_header.size_class >= kMinClass && block_header.size_class <= kMaxClass;
}

void Arena::free(std::uint64_t offset) noexcept {
  if (offset < kHeaderSize + kBlockHeaderSize) return;
  const std::uint64_t block = offset - kBlockHeaderSize;
  auto& block_header = block_at(base_, block);
  std::uint32_t expected = kBlockUsed;
  if (!block_header.state.compare_exchange_strong(expected, kBlockFree,
                                                  std::memory_order_acq_rel)) {
    std::fprintf(stderr, "mp: shared heap: block at offset %llu freed twice (ignored)\n",
                 static_cast<unsigned long long>(offset));
    return;
  }
  const unsigned size_class = block_header.size_class;
  const std::uint64_t block_size = std::uint64_t{1} << size_class;
  auto& header = header_of(base_);
  if (warmable(block_size)) {
    if (header.warm_bytes.fetch_add(block_size, std::memory_order_relaxed) + block_size <=
        Arena::kWarmBudget) {
      push(header.warm_heads[size_class - kMinClass], block);
      return;
    }
    header.warm_bytes.fetch_sub(block_size, std::memory_order_relaxed);
  }
  if (block_size >= kDiscardFrom)
    (void)posix::discard_pages(base_ + block + 4096, block_size - 4096);
  push(header.free_heads[size_class - kMinClass], block);
}

// Treiber stack operations on a free list's head (see the top of this file).
std::uint64_t Arena::pop(std::atomic<std::uint64_t>& head) noexcept {
  std::uint64_t old_head = head.load(std::memory_order_acquire);
  for (;;) {
    const std::uint64_t block = head_block(old_head);
    if (block == 0) return 0;
    // If another process pops this block first, `next` may be stale; the tag makes the
    // CAS below fail then. The header is always mapped, so the read is harmless.
    const std::uint64_t next = block_at(base_, block).next.load(std::memory_order_relaxed);
    if (head.compare_exchange_weak(old_head, tagged(next, old_head), std::memory_order_acquire,
                                   std::memory_order_acquire))
      return block;
  }
}

void Arena::push(std::atomic<std::uint64_t>& head, std::uint64_t block) noexcept {
  auto& block_header = block_at(base_, block);
  std::uint64_t old_head = head.load(std::memory_order_relaxed);
  do {
    block_header.next.store(head_block(old_head), std::memory_order_relaxed);
  } while (!head.compare_exchange_weak(old_head, tagged(block, old_head), std::memory_order_release,
                                       std::memory_order_relaxed));
}

// ---- The process's arenas ------------------------------------------------------------

namespace {

constexpr int kMaxArenas = 16;

// Leaked on purpose: handles destroyed during static destruction still need it.
struct ArenaTable {
  std::mutex mutex;  // only for registering; lookups read `count` and `ids`
  std::atomic<int> count{0};
  std::atomic<std::uint64_t> ids[kMaxArenas];
  Arena* arenas[kMaxArenas] = {};
  std::atomic<Arena*> main{nullptr};
};

ArenaTable& table() {
  static ArenaTable* t = new ArenaTable;
  return *t;
}

// A forked child may inherit the mutex locked by another thread of its parent.
[[maybe_unused]] const int table_atfork =
    ::pthread_atfork(nullptr, nullptr, [] { new (&table().mutex) std::mutex; });

// Registers `arena` (the caller holds the mutex).
Arena* register_arena(Arena arena) {
  auto& t = table();
  const int index = t.count.load(std::memory_order_relaxed);
  if (index == kMaxArenas) throw std::length_error("mp: too many shared heap arenas");
  auto* owned = new Arena(std::move(arena));
  t.arenas[index] = owned;
  t.ids[index].store(owned->id(), std::memory_order_relaxed);
  t.count.store(index + 1, std::memory_order_release);
  return owned;
}

Arena* find_arena(std::uint64_t id) noexcept {
  auto& t = table();
  if (Arena* main = t.main.load(std::memory_order_acquire); main && main->id() == id) return main;
  const int count = t.count.load(std::memory_order_acquire);
  for (int i = 0; i < count; ++i)
    if (t.ids[i].load(std::memory_order_relaxed) == id) return t.arenas[i];
  return nullptr;
}

std::uint64_t configured_heap_size() {
  const char* text = std::getenv("MP_HEAP_SIZE");
  if (!text || !*text) return kDefaultHeapSize;
  char* end = nullptr;
  errno = 0;
  const unsigned long long value = std::strtoull(text, &end, 10);
  if (errno != 0 || end == text || *end != '\0' || text[0] == '-')
    throw std::invalid_argument(std::string("mp: MP_HEAP_SIZE=") + text +
                                " is not a size in bytes");
  return value;
}

}  // namespace

Arena& heap_main_arena() {
  auto& t = table();
  if (Arena* main = t.main.load(std::memory_order_acquire)) return *main;
  std::lock_guard lock(t.mutex);
  if (Arena* main = t.main.load(std::memory_order_acquire)) return *main;
  Arena* main = register_arena(Arena::create(configured_heap_size()));
  t.main.store(main, std::memory_order_release);
  return *main;
}

std::vector<std::pair<std::byte*, std::uint64_t>> heap_mappings() {
  auto& t = table();
  std::vector<std::pair<std::byte*, std::uint64_t>> mappings;
  const int count = t.count.load(std::memory_order_acquire);
  for (int i = 0; i < count; ++i) mappings.emplace_back(t.arenas[i]->base(), t.arenas[i]->size());
  return mappings;
}

void heap_ensure() { (void)heap_main_arena(); }

int heap_main_fd() { return heap_main_arena().fd(); }

void heap_attach_inherited(posix::unique_fd fd) {
  Arena arena = Arena::attach(std::move(fd));
  auto& t = table();
  std::lock_guard lock(t.mutex);
  Arena* main = find_arena(arena.id());
  if (!main) main = register_arena(std::move(arena));
  t.main.store(main, std::memory_order_release);
}

shared_ref heap_allocate(std::size_t size) {
  Arena& arena = heap_main_arena();
  return {arena.id(), arena.allocate(size)};
}

void heap_free(shared_ref ref) noexcept {
  if (Arena* arena = find_arena(ref.arena)) arena->free(ref.offset);
}

void* heap_address(shared_ref ref) {
  Arena* arena = find_arena(ref.arena);
  if (!arena)
    throw UnpicklingError(
        "mp: a shared object's handle names a shared heap arena this process does not map "
        "(handles only work within the process tree that created them)");
  if (ref.offset >= arena->size())
    throw UnpicklingError("mp: a shared object's handle points outside its arena");
  return arena->base() + ref.offset;
}

// ---- shared_object -------------------------------------------------------------------

namespace {

// Precedes every shared object's state.
struct ObjectHeader {
  std::atomic<std::uint32_t> refs;
  std::atomic<std::uint32_t> kind;  // 0 once freed
  std::atomic<std::uint64_t> serial;
};
static_assert(sizeof(ObjectHeader) == 16);

constexpr std::uint32_t kMaxKind = 32;
std::atomic<shared_finalizer> finalizers[kMaxKind];

// Frees the object `ref` whose last reference just went (its header says which kind).
void destroy_object(shared_ref ref, void* state, ObjectHeader& header) noexcept {
  const std::uint32_t kind = header.kind.exchange(0, std::memory_order_acq_rel);
  if (kind < kMaxKind)
    if (shared_finalizer finalizer = finalizers[kind].load(std::memory_order_acquire))
      finalizer(ref, state);
  heap_free(ref);
}

ObjectHeader& object_header(void* state) {
  return *reinterpret_cast<ObjectHeader*>(static_cast<std::byte*>(state) - sizeof(ObjectHeader));
}

}  // namespace

shared_object::shared_object(shared_kind kind, std::size_t state_size, std::size_t zeroed_size) {
  const shared_ref ref = heap_allocate(sizeof(ObjectHeader) + state_size);
  auto* address = static_cast<std::byte*>(heap_address(ref));
  std::memset(address + sizeof(ObjectHeader), 0, std::min(zeroed_size, state_size));
  auto* header = new (address) ObjectHeader;
  header->serial.store(find_arena(ref.arena)->next_serial(), std::memory_order_relaxed);
  header->kind.store(static_cast<std::uint32_t>(kind), std::memory_order_relaxed);
  header->refs.store(1, std::memory_order_release);
  state_ = address + sizeof(ObjectHeader);
  ref_ = ref;
  ref_pid_ = current_pid();
}

shared_object::shared_object(const shared_object& other) noexcept
    : state_(other.state_), ref_(other.ref_), ref_pid_(current_pid()) {
  if (state_) object_header(state_).refs.fetch_add(1, std::memory_order_relaxed);
}

shared_object& shared_object::operator=(const shared_object& other) noexcept {
  if (this != &other) {
    if (other.state_) object_header(other.state_).refs.fetch_add(1, std::memory_order_relaxed);
    drop();
    state_ = other.state_;
    ref_ = other.ref_;
    ref_pid_ = current_pid();
  }
  return *this;
}

shared_object::~shared_object() { drop(); }

void shared_object::drop() noexcept {
  // Byte copies a forked child inherited never took a reference of their own.
  if (!state_ || ref_pid_ != current_pid()) return;
  auto& header = object_header(state_);
  if (header.refs.fetch_sub(1, std::memory_order_acq_rel) == 1)
    destroy_object(ref_, state_, header);
  state_ = nullptr;
}

void set_shared_finalizer(shared_kind kind, shared_finalizer finalizer) noexcept {
  const auto index = static_cast<std::uint32_t>(kind);
  if (index < kMaxKind) finalizers[index].store(finalizer, std::memory_order_release);
}

std::uint64_t shared_object::serial() const noexcept {
  return state_ ? object_header(state_).serial.load(std::memory_order_relaxed) : 0;
}

void shared_object::rebind(shared_ref ref, shared_kind kind, std::uint64_t serial) {
  Arena* arena = find_arena(ref.arena);
  if (!arena) (void)heap_address(ref);  // throws the explanation
  const std::string gone =
      "mp: the shared object a handle refers to no longer exists (the "
      "process that pickled it must keep it alive until it is loaded)";
  if (!arena->is_allocated(ref.offset)) throw UnpicklingError(gone);
  auto* address = static_cast<std::byte*>(heap_address(ref));
  auto& header = *reinterpret_cast<ObjectHeader*>(address);
  if (header.kind.load(std::memory_order_acquire) != static_cast<std::uint32_t>(kind))
    throw UnpicklingError(gone);
  std::uint32_t refs = header.refs.load(std::memory_order_relaxed);
  do {
    if (refs == 0) throw UnpicklingError(gone);
  } while (!header.refs.compare_exchange_weak(refs, refs + 1, std::memory_order_acq_rel));
  // Counted now, the object cannot go away; it must be the one that was pickled.
  if (header.serial.load(std::memory_order_relaxed) != serial ||
      header.kind.load(std::memory_order_relaxed) != static_cast<std::uint32_t>(kind)) {
    if (header.refs.fetch_sub(1, std::memory_order_acq_rel) == 1)
      destroy_object(ref, address + sizeof(ObjectHeader), header);
    throw UnpicklingError(gone);
  }
  drop();
  state_ = address + sizeof(ObjectHeader);
  ref_ = ref;
  ref_pid_ = current_pid();
}

}  // namespace mp::detail
