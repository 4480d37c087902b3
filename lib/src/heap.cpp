// The shared heap: Python's multiprocessing/heap.py, with a robust lock and an undo
// journal in place of its threading lock.
//
// An arena is a memfd mapped MAP_SHARED | MAP_NORESERVE. Its first kHeaderSize bytes hold
// the header: a magic, the arena's random id, its size, the high-water mark, the lists
// described below, the allocator's lock and its undo journal. The rest is managed as a
// binary buddy system: blocks are powers of two from 64 bytes to 1 TiB, each aligned to
// its size, each starting with a 16-byte block header (a tag word: state and size class;
// a list link) that the caller's bytes follow. A free block's third word (the first of
// the caller's bytes) links it backwards in its list.
//
// Freeing a block merges it with its buddy (the other half of the block of twice the
// size) while that is free, so freed memory of any size class serves any other, as
// Python's heap merges neighbouring free blocks. A free block of 64 KiB or more keeps
// only its first page (its header) resident: freeing such a block, or merging blocks
// into one, gives the other pages back to the system (MADV_REMOVE). The arena starts as
// the largest aligned blocks that fit after the header; allocation splits the smallest
// free block that fits.
//
// In front of the buddy system sit the warm lists, one lock-free stack per size class:
// a freed block goes there (keeping its pages) while its class's budget allows: at most
// kWarmSmallBytes of blocks per class under 64 KiB, and kWarmBudget bytes for all warm
// blocks from 64 KiB to kWarmMaxBlock. A warm block keeps the free blocks around it
// from merging (and those under 64 KiB resident) until release_warm(). Allocation takes a warm
// block first, so steady churn costs one compare-and-swap and moving a chunk of a few MiB does not
// fault in fresh pages. When the buddy system has no block big enough, the warm lists are emptied
// into it (merging what they held) before the allocation gives up.
//
// Crash safety: a process killed at any instruction never leaves the heap inconsistent.
//   - Warm lists are Treiber stacks: the head is one 64-bit word, the block offset / 64
//     in the low 34 bits and an ABA tag (bumped on every change) in the high 30 bits. A
//     block's state changes by compare-and-swap (USED to WARM or GOING on free, which
//     also catches double frees). A process killed between such a step and the next
//     leaks that one block (a WARM or GOING block that no list holds: the buddy system
//     never merges with it). The budgets are counters changed before a push and after a
//     pop; one left too high by a killed process only makes later caching sparser.
//   - The buddy lists change only under the arena's lock, a robust lock (mp::Lock's):
//     a process that dies holding it is taken over by the next one that asks. Each
//     change to a word that was reachable before the operation is first logged (offset,
//     old value) in the journal; committing empties the journal. Whoever takes the lock
//     over from a dead holder writes the logged values back in reverse order, so the
//     dead operation never happened (the block it was freeing stays GOING: leaked; the
//     block it was allocating goes back to its list). Pages are given back only after
//     the commit, so a rollback never restores a header whose page was discarded.
#include <mp/detail/heap.hpp>

#include <sys/mman.h>
#include <sys/random.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <bit>
#include <cerrno>
#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mp/detail/lock_state.hpp>
#include <mp/errors.hpp>
#include <mutex>
#include <new>
#include <optional>
#include <stdexcept>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

#include "heap_arena.hpp"
#include "identity.hpp"
#include "lock_core.hpp"
#include "posix/proc.hpp"
#include "posix/shm.hpp"

namespace mp::detail {
namespace {

constexpr std::uint64_t kArenaMagic = 0x3270616568706d00;  // "\0mpheap2"
constexpr std::uint64_t kHeaderSize = 16384;
constexpr unsigned kMinClass = 6;   // 64-byte blocks
constexpr unsigned kMaxClass = 40;  // 1 TiB blocks
constexpr unsigned kClassCount = kMaxClass - kMinClass + 1;
constexpr std::uint64_t kBlockHeaderSize = 16;
constexpr std::uint64_t kDiscardFrom = Arena::kDiscardFrom;
constexpr unsigned kDiscardClass = std::bit_width(kDiscardFrom) - 1;
constexpr std::uint64_t kPage = 4096;  // the first page of a free block holds its header
constexpr std::uint64_t kDefaultHeapSize = std::uint64_t{64} << 30;  // at most
// An operation logs at most 2 words per size class it splits or merges across, and a
// few more: 4 per class always suffices.
constexpr std::size_t kJournalCapacity = 4 * kClassCount;

constexpr std::uint32_t kBlockUsed = 0x55534544;   // "USED": the caller's
constexpr std::uint32_t kBlockFree = 0x46524545;   // "FREE": on a buddy list
constexpr std::uint32_t kBlockWarm = 0x5741524d;   // "WARM": on a warm list
constexpr std::uint32_t kBlockGoing = 0x474f4e47;  // "GONG": being given to the buddy lists

constexpr unsigned kOffsetBits = 34;  // offset / 64 < 2^34 for arenas up to 1 TiB
constexpr std::uint64_t kOffsetMask = (std::uint64_t{1} << kOffsetBits) - 1;

struct JournalEntry {
  std::uint64_t offset;
  std::uint64_t old_value;
};

struct ArenaHeader {
  std::uint64_t magic;
  std::uint64_t id;
  std::uint64_t size;
  std::atomic<std::uint64_t> high_water;  // end of the highest block ever handed out
  std::atomic<std::uint64_t> serials;
  std::atomic<std::uint64_t> free_heads[kClassCount];  // buddy lists (offsets), locked
  std::atomic<std::uint64_t> roots[Arena::kRootCount];
  std::atomic<std::uint64_t> warm_heads[kClassCount];   // tagged Treiber stack heads
  std::atomic<std::uint64_t> warm_bytes;                // of the warm blocks of 64 KiB or more
  std::atomic<std::uint64_t> warm_counts[kClassCount];  // warm blocks under 64 KiB, per class
  LockState lock;
  std::atomic<std::uint64_t> journal_count;
  JournalEntry journal[kJournalCapacity];
};
static_assert(sizeof(ArenaHeader) <= kHeaderSize);

// A block's words: its tag and its list link; on a buddy list also the backward link.
constexpr std::uint64_t kTagWord = 0;
constexpr std::uint64_t kNextWord = 8;
constexpr std::uint64_t kPrevWord = 16;

constexpr std::uint64_t tag_of(std::uint32_t state, unsigned size_class) {
  return state | (std::uint64_t{size_class} << 32);
}
constexpr std::uint32_t state_of(std::uint64_t tag) { return static_cast<std::uint32_t>(tag); }
constexpr unsigned class_of(std::uint64_t tag) { return static_cast<unsigned>(tag >> 32); }

ArenaHeader& header_of(std::byte* base) { return *reinterpret_cast<ArenaHeader*>(base); }
std::atomic<std::uint64_t>& word_at(std::byte* base, std::uint64_t offset) {
  return *std::launder(reinterpret_cast<std::atomic<std::uint64_t>*>(base + offset));
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

// The budget a freed block of `size_class` may keep its pages under, if any: its
// counter, what one block adds to it, and the counter's limit.
struct WarmBudget {
  std::atomic<std::uint64_t>* counter = nullptr;
  std::uint64_t amount = 0;
  std::uint64_t limit = 0;

  // Counts one more warm block if the budget allows.
  bool take() const noexcept {
    if (counter->fetch_add(amount, std::memory_order_relaxed) + amount <= limit) return true;
    counter->fetch_sub(amount, std::memory_order_relaxed);
    return false;
  }
  void give_back() const noexcept { counter->fetch_sub(amount, std::memory_order_relaxed); }
};

WarmBudget warm_budget(ArenaHeader& header, unsigned size_class) {
  const std::uint64_t block_size = std::uint64_t{1} << size_class;
  // Small classes have a budget each, so that one class cannot crowd out the others.
  if (block_size < kDiscardFrom)
    return {&header.warm_counts[size_class - kMinClass], 1, Arena::kWarmSmallBytes / block_size};
  if (block_size <= Arena::kWarmMaxBlock)
    return {&header.warm_bytes, block_size, Arena::kWarmBudget};
  return {};
}

std::uint64_t round_up(std::uint64_t value, std::uint64_t alignment) {
  return (value + alignment - 1) / alignment * alignment;
}

// Gives the pages of a block of `size_class` but the first back to the system.
void discard_body(std::byte* base, std::uint64_t block, unsigned size_class) {
  if (size_class >= kDiscardClass)
    (void)posix::discard_pages(base + block + kPage, (std::uint64_t{1} << size_class) - kPage);
}

// One change to the buddy lists: holds the arena's lock, logs what it changes, and
// gives pages back once committed (see the top of this file).
class Transaction {
 public:
  Transaction(std::byte* base, std::uint64_t size)
      : base_(base), size_(size), header_(header_of(base)) {
    (void)robust_lock_acquire(header_.lock, true, std::nullopt);
    if (header_.lock.recovered.load(std::memory_order_relaxed) != 0) roll_back();
  }
  ~Transaction() {
    if (!committed_) roll_back();
    (void)robust_lock_release(header_.lock);
  }
  Transaction(const Transaction&) = delete;
  Transaction& operator=(const Transaction&) = delete;

  void commit() noexcept {
    std::atomic_signal_fence(std::memory_order_seq_cst);
    header_.journal_count.store(0, std::memory_order_release);
    committed_ = true;
    // Pages of free blocks other than their first: no rollback can bring back what
    // they held any more.
    for (std::size_t i = 0; i < discard_count_; ++i)
      (void)posix::discard_pages(base_ + discards_[i].offset, discards_[i].old_value);
  }

  // A block of `size_class` taken off the buddy lists (now USED), or 0 if none is free.
  std::uint64_t allocate(unsigned size_class) noexcept {
    unsigned from = size_class;
    while (from <= kMaxClass && head(from) == 0) ++from;
    if (from > kMaxClass) return 0;
    const std::uint64_t block = head(from);
    unlink(block, from);
    while (from > size_class) {  // split: the upper halves go on their lists
      --from;
      push(block + (std::uint64_t{1} << from), from, /*fresh=*/true);
    }
    write(block + kTagWord, tag_of(kBlockUsed, size_class));
    const std::uint64_t end = block + (std::uint64_t{1} << size_class);
    if (end > header_.high_water.load(std::memory_order_relaxed))
      write(offsetof(ArenaHeader, high_water), end);
    return block;
  }

  // Puts the GOING block `block` of `size_class` on the buddy lists, merged with its
  // free buddies.
  void free(std::uint64_t block, unsigned size_class) noexcept {
    while (size_class < kMaxClass) {
      const std::uint64_t block_size = std::uint64_t{1} << size_class;
      const std::uint64_t buddy = block ^ block_size;
      // The header's block and what lies past the arena's end are never free.
      if (buddy == 0 || buddy + block_size > size_) break;
      if (word(buddy + kTagWord).load(std::memory_order_relaxed) != tag_of(kBlockFree, size_class))
        break;
      unlink(buddy, size_class);
      block = std::min(block, buddy);
      ++size_class;
      // Free blocks of 64 KiB or more keep only their first page.
      if (size_class == kDiscardClass)
        discard_later(block + kPage, kDiscardFrom - kPage);
      else if (size_class > kDiscardClass)
        discard_later(block + block_size, kPage);
    }
    push(block, size_class, /*fresh=*/false);
  }

  // What is wrong with the buddy lists, or "" (see Arena::check()).
  std::string check() const {
    std::vector<std::pair<std::uint64_t, std::uint64_t>> ranges;  // of the free blocks
    std::string problems;
    const auto problem = [&](unsigned size_class, std::uint64_t block, const char* what) {
      problems += "class " + std::to_string(size_class) + " block " + std::to_string(block) + ": " +
                  what + "; ";
    };
    for (unsigned size_class = kMinClass; size_class <= kMaxClass && problems.empty();
         ++size_class) {
      const std::uint64_t block_size = std::uint64_t{1} << size_class;
      std::uint64_t prev = 0;
      for (std::uint64_t block = head(size_class); block != 0;
           block = word(block + kNextWord).load(std::memory_order_relaxed)) {
        if (block < kHeaderSize || block % block_size != 0 || block + block_size > size_) {
          problem(size_class, block, "misplaced");
          break;
        }
        if (word(block + kTagWord).load(std::memory_order_relaxed) !=
            tag_of(kBlockFree, size_class))
          problem(size_class, block, "not marked free");
        if (word(block + kPrevWord).load(std::memory_order_relaxed) != prev)
          problem(size_class, block, "wrong backward link");
        if (ranges.size() > size_ / 64) {
          problem(size_class, block, "list loops");
          break;
        }
        ranges.emplace_back(block, block + block_size);
        prev = block;
      }
    }
    std::sort(ranges.begin(), ranges.end());
    for (std::size_t i = 1; i < ranges.size() && problems.empty(); ++i)
      if (ranges[i].first < ranges[i - 1].second) problem(0, ranges[i].first, "overlaps");
    return problems;
  }

 private:
  std::atomic<std::uint64_t>& word(std::uint64_t offset) const { return word_at(base_, offset); }
  static std::uint64_t head_offset(unsigned size_class) {
    return offsetof(ArenaHeader, free_heads) + (size_class - kMinClass) * 8;
  }
  std::uint64_t head(unsigned size_class) const {
    return word(head_offset(size_class)).load(std::memory_order_relaxed);
  }

  // Logs the old value of a word reachable before this operation, then changes it. The
  // entry is complete before it counts, and counts before the word changes: a process
  // killed between any two steps leaves a journal that undoes exactly what happened.
  void write(std::uint64_t offset, std::uint64_t value) noexcept {
    const std::uint64_t count = header_.journal_count.load(std::memory_order_relaxed);
    if (count == kJournalCapacity) {  // a bug: every operation bounds the words it logs
      std::fputs("mp: shared heap: journal overflow\n", stderr);
      std::abort();
    }
    header_.journal[count] = {offset, word(offset).load(std::memory_order_relaxed)};
    std::atomic_signal_fence(std::memory_order_seq_cst);
    header_.journal_count.store(count + 1, std::memory_order_relaxed);
    std::atomic_signal_fence(std::memory_order_seq_cst);
    word(offset).store(value, std::memory_order_relaxed);
  }

  void roll_back() noexcept {
    const std::uint64_t count = header_.journal_count.load(std::memory_order_relaxed);
    for (std::uint64_t i = count; i-- > 0;)
      word(header_.journal[i].offset)
          .store(header_.journal[i].old_value, std::memory_order_relaxed);
    std::atomic_signal_fence(std::memory_order_seq_cst);
    header_.journal_count.store(0, std::memory_order_release);
  }

  // Puts `block` at the head of its class's list. A `fresh` block (the upper half of
  // a block being split) was unreachable: its own words need no logging.
  void push(std::uint64_t block, unsigned size_class, bool fresh) noexcept {
    const std::uint64_t old_head = head(size_class);
    if (fresh) {
      word(block + kNextWord).store(old_head, std::memory_order_relaxed);
      word(block + kPrevWord).store(0, std::memory_order_relaxed);
      word(block + kTagWord).store(tag_of(kBlockFree, size_class), std::memory_order_release);
    } else {
      write(block + kNextWord, old_head);
      write(block + kPrevWord, 0);
      write(block + kTagWord, tag_of(kBlockFree, size_class));
    }
    if (old_head != 0) write(old_head + kPrevWord, block);
    write(head_offset(size_class), block);
  }

  // Takes the FREE `block` off its class's list (its own words stay as they were).
  void unlink(std::uint64_t block, unsigned size_class) noexcept {
    const std::uint64_t next = word(block + kNextWord).load(std::memory_order_relaxed);
    const std::uint64_t prev = word(block + kPrevWord).load(std::memory_order_relaxed);
    write(prev != 0 ? prev + kNextWord : head_offset(size_class), next);
    if (next != 0) write(next + kPrevWord, prev);
  }

  // Ranges are kept as (offset, length) journal entries.
  void discard_later(std::uint64_t offset, std::uint64_t length) noexcept {
    if (discard_count_ < kClassCount) discards_[discard_count_++] = {offset, length};
  }

  std::byte* base_;
  std::uint64_t size_;
  ArenaHeader& header_;
  bool committed_ = false;
  std::size_t discard_count_ = 0;
  JournalEntry discards_[kClassCount];
};

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
  // A fresh memfd reads as zeros: the lists start empty, the lock free.
  auto& header = header_of(base);
  header.magic = kArenaMagic;
  header.id = random_id();
  header.size = size;
  header.high_water.store(kHeaderSize, std::memory_order_relaxed);
  // The space after the header as the largest aligned blocks that fit, low to high.
  for (std::uint64_t block = kHeaderSize; block < size;) {
    unsigned size_class = std::min<unsigned>(kMaxClass, std::countr_zero(block));
    while (block + (std::uint64_t{1} << size_class) > size) --size_class;
    if (size_class < kMinClass) break;
    auto& head = header.free_heads[size_class - kMinClass];
    const std::uint64_t old_head = head.load(std::memory_order_relaxed);
    word_at(base, block + kNextWord).store(old_head, std::memory_order_relaxed);
    word_at(base, block + kPrevWord).store(0, std::memory_order_relaxed);
    word_at(base, block + kTagWord)
        .store(tag_of(kBlockFree, size_class), std::memory_order_relaxed);
    if (old_head != 0) word_at(base, old_head + kPrevWord).store(block, std::memory_order_relaxed);
    head.store(block, std::memory_order_relaxed);
    block += std::uint64_t{1} << size_class;
  }
  std::atomic_thread_fence(std::memory_order_release);
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
  return header_of(base_).high_water.load(std::memory_order_relaxed);
}

std::uint64_t Arena::allocate(std::size_t size, bool* warm) {
  const std::uint64_t wanted = std::uint64_t{size} + kBlockHeaderSize;
  if (wanted > kMaxSize || wanted < size) throw HeapExhausted(size, size_);
  const unsigned size_class =
      std::max(kMinClass, static_cast<unsigned>(std::bit_width(wanted - 1)));
  auto& header = header_of(base_);

  // A warm block of this class, if any.
  if (const WarmBudget budget = warm_budget(header, size_class); budget.counter != nullptr) {
    if (const std::uint64_t block = pop(header.warm_heads[size_class - kMinClass])) {
      budget.give_back();
      word_at(base_, block + kTagWord)
          .store(tag_of(kBlockUsed, size_class), std::memory_order_release);
      if (warm) *warm = true;
      return block + kBlockHeaderSize;
    }
  }
  std::uint64_t block = 0;
  {
    Transaction transaction(base_, size_);
    block = transaction.allocate(size_class);
    transaction.commit();
  }
  if (block == 0 && release_warm() != 0) {  // warm blocks merged may make room
    Transaction transaction(base_, size_);
    block = transaction.allocate(size_class);
    transaction.commit();
  }
  if (block == 0) throw HeapExhausted(size, size_);
  if (warm) *warm = false;
  return block + kBlockHeaderSize;
}

std::uint64_t Arena::release_warm() noexcept {
  auto& header = header_of(base_);
  std::uint64_t released = 0;
  for (unsigned size_class = kMinClass; size_class <= kMaxClass; ++size_class) {
    const WarmBudget budget = warm_budget(header, size_class);
    if (budget.counter == nullptr) continue;
    while (const std::uint64_t block = pop(header.warm_heads[size_class - kMinClass])) {
      budget.give_back();
      give_to_buddies(block, size_class, kBlockWarm);
      ++released;
    }
  }
  return released;
}

void Arena::give_to_buddies(std::uint64_t block, unsigned size_class,
                            std::uint32_t state) noexcept {
  if (state != kBlockGoing)
    word_at(base_, block + kTagWord)
        .store(tag_of(kBlockGoing, size_class), std::memory_order_relaxed);
  discard_body(base_, block, size_class);
  Transaction transaction(base_, size_);
  transaction.free(block, size_class);
  transaction.commit();
}

std::string Arena::check() {
  Transaction transaction(base_, size_);
  std::string problems = transaction.check();
  transaction.commit();
  auto& header = header_of(base_);
  for (unsigned size_class = kMinClass; size_class <= kMaxClass; ++size_class) {
    std::uint64_t count = 0;
    for (std::uint64_t block = head_block(header.warm_heads[size_class - kMinClass].load());
         block != 0; block = word_at(base_, block + kNextWord).load(std::memory_order_relaxed)) {
      if (block < kHeaderSize || block >= size_ || ++count > size_ / 64 ||
          word_at(base_, block + kTagWord).load(std::memory_order_relaxed) !=
              tag_of(kBlockWarm, size_class)) {
        problems += "warm list of class " + std::to_string(size_class) + " is broken; ";
        break;
      }
    }
  }
  return problems;
}

bool Arena::is_allocated(std::uint64_t offset) const noexcept {
  if (offset < kHeaderSize + kBlockHeaderSize || offset % 16 != 0) return false;
  const std::uint64_t block = offset - kBlockHeaderSize;
  if (block >= header_of(base_).high_water.load(std::memory_order_acquire)) return false;
  const std::uint64_t tag = word_at(base_, block + kTagWord).load(std::memory_order_acquire);
  const unsigned size_class = class_of(tag);
  return state_of(tag) == kBlockUsed && size_class >= kMinClass && size_class <= kMaxClass &&
         block % (std::uint64_t{1} << size_class) == 0 &&
         block + (std::uint64_t{1} << size_class) <= size_;
}

void Arena::free(std::uint64_t offset) noexcept {
  if (offset < kHeaderSize + kBlockHeaderSize || offset >= size_ || offset % 16 != 0) return;
  const std::uint64_t block = offset - kBlockHeaderSize;
  auto& tag = word_at(base_, block + kTagWord);
  std::uint64_t expected = tag.load(std::memory_order_relaxed);
  const unsigned size_class = class_of(expected);
  if (state_of(expected) != kBlockUsed || size_class < kMinClass || size_class > kMaxClass) {
    std::fprintf(stderr, "mp: shared heap: block at offset %llu freed twice (ignored)\n",
                 static_cast<unsigned long long>(offset));
    return;
  }
  auto& header = header_of(base_);
  const WarmBudget budget = warm_budget(header, size_class);
  const bool warm = budget.counter != nullptr && budget.take();
  const std::uint32_t next_state = warm ? kBlockWarm : kBlockGoing;
  if (!tag.compare_exchange_strong(expected, tag_of(next_state, size_class),
                                   std::memory_order_acq_rel)) {
    if (warm) budget.give_back();
    std::fprintf(stderr, "mp: shared heap: block at offset %llu freed twice (ignored)\n",
                 static_cast<unsigned long long>(offset));
    return;
  }
  if (warm)
    push(header.warm_heads[size_class - kMinClass], block);
  else
    give_to_buddies(block, size_class, kBlockGoing);
}

// Treiber stack operations on a warm list's head (see the top of this file).
std::uint64_t Arena::pop(std::atomic<std::uint64_t>& head) noexcept {
  std::uint64_t old_head = head.load(std::memory_order_acquire);
  for (;;) {
    const std::uint64_t block = head_block(old_head);
    if (block == 0) return 0;
    // If another process pops this block first, `next` may be stale; the tag makes the
    // CAS below fail then. The arena is always mapped, so the read is harmless.
    const std::uint64_t next = word_at(base_, block + kNextWord).load(std::memory_order_relaxed);
    if (head.compare_exchange_weak(old_head, tagged(next, old_head), std::memory_order_acquire,
                                   std::memory_order_acquire))
      return block;
  }
}

void Arena::push(std::atomic<std::uint64_t>& head, std::uint64_t block) noexcept {
  auto& next = word_at(base_, block + kNextWord);
  std::uint64_t old_head = head.load(std::memory_order_relaxed);
  do {
    next.store(head_block(old_head), std::memory_order_relaxed);
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

// The address space the heap reserves when MP_HEAP_SIZE is not set: 64 GiB, but no
// more than four times the machine's memory and swap (rounded up to a power of two: the
// memfd's pages are shared memory, so the heap can never hold more than memory and swap,
// and the margin leaves room for sparse objects such as a Manager's 1 GiB segment), and
// no more than a quarter of the process's address-space limit (`ulimit -v`), leaving
// the rest to the program. Only the pages touched cost memory either way.
std::uint64_t default_heap_size() {
  std::uint64_t size = kDefaultHeapSize;
  if (const std::uint64_t memory = posix::memory_and_swap_bytes(); memory != 0)
    size = std::min(size, std::bit_ceil(std::min(memory, kDefaultHeapSize)) * 4);
  if (const std::uint64_t limit = posix::address_space_limit(); limit != 0)
    size = std::min(size, std::bit_floor(limit / 4));
  return std::max(size, Arena::kMinSize);
}

std::uint64_t configured_heap_size() {
  const char* text = std::getenv("MP_HEAP_SIZE");
  if (!text || !*text) return default_heap_size();
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
  mappings.reserve(static_cast<std::size_t>(count));
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

namespace {

// Faults in the pages of [data, data + size) for writing (those it covers partly too:
// faulting a page in never changes what it holds), from kPrefaultFrom bytes on; if
// `unless_resident`, not when the last page inside the range is resident already (memory
// being reused: populating pages that are mapped already costs a walk over them for
// nothing; a page the range covers partly may hold an allocator's header). A failure
// (no memory left for the pages) is left to the writes, which meet it as they would have
// without this.
void populate_pages(void* data, std::size_t size, bool unless_resident) noexcept {
  if (size < kPrefaultFrom) return;
  const std::uintptr_t page = posix::page_size();
  const auto begin = reinterpret_cast<std::uintptr_t>(data) & ~(page - 1);
  const auto end = (reinterpret_cast<std::uintptr_t>(data) + size + page - 1) & ~(page - 1);
  if (unless_resident) {
    const auto last_inside = ((reinterpret_cast<std::uintptr_t>(data) + size) & ~(page - 1)) - page;
    unsigned char resident = 0;
    if (::mincore(reinterpret_cast<void*>(last_inside), page, &resident) == 0 && (resident & 1))
      return;
  }
  (void)posix::populate_for_write(reinterpret_cast<void*>(begin), end - begin);
}

}  // namespace

shared_ref heap_allocate_for_write(std::size_t size) {
  Arena& arena = heap_main_arena();
  bool warm = false;
  const shared_ref ref{arena.id(), arena.allocate(size, &warm)};
  if (!warm) populate_pages(arena.base() + ref.offset, size, false);
  return ref;
}

void prefault_for_write(void* data, std::size_t size) noexcept { populate_pages(data, size, true); }

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
