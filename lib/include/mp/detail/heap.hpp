// The shared heap: where every shared object (Lock, Event, Value...) lives. Mirrors
// Python's `multiprocessing.heap`. Internal to mp; public only because the handle
// classes of <mp/synchronize.hpp> derive from shared_object.
//
// One main arena per process tree: an anonymous memory file (memfd) of MP_HEAP_SIZE
// bytes (default: 64 GiB, or four times the machine's memory and swap if less, or a
// quarter of `ulimit -v`; sparse: only touched pages cost memory), mapped by every
// process of the tree. Forked children inherit the mapping; spawned children receive
// the file over their bootstrap socket and map it at another address. So objects are
// named by (arena id, offset), never by address. Freed blocks merge with free neighbours
// and give their pages back; recently freed blocks are reused lock-free, the rest under a
// robust lock with an undo journal (a process killed inside the allocator leaks at most
// the block it was freeing, never corrupts the heap); see lib/src/heap.cpp.
#pragma once

#include <mp/detail/export.hpp>

#include <cstddef>
#include <cstdint>

#include <sys/types.h>

// shared_ref sits in a namespace of its own: a plain struct declared in mp::detail
// itself would find mp::pickle's archive hooks by argument-dependent lookup, and its
// pickling traits would then depend on themselves (a compile error).
namespace mp::detail::heap_types {

// Where a shared object lives, the same in every process of the tree. Pickles as its
// bytes.
struct shared_ref {
  std::uint64_t arena = 0;   // the arena's random 64-bit id
  std::uint64_t offset = 0;  // of the object in the arena; 0 is never an object
};

}  // namespace mp::detail::heap_types

namespace mp::detail {

using heap_types::shared_ref;

// Creates this process's main arena unless it has one. Called by Process::start() (so
// every child has the arena) and by every shared object's constructor. Throws
// std::system_error if the OS refuses, std::invalid_argument for a bad MP_HEAP_SIZE.
MP_API void heap_ensure();

// Allocates at least `size` bytes in the main arena (creating it if needed), 16-byte
// aligned, contents unspecified. Throws mp::HeapExhausted.
MP_API shared_ref heap_allocate(std::size_t size);

// The same for a block the caller is about to write whole: unless the block comes warm
// (resident) off a warm list, its pages are faulted in at once, as prefault_for_write
// does.
MP_API shared_ref heap_allocate_for_write(std::size_t size);

// Memory about to be written whole (a vector just reserved): when it is kPrefaultFrom
// bytes or more and freshly mapped (its last whole page is not resident), faults in its
// pages for writing in one system call (MADV_POPULATE_WRITE) instead of one fault per
// page, which costs much more (more still in virtual machines whose page faults trap to
// the hypervisor). Best effort: never fails.
inline constexpr std::size_t kPrefaultFrom = std::size_t{256} << 10;
MP_API void prefault_for_write(void* data, std::size_t size) noexcept;

// Gives a block back. A block that is not allocated (a double free) is reported on
// stderr and left alone. Never throws.
MP_API void heap_free(shared_ref ref) noexcept;

// The address of `ref` in this process. Throws mp::UnpicklingError if this process
// does not map that arena (a handle from another process tree).
MP_API void* heap_address(shared_ref ref);

// This process's pid, cached (a forked child refreshes it). getpid() without the system
// call.
MP_API pid_t current_pid() noexcept;

// The kinds of shared objects, checked when a handle is unpickled.
enum class shared_kind : std::uint32_t {
  lock = 1,
  rlock,
  semaphore,
  condition,
  event,
  barrier,
  shared_value,  // sharedctypes
  shared_array,
  manager,  // managers: the segment of a Manager
  queue,    // queues (Queue, SimpleQueue, JoinableQueue)
};

// For objects that own further heap blocks (a queue's segments and items): called with
// the object's ref and state when its last reference goes, in whichever process drops
// it, before the object's own block is freed. One per kind; must not throw.
using shared_finalizer = void (*)(shared_ref ref, void* state) noexcept;
MP_API void set_shared_finalizer(shared_kind kind, shared_finalizer finalizer) noexcept;

// A counted reference to an object in the shared heap: the base of mp's handle classes.
// Each object starts with a header holding a reference count; copying a handle takes a
// reference, destroying it drops one, and the last one frees the object.
//
// A forked child holds byte copies of its parent's handles without having taken
// references, so a handle remembers the process that took its reference and only that
// process drops it (std::exit in a forked child never frees the parent's objects). A
// process killed while it holds references leaks them: the memory goes away with the
// arena when the last process of the tree ends.
// While a RemotePicklingScope(true) lives on a thread, that thread pickles for a process
// on another machine (a pool's worker on another MPI rank), where handles to this
// machine's shared memory and file descriptors mean nothing: they refuse to pickle.
class MP_API RemotePicklingScope {
 public:
  explicit RemotePicklingScope(bool remote) noexcept;
  ~RemotePicklingScope();
  RemotePicklingScope(const RemotePicklingScope&) = delete;
  RemotePicklingScope& operator=(const RemotePicklingScope&) = delete;

 private:
  bool previous_;
};
// Throws mp::PicklingError ("`what` cannot be pickled for another machine") inside a
// RemotePicklingScope(true).
MP_API void refuse_if_pickling_for_remote(const char* what);
// While a MachineLocalWatch lives on a thread, it remembers the first thing pickled there
// that refuse_if_pickling_for_remote would refuse for another machine (its `what`), so
// bytes pickled before anyone knew where they go can be refused later.
class MP_API MachineLocalWatch {
 public:
  MachineLocalWatch() noexcept;
  ~MachineLocalWatch();
  MachineLocalWatch(const MachineLocalWatch&) = delete;
  MachineLocalWatch& operator=(const MachineLocalWatch&) = delete;
  const char* found() const noexcept { return found_; }

 private:
  friend void refuse_if_pickling_for_remote(const char* what);
  const char* found_ = nullptr;
  MachineLocalWatch* previous_;
};

class MP_API shared_object {
 public:
  shared_object(const shared_object& other) noexcept;
  shared_object& operator=(const shared_object& other) noexcept;
  ~shared_object();

  // Which object this handle refers to (equal refs: the same object).
  shared_ref ref() const noexcept { return ref_; }

 protected:
  // Allocates a new object with `state_size` zeroed bytes of state.
  // Throws mp::HeapExhausted, std::system_error.
  shared_object(shared_kind kind, std::size_t state_size)
      : shared_object(kind, state_size, state_size) {}
  // The same, zeroing only the first `zeroed_size` bytes of the state: a large sparse
  // object (a Manager's segment) must not touch pages it may never use.
  shared_object(shared_kind kind, std::size_t state_size, std::size_t zeroed_size);
  // A handle that refers to nothing (state() is null) until rebind(): for handles that
  // mp::pickle default-constructs before loading them.
  shared_object() noexcept = default;

  // The object's state (after the header), 16-byte aligned.
  void* state() const noexcept { return state_; }

  // Makes this handle refer to the object at `ref` with serial number `serial` (from a
  // pickle), taking a reference. Throws mp::UnpicklingError if this process does not
  // map its arena, or if that object is no longer there (freed already: the sender must keep it
  // alive until the pickle is loaded).
  void rebind(shared_ref ref, shared_kind kind, std::uint64_t serial);
  // The object's serial number, unique within its arena.
  std::uint64_t serial() const noexcept;

  // A handle pickles as (arena, offset, serial): the serial tells the object apart from
  // a later one that reuses its memory.
  template <class Archive>
  void save_ref(Archive& ar) const {
    refuse_if_pickling_for_remote("a handle to a shared object (Value, Array, Queue, lock...)");
    const std::uint64_t object_serial = serial();
    ar(ref_.arena, ref_.offset, object_serial);
  }
  template <class Archive>
  void load_ref(Archive& ar, shared_kind kind) {
    shared_ref ref;
    std::uint64_t object_serial = 0;
    ar(ref.arena, ref.offset, object_serial);
    rebind(ref, kind, object_serial);
  }

 private:
  void drop() noexcept;

  void* state_ = nullptr;
  shared_ref ref_{};
  pid_t ref_pid_ = 0;  // the process that took this handle's reference
};

// A shared_object of kind K that pickles as a reference to the same object (mp::pickle).
// A public class derives from it privately and publishes ref, save and load with
// using-declarations; one that pickles more members as well calls save_with/load_with.
template <shared_kind K>
class shared_handle : public shared_object {
 public:
  // Pickles as a reference to the same object.
  template <class Archive>
  void save(Archive& ar) const {
    save_ref(ar);
  }
  // Attaches to the object saved. Throws mp::UnpicklingError if it no longer exists.
  template <class Archive>
  void load(Archive& ar) {
    load_ref(ar, K);
  }

 protected:
  // Allocates a new object of kind K; throws as shared_object(K, state_size).
  explicit shared_handle(std::size_t state_size) : shared_object(K, state_size) {}
  // A handle that refers to nothing until load().
  shared_handle() noexcept = default;

  // save(ar), then the members given.
  template <class Archive, class... Members>
  void save_with(Archive& ar, const Members&... members) const {
    save(ar);
    ar(members...);
  }
  // load(ar), then the members given (as save_with saved them).
  template <class Archive, class... Members>
  void load_with(Archive& ar, Members&... members) {
    load(ar);
    ar(members...);
  }
};

}  // namespace mp::detail
