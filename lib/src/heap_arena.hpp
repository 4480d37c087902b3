// Private: one arena of the shared heap (lib/src/heap.cpp explains the allocator).
// The process-wide heap is one main Arena; tests build small ones of their own.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "posix/fd.hpp"

namespace mp::detail {

class Arena {
 public:
  // The largest arena (the allocator's tagged offsets have 40 bits).
  static constexpr std::uint64_t kMaxSize = std::uint64_t{1} << 40;
  // The smallest: the header plus a few blocks.
  static constexpr std::uint64_t kMinSize = std::uint64_t{1} << 16;

  // A new arena in a fresh memfd of `size` bytes (rounded up to whole pages).
  // Throws std::invalid_argument for a size outside [kMinSize, kMaxSize],
  // std::system_error if the OS refuses.
  static Arena create(std::uint64_t size);
  // Maps an arena another process created. Throws std::system_error, or
  // std::invalid_argument if the file does not hold an arena.
  static Arena attach(posix::unique_fd fd);

  Arena(Arena&& other) noexcept;
  Arena& operator=(Arena&& other) noexcept;
  Arena(const Arena&) = delete;
  Arena& operator=(const Arena&) = delete;
  ~Arena();

  // Freed blocks are merged with free neighbours, and free blocks of kDiscardFrom bytes
  // or more give their pages back to the system (all but the first), except that freed
  // blocks up to kWarmMaxBlock bytes stay as they are, resident ("warm"), while the warm
  // blocks of the arena total at most kWarmBudget bytes (for blocks under kDiscardFrom:
  // while the warm blocks of their size class total at most kWarmSmallBytes): reusing a
  // warm block costs one compare-and-swap and no page faults, which dominate moving a
  // chunk of a few MiB through fresh pages.
  static constexpr std::uint64_t kDiscardFrom = std::uint64_t{1} << 16;
  static constexpr std::uint64_t kWarmMaxBlock = std::uint64_t{4} << 20;
  static constexpr std::uint64_t kWarmBudget = std::uint64_t{32} << 20;
  static constexpr std::uint64_t kWarmSmallBytes = std::uint64_t{1} << 20;

  // Offset of a block of at least `size` bytes, 16-byte aligned (64 for blocks of 64
  // bytes or more). Lock-free when a warm block fits, else under the arena's robust lock.
  // Throws mp::HeapExhausted. `warm`, if given, is set to whether the block came off a
  // warm list (its pages resident) rather than out of the buddy system.
  std::uint64_t allocate(std::size_t size, bool* warm = nullptr);
  // Gives back a block allocate() returned. Lock-free while the block stays warm, else
  // under the arena's robust lock; a double free is reported on stderr and ignored.
  void free(std::uint64_t offset) noexcept;
  // Gives every warm block to the buddy lists (merging them, giving their pages back);
  // returns how many there were. allocate() does this before it gives up.
  std::uint64_t release_warm() noexcept;
  // What is wrong with the arena's free lists, or "" if nothing: for tests, at a time
  // when no other process allocates or frees (the warm lists are read without a lock).
  // Rolls back an operation a dead process left half done, as allocate() would.
  std::string check();
  // A number no earlier call returned for this arena (in any process).
  std::uint64_t next_serial() noexcept;
  // Whether `offset` is an allocated block of this arena.
  bool is_allocated(std::uint64_t offset) const noexcept;

  // Words in the arena's header page reserved for other parts of mp, zero in a fresh
  // arena: kRootCount of them, found at the same place by every process (and by
  // arena_root() in a process that maps the file on its own).
  static constexpr unsigned kRootCount = 4;
  std::atomic<std::uint64_t>& root(unsigned index) const noexcept;

  std::byte* base() const noexcept { return base_; }
  std::uint64_t id() const noexcept;
  std::uint64_t size() const noexcept { return size_; }
  int fd() const noexcept { return fd_.get(); }
  // The end of the highest block handed out so far (the high-water mark).
  std::uint64_t bump_used() const noexcept;

 private:
  Arena(posix::unique_fd fd, std::byte* base, std::uint64_t size) noexcept
      : fd_(std::move(fd)), base_(base), size_(size) {}
  std::uint64_t pop(std::atomic<std::uint64_t>& head) noexcept;
  void push(std::atomic<std::uint64_t>& head, std::uint64_t block) noexcept;
  void give_to_buddies(std::uint64_t block, unsigned size_class, std::uint32_t state) noexcept;

  posix::unique_fd fd_;
  std::byte* base_ = nullptr;
  std::uint64_t size_ = 0;
};

// Root word `index` (< Arena::kRootCount) of the arena mapped at `base`.
std::atomic<std::uint64_t>& arena_root(const std::byte* base, unsigned index) noexcept;

// Where this process maps arenas (each arena's base and size).
std::vector<std::pair<std::byte*, std::uint64_t>> heap_mappings();

// The fd of this process's main arena (for spawned children), creating it if needed.
int heap_main_fd();

// Makes the arena in `fd` (sent by the parent) this process's main arena.
// Throws std::system_error or std::invalid_argument.
void heap_attach_inherited(posix::unique_fd fd);

// The main arena (created if needed).
Arena& heap_main_arena();

}  // namespace mp::detail
