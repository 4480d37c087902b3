// Named shared memory segments. Mirrors Python's `multiprocessing.shared_memory`
// (SharedMemory, ShareableList), on POSIX shared memory (/dev/shm).
//
// Lifetime (the rule Python lacks; its resource tracker gets it wrong, gh-82300):
//   - A segment exists from its creation until someone calls unlink(), in any process.
//     Attaching, closing, destroying a handle or ending a process never removes it:
//     only unlink() does, and the creator decides when.
//   - Unless it was created with `persist = true`, a segment whose creator's process
//     tree has ended without unlinking it is removed then. The process tree is every
//     process that maps the creator's mp shared heap (<mp/detail/heap.hpp>): the
//     process that created the heap, the children it started (mp::Process with fork or
//     spawn, or a plain fork()), theirs, and so on; a process leaves it by exec(). It
//     has ended when the last of them has exited or been killed, SIGKILL included. A
//     process outside the tree that attached keeps its mapping (the memory stays valid
//     until it closes), but the name is gone.
//   - `persist = true` segments stay until unlink(), like Python's with track=False, or
//     until reboot.
//   How: the heap holds a registry of the tree's non-persistent segments (name, inode),
//   and one watchdog process per tree (started with the first such segment; detached,
//   named mp-shm-watchdog) blocks on a flock that every process of the tree holds
//   through the heap's file. The kernel releases that lock when the last process of the
//   tree is gone, whatever killed it; the watchdog then removes every registered
//   segment still bearing its registered inode, and exits. A creator killed in the few
//   instructions between creating a segment with a name of its own choosing and
//   recording its inode can leave that segment behind (a default, random name is
//   removed in that case too). If the watchdog itself is killed, segments stay.
//
// Differences from Python, on purpose:
//   - Constructors say what happens when the segment exists or not, as Boost.Interprocess
//     does: SharedMemory(mp::create_only, size) is Python's (create=True, size=size),
//     SharedMemory(mp::open_only, name) is Python's (name=name).
//   - Default names are "mp-" and 16 random hex digits from getrandom (unguessable);
//     segments are created with mode 0600 exactly, whatever the umask.
//   - name() has no leading slash (as Python's); names may be given with or without one.
//   - Handles are shared references to one mapping: copies in a process share it, and
//     close() unmaps it for all of them. A handle pickles as its name: a spawned child
//     (or any process that loads the pickle) attaches by name; a forked child shares the
//     inherited mapping.
//   - Options to pre-fault the pages (prefault) and to ask for huge pages (huge_pages)
//     for segments that are filled at once; see SharedMemoryOptions.
//   - ShareableList keeps trailing NUL bytes of strings and bytes (Python strips them,
//     gh-96779, gh-106939), sizes slots in bytes of UTF-8 (Python under-allocates
//     multibyte strings, gh-145261), and makes each assignment atomic (a process killed
//     while assigning leaves the old value, and a reader never sees half a value).
#pragma once

#include <mp/detail/export.hpp>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include <sys/types.h>

namespace mp {

// Tag: create a new segment; fail if the name exists. Python: create=True.
struct create_only_t {
  explicit create_only_t() = default;
};
// The create_only tag to pass: SharedMemory(mp::create_only, size).
inline constexpr create_only_t create_only{};

// Tag: attach to an existing segment; fail if there is none. Python: create=False.
struct open_only_t {
  explicit open_only_t() = default;
};
// The open_only tag to pass: SharedMemory(mp::open_only, name).
inline constexpr open_only_t open_only{};

// Options of a SharedMemory segment beyond Python's (name, create, size), mostly for
// creating it.
struct SharedMemoryOptions {
  // Creating only: keep the segment after the creator's process tree has ended (it then
  // lives until unlink() or reboot). Python: track=False (3.13).
  bool persist = false;
  // Fault in every page for writing now (MADV_POPULATE_WRITE; a read of each page on
  // kernels before 5.14), so that filling the segment later takes no page faults. The
  // constructor then throws std::system_error if /dev/shm cannot back the whole
  // segment, where a lazy segment would raise SIGBUS at the first write that does not fit.
  bool prefault = false;
  // Ask for transparent huge pages (madvise(MADV_HUGEPAGE)). The kernel grants them only
  // if /dev/shm is mounted with huge=always|within_size|advise (or shmem_enabled is
  // "force"); otherwise, the usual default, the segment silently uses normal pages.
  // huge_pages() says which. (MAP_HUGETLB does not apply: it needs hugetlbfs, not
  // /dev/shm.)
  bool huge_pages = false;
};

namespace detail {
struct shm_mapping;

// Gives Derived (a handle to a named segment) its pickling: it pickles as the segment's
// name, never unlinking it, and loads as Derived(open_only, name), throwing as that does.
template <class Derived>
class pickled_by_name {
 public:
  // Pickles as the segment's name (the loading process attaches to it); never unlinks.
  template <class Archive>
  void save(Archive& ar) const {
    const auto& self = static_cast<const Derived&>(*this);
    if constexpr (requires { self.name(); })
      ar(self.name());
    else
      ar(self.shm().name());
  }
  // Attaches by name, as Derived(open_only, name).
  template <class Archive>
  void load(Archive& ar) {
    std::string loaded_name;
    ar(loaded_name);
    static_cast<Derived&>(*this) = Derived(open_only, loaded_name);
  }
};
}  // namespace detail

// A named segment of shared memory, mapped in this process. Python: SharedMemory.
class MP_API SharedMemory : public detail::pickled_by_name<SharedMemory> {
 public:
  // An empty handle (what pickle::loads fills in): no name, size 0, empty buf().
  SharedMemory() noexcept = default;

  // Creates a segment of `size` bytes (zeros) with a fresh random name and maps it.
  // Throws std::invalid_argument if size is 0, std::system_error if the OS refuses
  // (also for a prefault /dev/shm cannot back).
  // Python: SharedMemory(create=True, size=size).
  SharedMemory(create_only_t, std::size_t size, SharedMemoryOptions options = {});
  // Creates the segment `name` of `size` bytes. Throws std::invalid_argument for size 0
  // or a bad name (empty, longer than 255 bytes, a '/' after the first character, "."
  // or ".."), std::system_error with std::errc::file_exists if it exists (Python:
  // FileExistsError) or if the OS refuses. Python: SharedMemory(name, True, size).
  SharedMemory(create_only_t, std::string_view name, std::size_t size,
               SharedMemoryOptions options = {});
  // Attaches to the existing segment `name` (its whole size). Never removes anything.
  // Throws std::invalid_argument for a bad name, an empty segment or options.persist;
  // std::system_error with std::errc::no_such_file_or_directory if there is none
  // (Python: FileNotFoundError) or if the OS refuses. Python: SharedMemory(name).
  SharedMemory(open_only_t, std::string_view name, SharedMemoryOptions options = {});

  // The name, without a leading slash. Python: .name.
  const std::string& name() const noexcept;
  // The size in bytes (of the segment, not rounded to pages). Python: .size.
  std::size_t size() const noexcept;
  // The mapped bytes; empty after close(). Python: .buf.
  std::span<std::byte> buf() const noexcept;
  // Whether huge pages were granted (see SharedMemoryOptions::huge_pages).
  bool huge_pages() const noexcept;

  // Unmaps the segment in this process, for every copy of this handle (const: a handle
  // is a reference, as in Python). The segment itself stays. Idempotent; never throws.
  // Python: close().
  void close() const noexcept;
  // Removes the segment's name (the memory goes once every process has unmapped it),
  // from any process; the tree's watchdog forgets it. Throws std::system_error with
  // std::errc::no_such_file_or_directory if the name is gone already. Python: unlink().
  void unlink() const;

  // Pickles as the segment's name (the loading process attaches to it); never unlinks.
  // Loading throws std::system_error if the segment is gone. See detail::pickled_by_name.

 private:
  std::shared_ptr<detail::shm_mapping> mapping_;
};

// The bytes of a ShareableList slot holding Python bytes.
using ShareableBytes = std::vector<std::byte>;
// A value of a ShareableList slot: None (std::monostate), int, float, bool, str or bytes.
using ShareableItem =
    std::variant<std::monostate, std::int64_t, double, bool, std::string, ShareableBytes>;

// Options of a new ShareableList beyond Python's (sequence, name).
struct ShareableListOptions {
  // Capacity in bytes of slot i (for strings and bytes; UTF-8 bytes, not characters),
  // when larger than its initial value. Slots not listed get their value's size. Every
  // slot holds at least 8 bytes, so any int, float, bool or None fits any slot.
  std::vector<std::size_t> capacities{};
  // Of the segment (persist, prefault, huge_pages).
  SharedMemoryOptions memory{};
};

// A fixed-length list of items in a SharedMemory segment. Python: ShareableList.
//
// Reads never block and see whole values; assignments take a robust lock in the segment
// (a writer killed while holding it is taken over) and publish each value with one
// atomic store, after writing it beside the old one (so a slot takes twice its capacity).
class MP_API ShareableList : public detail::pickled_by_name<ShareableList> {
 public:
  // An empty list (what pickle::loads fills in): size 0, no segment.
  ShareableList() = default;

  // Creates a list holding `values` in a new segment with a random name. Throws
  // std::system_error if the OS refuses. Python: ShareableList(sequence).
  explicit ShareableList(create_only_t, std::vector<ShareableItem> values,
                         ShareableListOptions options = {});
  // The same in the segment `name`; throws as SharedMemory(create_only, name, ...).
  ShareableList(create_only_t, std::string_view name, std::vector<ShareableItem> values,
                ShareableListOptions options = {});
  // Attaches to the list in the segment `name`. Throws as SharedMemory(open_only, name),
  // and std::invalid_argument if the segment does not hold a ShareableList.
  // Python: ShareableList(name=name).
  ShareableList(open_only_t, std::string_view name);

  // Number of slots (fixed). Python: len(l).
  std::size_t size() const noexcept { return slots_; }
  // The item in slot `index`; never blocks. A negative index counts from the end (-1 is
  // the last slot), as in Python; throws std::out_of_range for a bad index.
  // Python: l[index]. (Every access throws std::logic_error once shm() is closed, and
  // std::invalid_argument if the slot's place or value in the segment was overwritten
  // with bytes that do not fit it: each access checks them, not only the opening.)
  ShareableItem at(std::int64_t index) const;
  // The same as at(index), throwing the same. Python: l[index].
  ShareableItem operator[](std::int64_t index) const;
  // Replaces slot `index` atomically (it may change type). Throws std::out_of_range for a
  // bad index, std::invalid_argument (the slot unchanged) if the value's encoding is
  // larger than the slot's capacity. Blocks only while another process assigns.
  // Python: l[index] = value.
  // A negative index counts from the end.
  void set(std::int64_t index, const ShareableItem& value);
  // The slot's capacity in bytes (a negative index counts from the end).
  std::size_t capacity(std::int64_t index) const;

  // How many slots equal `value`. Python: count(value).
  std::size_t count(const ShareableItem& value) const;
  // The first slot equal to `value`. Throws std::invalid_argument if none (Python:
  // ValueError). Python: index(value).
  std::size_t index(const ShareableItem& value) const;
  // All items. Python: list(l).
  std::vector<ShareableItem> to_vector() const;
  // Python's struct format of the items as they are now, slot by slot: "q" an int, "d" a
  // float, "xxxxxxx?" a bool, "xxxxxx?x" None, "<capacity>s" a str or bytes (mp's
  // capacities are not rounded up to 8 as Python's). Python: .format.
  std::string format() const;

  // The segment. Python: .shm.
  const SharedMemory& shm() const noexcept { return shm_; }

  // Pickles as its segment's name, as SharedMemory; loading throws as
  // ShareableList(open_only, name). Python: ShareableList's pickle.

 private:
  void create(std::vector<ShareableItem> values, const ShareableListOptions& options,
              const std::string_view* name);
  void check_layout();
  std::byte* base() const noexcept { return shm_.buf().data(); }

  SharedMemory shm_;
  std::size_t slots_ = 0;
};

namespace detail {
// The pid of this process tree's shared-memory watchdog, 0 if none was started (tests).
MP_API pid_t shared_memory_watchdog_pid();
}  // namespace detail

}  // namespace mp
