// The byte-level core of a Manager, compiled once in lib/src: the segment (with its
// lock), the kinds of container, and each kind's store of pickled bytes, which the
// typed wrappers of <mp/managers.hpp> keep. Each kind of container keeps its algorithms
// in a file of its own (lib/src/manager_dict.cpp, lib/src/manager_list.cpp) over the
// transactions of lib/src/manager_segment.hpp; adding one is that file, a ContainerKind
// value and its store's declaration here, and a typed wrapper. No pickling here: the
// wrappers pickle.
#pragma once

#include <mp/detail/export.hpp>

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <mp/detail/heap.hpp>
#include <mp/synchronize.hpp>

namespace mp::detail {

// What a container's root says it is; checked when a handle is loaded. A new kind of
// container adds a value here.
enum class ContainerKind : std::uint32_t { dict = 1, list, name_space, value };

// Diagnostics of a segment: locks taken over from processes that died holding them, and
// operations of those processes rolled back (the others had completed).
struct Recoveries {
  std::uint64_t takeovers = 0;
  std::uint64_t rolled_back = 0;
};

// A Manager's segment in the shared heap, with its own allocator and an undo journal, and
// the one Lock that serializes every operation on its containers (lib/src/
// manager_segment.cpp). Copies and pickles refer to the same segment.
class MP_API ManagerCore : private shared_object {
 public:
  // Refers to nothing (a handle about to be loaded from a pickle).
  ManagerCore() noexcept = default;
  // A new segment. Throws std::invalid_argument for a size below 64 KiB,
  // mp::HeapExhausted if mp's heap has no room, std::system_error.
  explicit ManagerCore(std::size_t segment_size);

  // These throw std::logic_error on a handle that refers to nothing.
  std::size_t segment_size() const;
  Recoveries recoveries() const;
  // Throws mp::UnpicklingError unless `root` is a container of this kind and fingerprint.
  void check(std::uint64_t root, ContainerKind kind, std::uint64_t fingerprint) const;

  template <class Archive>
  void save(Archive& ar) const {
    check_bound();
    save_ref(ar);
    ar(*lock_);
  }
  template <class Archive>
  void load(Archive& ar) {
    load_ref(ar, shared_kind::manager);
    Lock lock;
    ar(lock);
    lock_ = std::move(lock);
  }

 private:
  friend class ManagerTransaction;
  void check_bound() const;
  std::byte* segment() const noexcept { return static_cast<std::byte*>(state()); }
  mutable std::optional<Lock> lock_;
};

// A handle to one container of a segment: the segment and the container's root offset.
// The container kinds derive their operations from it; each operation takes the lock
// (waiting as long as it takes; a dead holder is taken over and its operation rolled
// back) and throws std::logic_error on a handle that refers to nothing.
class MP_API ContainerCore {
 public:
  ContainerCore() noexcept = default;

  // Throws mp::UnpicklingError unless this is a container of `kind` holding `fingerprint`.
  void check(ContainerKind kind, std::uint64_t fingerprint) const {
    manager_.check(root_, kind, fingerprint);
  }

  // Pickles as the segment and the root offset, loading the same.
  template <class Archive>
  void serialize(Archive& ar) {
    ar(manager_, root_);
  }

 protected:
  ContainerCore(ManagerCore manager, std::uint64_t root) noexcept
      : manager_(std::move(manager)), root_(root) {}

  ManagerCore manager_;
  std::uint64_t root_ = 0;
};

// Per-thread buffers for pickles, so that an operation does not allocate.
MP_API std::string& manager_key_buffer();
MP_API std::string& manager_value_buffer();
MP_API std::string& manager_out_buffer();

// The store of SharedDict and Namespace: pickled keys and values in a hash table that
// keeps insertion order (lib/src/manager_dict.cpp). Each operation is one transaction.
class MP_API DictCore : public ContainerCore {
 public:
  DictCore() noexcept = default;
  // A new empty container of `kind` (dict or name_space) whose element types
  // `fingerprint` names. Throws mp::HeapExhausted.
  DictCore(const ManagerCore& manager, ContainerKind kind, std::uint64_t fingerprint);

  void set(std::string_view key, std::string_view value) const;
  // Copies the value into `out`; false if the key is missing.
  bool get(std::string_view key, std::string& out) const;
  bool contains(std::string_view key) const;
  // Removes the key; copies its value into `out` if not null. False if missing.
  bool erase(std::string_view key, std::string* out) const;
  // Removes the last inserted pair, copying it into `key` and `value`; false if empty.
  bool popitem(std::string& key, std::string& value) const;
  // If the key is missing, inserts `value`. Copies the value now stored into `out`.
  void setdefault(std::string_view key, std::string_view value, std::string& out) const;
  // All pairs in one operation (a later duplicate key wins).
  void update(const std::vector<std::string>& keys, const std::vector<std::string>& values) const;
  // Under the lock: calls `function(context, old, out)` with the current value (nullptr if
  // missing); it writes the new value's pickle to `out`. If it throws, nothing changes.
  using modify_function = void (*)(void* context, const std::string* old, std::string& out);
  void modify(std::string_view key, modify_function function, void* context) const;
  std::size_t size() const;
  void clear() const;
  // Copies of the keys and/or values in insertion order (either pointer may be null).
  void snapshot(std::vector<std::string>* keys, std::vector<std::string>* values) const;
};

// The store of SharedList: pickled items in an array (lib/src/manager_list.cpp). Each
// operation is one transaction. Indexes may be negative (from the end).
class MP_API ListCore : public ContainerCore {
 public:
  ListCore() noexcept = default;
  // A new empty list whose item type `fingerprint` names. Throws mp::HeapExhausted.
  ListCore(const ManagerCore& manager, std::uint64_t fingerprint);

  void append(std::span<const std::string> items) const;
  // Throw std::out_of_range for a bad index (Python: IndexError).
  void get(std::int64_t index, std::string& out) const;
  void set(std::int64_t index, std::string_view item) const;
  void pop(std::int64_t index, std::string& out) const;
  // Clamps the index as Python's list.insert does. Never throws std::out_of_range.
  void insert(std::int64_t index, std::string_view item) const;
  // The first index of `item`, or nullopt.
  std::optional<std::size_t> index(std::string_view item) const;
  // Removes the first `item`; false if there is none.
  bool remove(std::string_view item) const;
  // How many items equal `item`.
  std::size_t count(std::string_view item) const;
  // Under the lock: calls `function(context, items)` with a copy of every item; the list
  // becomes what it leaves in `items`. If it throws, nothing changes.
  using rewrite_function = void (*)(void* context, std::vector<std::string>& items);
  void rewrite(rewrite_function function, void* context) const;
  // The items repeated `times` times (none if times <= 0).
  void repeat(std::int64_t times) const;
  // The items in reverse order.
  void reverse() const;
  // Removes the items that Python's slice(start, stop, step) selects. Throws
  // std::invalid_argument for step 0.
  void erase_slice(std::optional<std::int64_t> start, std::optional<std::int64_t> stop,
                   std::int64_t step) const;
  // Replaces the items the slice selects by `replacement` (Python: l[a:b:c] = values):
  // with step 1 the list may grow or shrink; otherwise `replacement` must have as many
  // items as the slice, else std::invalid_argument (Python: ValueError), as for step 0.
  void assign_slice(std::optional<std::int64_t> start, std::optional<std::int64_t> stop,
                    std::int64_t step, std::vector<std::string> replacement) const;
  std::size_t size() const;
  void clear() const;
  void snapshot(std::vector<std::string>& out) const;
};

// The positions Python's slice(start, stop, step) selects in a sequence of `size` items,
// in order. Throws std::invalid_argument for step 0 (Python: ValueError).
MP_API std::vector<std::size_t> slice_positions(std::optional<std::int64_t> start,
                                                std::optional<std::int64_t> stop, std::int64_t step,
                                                std::size_t size);

// The store of SharedValue: one pickled value (lib/src/manager_value.cpp).
class MP_API ValueCore : public ContainerCore {
 public:
  ValueCore() noexcept = default;
  // A new value holding `initial`, whose type `fingerprint` names. Throws mp::HeapExhausted.
  ValueCore(const ManagerCore& manager, std::uint64_t fingerprint, std::string_view initial);

  void get(std::string& out) const;
  void set(std::string_view value) const;
  // As DictCore::modify; `old` is never null.
  void modify(DictCore::modify_function function, void* context) const;
};

}  // namespace mp::detail
