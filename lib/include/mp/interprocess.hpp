// C++ containers in shared memory: Boost.Interprocess's segment manager and containers
// inside an mp::SharedMemory segment, with mp's robust locks as its internal mutexes.
// Python has no counterpart (its shared objects are flat: Value, Array, ShareableList);
// this is where C++ users put their own data structures (a vector of particles, a map of
// strings to statistics) and use them in place, at memory speed, from every process.
//
//   mp::ManagedSharedMemory segment(mp::create_only, 1 << 20);
//   auto* hist = segment.find_or_construct<mp::ipc::map<int, long>>("hist")(
//       segment.get_segment_manager());
//   // pass `segment` to children (any start method, or through a Queue); each one does
//   // segment.find<mp::ipc::map<int, long>>("hist") and updates it under an mp::Lock.
//
// Only programs that include this header need Boost's headers (link mp::interprocess,
// component `interprocess` of find_package(mp)); the rest of mp uses no Boost.
//
// Lifetime: that of the mp::SharedMemory segment underneath (<mp/shared_memory.hpp>):
// removed when the creating process tree has ended unless created with `persist`, or by
// unlink(); attaching or closing never removes it.
//
// Owner death. The segment manager has two internal locks: the allocator's (held inside
// every allocation and deallocation) and the index of named objects' (held by
// construct, find, destroy of named objects). They are mp's robust locks: a process
// killed while holding one never blocks the others; the next process that needs it takes
// it over within about 25 ms. But the structure it guarded may then be half-changed
// (Boost's allocator rebalances a red-black tree of free blocks in place), and no one
// can tell, so the lock is poisoned for good, in every process:
//   - allocator poisoned: every allocation (container growth, construct, allocate())
//     throws mp::SegmentPoisoned; deallocation does nothing (the memory is leaked, never
//     handed out twice), so containers may still be destroyed and shrink;
//   - index poisoned: construct, find, find_or_construct and destroy of named objects
//     throw mp::SegmentPoisoned (a process killed inside this class's find(), which
//     changes nothing, poisons nothing; through get_segment_manager() every operation
//     counts as a change);
//   - in both cases, the objects already made stay valid: pointers obtained before (and
//     anonymous objects reached through them) can be read and written in place, which
//     is what a worker that updates a shared histogram or particle array does. recovered()
//     tells whether the segment is in this state. To go on allocating, copy what is
//     wanted into a fresh segment. (Boost's std::nothrow forms throw SegmentPoisoned
//     too: a poisoned segment is not the same as a full one.)
//   A process killed while changing one of the user's own containers (under the user's
//   mp::Lock, whose recovered() says so) leaves that container as it left it: as for any
//   data an mp::Lock protects, repair or discard it.
//
// Exhaustion: an allocation that does not fit throws boost::interprocess::bad_alloc
// (a std::bad_alloc) and changes nothing; the segment stays usable.
//
// Hostile input: opening a segment that was not made by this class (or not completely)
// throws std::invalid_argument. The segment's contents are trusted beyond that: a
// process that can write the segment can corrupt it, as with any shared memory.
#pragma once

#include <mp/detail/export.hpp>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>

#include <boost/interprocess/allocators/allocator.hpp>
#include <boost/interprocess/containers/deque.hpp>
#include <boost/interprocess/containers/map.hpp>
#include <boost/interprocess/containers/string.hpp>
#include <boost/interprocess/containers/vector.hpp>
#include <boost/interprocess/indexes/iset_index.hpp>
#include <boost/interprocess/managed_external_buffer.hpp>
#include <boost/interprocess/mem_algo/rbtree_best_fit.hpp>
#include <boost/interprocess/offset_ptr.hpp>
#include <boost/unordered_map.hpp>

#include <mp/detail/segment_mutex.hpp>
#include <mp/shared_memory.hpp>

namespace mp {

namespace detail {

// True in a thread while ManagedSharedMemory runs an operation that only reads the
// segment manager's structures (find): a holder that dies then poisons nothing.
inline thread_local bool segment_reading_only = false;

class segment_reading_scope {
 public:
  segment_reading_scope() noexcept : old_(segment_reading_only) { segment_reading_only = true; }
  ~segment_reading_scope() { segment_reading_only = old_; }
  segment_reading_scope(const segment_reading_scope&) = delete;
  segment_reading_scope& operator=(const segment_reading_scope&) = delete;

 private:
  bool old_;
};

// The segment manager's mutexes: mp's robust lock, poisoned after a takeover; the
// recursive one counts its owner's re-entries.
template <bool Recursive>
class basic_segment_mutex {
 public:
  basic_segment_mutex() = default;
  basic_segment_mutex(const basic_segment_mutex&) = delete;
  basic_segment_mutex& operator=(const basic_segment_mutex&) = delete;
  void lock() { segment_mutex_lock(state_, Recursive, segment_reading_only); }
  bool try_lock() { return segment_mutex_try_lock(state_, Recursive, segment_reading_only); }
  void unlock() noexcept { segment_mutex_unlock(state_, Recursive); }

 private:
  segment_mutex_state state_;
};
using segment_mutex = basic_segment_mutex<false>;
using segment_recursive_mutex = basic_segment_mutex<true>;

struct segment_mutex_family {
  using mutex_type = segment_mutex;
  using recursive_mutex_type = segment_recursive_mutex;
};

using best_fit_base = boost::interprocess::rbtree_best_fit<segment_mutex_family,
                                                           boost::interprocess::offset_ptr<void>>;

// Boost's best-fit allocator whose deallocation never throws: once the allocator is
// poisoned, freeing leaks the block (so destructors keep working).
class robust_best_fit : public best_fit_base {
 public:
  using best_fit_base::best_fit_base;

  void deallocate(void* addr) noexcept {
    try {
      best_fit_base::deallocate(addr);
    } catch (...) {
    }
  }
  void deallocate_many(multiallocation_chain& chain) noexcept {
    try {
      best_fit_base::deallocate_many(chain);
    } catch (...) {
    }
  }
};
static_assert(sizeof(robust_best_fit) == sizeof(best_fit_base),
              "the allocator's blocks start right after it: it must add no member");

using managed_buffer =
    boost::interprocess::basic_managed_external_buffer<char, robust_best_fit,
                                                       boost::interprocess::iset_index>;

// At offset 0 of the segment, before Boost's managed buffer.
struct managed_header {
  static constexpr std::uint64_t kMagic = 0x316d736d2d2d706dULL;  // "mp--msm1"
  std::uint64_t magic;
  std::atomic<std::uint32_t> ready;  // 1 once the creator has built the segment manager
  std::uint32_t reserved;
  std::uint64_t buffer_offset;  // where Boost's managed buffer starts
  std::uint64_t buffer_size;
  std::uint64_t mutex_offset[2];  // the allocator's and the index's segment mutex
};
inline constexpr std::size_t kManagedBufferOffset = 128;
static_assert(sizeof(managed_header) <= kManagedBufferOffset);

// The segment mutexes inside [begin, begin + length), in address order, at most two.
inline std::size_t find_segment_mutexes(std::byte* begin, std::size_t length,
                                        std::uint64_t (&offsets)[2], std::byte* base) {
  std::size_t found = 0;
  for (std::size_t at = 0; at + sizeof(std::uint64_t) <= length && found < 2;
       at += alignof(segment_mutex_state)) {
    std::uint64_t word;
    std::memcpy(&word, begin + at, sizeof word);
    if (word == kSegmentMutexMagic)
      offsets[found++] = static_cast<std::uint64_t>(begin + at - base);
  }
  return found;
}

}  // namespace detail

// A managed segment: Boost.Interprocess's segment manager in an mp::SharedMemory segment.
// Handles are shared references (copies share the mapping) and pickle as the segment's
// name: a child started by any method, or a process that loads the handle from a Queue,
// attaches to the same segment.
class ManagedSharedMemory : public detail::pickled_by_name<ManagedSharedMemory> {
 public:
  // Boost's segment manager type: what Boost's allocators and containers are built from.
  using segment_manager = detail::managed_buffer::segment_manager;
  // The allocator of T in this kind of segment (mp::ipc::allocator<T>).
  template <class T>
  using allocator_type = boost::interprocess::allocator<T, segment_manager>;

  // An empty handle (what pickle::loads fills in).
  ManagedSharedMemory() = default;

  // Creates a segment of `size` bytes (with a random name) and its segment manager.
  // Throws std::invalid_argument if size is too small for the segment manager, and as
  // mp::SharedMemory(create_only, ...) otherwise.
  ManagedSharedMemory(create_only_t, std::size_t size, SharedMemoryOptions options = {})
      : shm_(create_only, checked_size(size), options) {
    build();
  }
  // The same with the name `name`; throws std::system_error (file_exists) if it exists.
  ManagedSharedMemory(create_only_t, std::string_view name, std::size_t size,
                      SharedMemoryOptions options = {})
      : shm_(create_only, name, checked_size(size), options) {
    build();
  }
  // Attaches to the managed segment `name`. Throws as SharedMemory(open_only, name), and
  // std::invalid_argument if the segment is not a (completely built) managed segment.
  ManagedSharedMemory(open_only_t, std::string_view name) : shm_(open_only, name) { attach(); }

  // Named objects (Boost's interface): construct<T>("name")(args...),
  // find_or_construct<T>("name")(args...), find<T>("name"), destroy<T>("name").
  template <class T>
  auto construct(const char* name) {
    return manager()->template construct<T>(name);
  }
  // The object `name` of type T if it exists, else a new one: call the result with the
  // constructor's arguments. Atomic under the index lock, so two processes never both
  // construct. Throws boost::interprocess::bad_alloc if it does not fit,
  // mp::SegmentPoisoned (see the header comment), std::logic_error for an empty or closed
  // handle.
  template <class T>
  auto find_or_construct(const char* name) {
    return manager()->template find_or_construct<T>(name);
  }
  // The object `name` of type T, or nullptr if there is none.
  // A process killed inside find() poisons nothing (it changes nothing).
  template <class T>
  T* find(const char* name) {
    segment_manager* segment = manager();
    detail::segment_reading_scope reading;
    return segment->template find<T>(name).first;
  }
  // Destroys the object `name` of type T and frees its memory; returns whether there was
  // one. Throws mp::SegmentPoisoned, std::logic_error as find_or_construct.
  template <class T>
  bool destroy(const char* name) {
    return manager()->template destroy<T>(name);
  }

  // Raw memory. allocate throws boost::interprocess::bad_alloc when it does not fit.
  void* allocate(std::size_t bytes) { return manager()->allocate(bytes); }
  // Frees a block from allocate(). Never throws (a poisoned allocator leaks the block).
  void deallocate(void* p) noexcept { manager()->deallocate(p); }

  // The segment manager, which Boost's allocators and containers take.
  segment_manager* get_segment_manager() const { return manager(); }
  // An allocator of T in this segment, for Boost's containers. Throws std::logic_error
  // for an empty or closed handle.
  template <class T>
  allocator_type<T> get_allocator() const {
    return allocator_type<T>(manager());
  }

  // Free bytes in the segment (the largest allocation that fits may be smaller).
  std::size_t get_free_memory() const { return manager()->get_free_memory(); }
  // True once a process died inside the allocator or the index of names: see the header
  // comment for what is then refused and what stays safe. Never blocks.
  bool recovered() const noexcept {
    if (shm_.buf().empty()) return false;
    for (const detail::segment_mutex_state* mutex : mutexes_)
      if (mutex != nullptr && mutex->poisoned.load(std::memory_order_acquire) != 0) return true;
    return false;
  }

  // The segment's name, without a leading slash (as SharedMemory::name()).
  const std::string& name() const noexcept { return shm_.name(); }
  // The segment's size in bytes, the segment manager's own structures included.
  std::size_t size() const noexcept { return shm_.size(); }
  // The segment underneath. Closing it unmaps the managed segment for every copy of
  // this handle in this process: their operations then throw std::logic_error.
  const SharedMemory& shm() const noexcept { return shm_; }
  // Removes the segment's name (see SharedMemory::unlink).
  void unlink() const { shm_.unlink(); }

  // Pickles as the segment's name (mp::pickle); never unlinks. Loading throws as
  // ManagedSharedMemory(open_only, name). See detail::pickled_by_name.

 private:
  static std::size_t checked_size(std::size_t size) {
    const std::size_t minimum =
        detail::kManagedBufferOffset + detail::managed_buffer::segment_manager::get_min_size();
    if (size < minimum + 256)
      throw std::invalid_argument("mp::ManagedSharedMemory: size must be at least " +
                                  std::to_string(minimum + 256) + " bytes");
    return size;
  }

  segment_manager* manager() const {
    if (!buffer_) throw std::logic_error("mp::ManagedSharedMemory: empty handle");
    if (shm_.buf().empty()) throw std::logic_error("mp::ManagedSharedMemory: shm() was closed");
    return buffer_->get_segment_manager();
  }

  // Builds the segment manager in the new segment; the segment is removed if that fails.
  void build() {
    try {
      build_manager();
    } catch (...) {
      try {
        shm_.unlink();
      } catch (...) {
      }
      throw;
    }
  }

  void build_manager() {
    std::byte* base = shm_.buf().data();
    auto* header = new (base) detail::managed_header{};
    header->magic = detail::managed_header::kMagic;
    header->buffer_offset = detail::kManagedBufferOffset;
    header->buffer_size = shm_.size() - detail::kManagedBufferOffset;
    buffer_ = std::make_shared<detail::managed_buffer>(
        boost::interprocess::create_only, base + header->buffer_offset, header->buffer_size);
    // The two mutexes lie in the segment manager's own object, the allocator's first.
    const std::size_t found = detail::find_segment_mutexes(
        base + header->buffer_offset, sizeof(segment_manager), header->mutex_offset, base);
    if (found != 2 || header->mutex_offset[0] != header->buffer_offset)
      throw std::logic_error("mp::ManagedSharedMemory: unexpected segment manager layout");
    remember_mutexes(base, header->mutex_offset);
    header->ready.store(1, std::memory_order_release);
  }

  void attach() {
    std::byte* base = shm_.buf().data();
    const std::size_t size = shm_.size();
    const auto* header = reinterpret_cast<const detail::managed_header*>(base);
    const auto bad = [](const char* why) {
      return std::invalid_argument(std::string("mp::ManagedSharedMemory: ") + why);
    };
    if (size < detail::kManagedBufferOffset || header->magic != detail::managed_header::kMagic)
      throw bad("not a managed segment");
    if (header->ready.load(std::memory_order_acquire) != 1)
      throw bad("the segment manager is not built (yet)");
    if (header->buffer_offset != detail::kManagedBufferOffset ||
        header->buffer_size != size - detail::kManagedBufferOffset)
      throw bad("inconsistent header");
    for (std::uint64_t offset : header->mutex_offset) {
      std::uint64_t word = 0;
      if (offset < header->buffer_offset || offset > size - sizeof(detail::segment_mutex_state) ||
          offset % 8 != 0)
        throw bad("inconsistent header");
      std::memcpy(&word, base + offset, sizeof word);
      if (word != detail::kSegmentMutexMagic) throw bad("inconsistent header");
    }
    buffer_ = std::make_shared<detail::managed_buffer>(
        boost::interprocess::open_only, base + header->buffer_offset, header->buffer_size);
    remember_mutexes(base, header->mutex_offset);
  }

  // The mutexes at offsets checked already: recovered() never reads the header again.
  void remember_mutexes(std::byte* base, const std::uint64_t (&offsets)[2]) {
    for (std::size_t i = 0; i < 2; ++i)
      mutexes_[i] = reinterpret_cast<const detail::segment_mutex_state*>(base + offsets[i]);
  }

  SharedMemory shm_;
  std::shared_ptr<detail::managed_buffer> buffer_;
  const detail::segment_mutex_state* mutexes_[2] = {nullptr, nullptr};
};

// Boost.Interprocess's containers with a managed segment's allocator: construct them in
// the segment (construct / find_or_construct) passing segment.get_segment_manager().
namespace ipc {
// The allocator of T in a managed segment.
template <class T>
using allocator = ManagedSharedMemory::allocator_type<T>;
// A std::vector-like vector in the segment (Boost.Interprocess's).
template <class T>
using vector = boost::interprocess::vector<T, allocator<T>>;
// A std::deque-like deque in the segment.
template <class T>
using deque = boost::interprocess::deque<T, allocator<T>>;
// A std::map-like ordered map in the segment.
template <class Key, class T, class Compare = std::less<Key>>
using map = boost::interprocess::map<Key, T, Compare, allocator<std::pair<const Key, T>>>;
// A std::string-like string in the segment (an ipc::map key or value needs it: a
// std::string's characters would live in one process's heap).
using string = boost::interprocess::basic_string<char, std::char_traits<char>, allocator<char>>;
// A std::unordered_map-like hash map in the segment (Boost.Unordered's, with the
// segment's allocator).
template <class Key, class T, class Hash = boost::hash<Key>, class Pred = std::equal_to<Key>>
using unordered_map = boost::unordered_map<Key, T, Hash, Pred, allocator<std::pair<const Key, T>>>;
}  // namespace ipc

}  // namespace mp
