// The byte-level core that every container of a Manager shares: the segment (with its
// lock), the kinds of container, the handle of one container, and the helpers of the
// typed wrappers in <mp/managers.hpp>. Each kind of container keeps its algorithms in a
// file of its own (lib/src/manager_dict.cpp, lib/src/manager_list.cpp) over the
// transactions of lib/src/manager_segment.hpp.
#pragma once

#include <cstddef>
#include <cstdint>
#include <iterator>
#include <memory>
#include <optional>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include <mp/detail/heap.hpp>
#include <mp/detail/type_name.hpp>
#include <mp/pickle.hpp>
#include <mp/synchronize.hpp>

namespace mp::detail {

// What a container's root says it is; checked when a handle is loaded. A new kind of
// container adds a value here.
enum class ContainerKind : std::uint32_t { dict = 1, list, name_space };

// Diagnostics of a segment: locks taken over from processes that died holding them, and
// operations of those processes rolled back (the others had completed).
struct Recoveries {
  std::uint64_t takeovers = 0;
  std::uint64_t rolled_back = 0;
};

// A Manager's segment in the shared heap, with its own allocator and an undo journal, and
// the one Lock that serializes every operation on its containers (lib/src/
// manager_segment.cpp). Copies and pickles refer to the same segment.
class ManagerCore : private shared_object {
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
class ContainerCore {
 public:
  ContainerCore() noexcept = default;

  // Throws mp::UnpicklingError unless this is a container of `kind` holding `fingerprint`.
  void check(ContainerKind kind, std::uint64_t fingerprint) const {
    manager_.check(root_, kind, fingerprint);
  }

  template <class Archive>
  void save(Archive& ar) const {
    ar(manager_, root_);
  }
  template <class Archive>
  void load(Archive& ar) {
    ar(manager_, root_);
  }

 protected:
  ContainerCore(ManagerCore manager, std::uint64_t root) noexcept
      : manager_(std::move(manager)), root_(root) {}

  ManagerCore manager_;
  std::uint64_t root_ = 0;
};

// Per-thread buffers for pickles, so that an operation does not allocate.
std::string& manager_key_buffer();
std::string& manager_value_buffer();
std::string& manager_out_buffer();

template <class T>
const std::string& pickle_into(std::string& buffer, const T& value) {
  buffer.clear();
  mp::pickle::dump(value, buffer);
  return buffer;
}

// Instantiated with a type that cannot be pickled, reports mp's compile-time error
// naming it (mp::pickle::cannot_pickle<T>), as pickle::dumps would. A trait, so
// snake_case as the standard's: classes are CamelCase.
template <class T>
struct require_picklable
    : std::conditional_t<mp::pickle::picklable<T>, std::true_type,
                         mp::pickle::cannot_pickle<typename pickle_traits<T>::culprit>> {};

// Names the element types of a container (the low half K's fingerprint, the high half V's).
template <class K, class V>
inline constexpr std::uint64_t pair_fingerprint = std::uint64_t{type_fingerprint<K>} |
                                                  (std::uint64_t{type_fingerprint<V>} << 32);

// A snapshot's iterator: shares the copied elements, so it stays valid after the
// container changes.
template <class Element>
class SnapshotIterator {
 public:
  using value_type = Element;
  using difference_type = std::ptrdiff_t;
  using reference = const Element&;
  using pointer = const Element*;
  using iterator_category = std::input_iterator_tag;

  SnapshotIterator() = default;
  explicit SnapshotIterator(std::shared_ptr<const std::vector<Element>> elements)
      : elements_(std::move(elements)) {}

  const Element& operator*() const { return (*elements_)[index_]; }
  const Element* operator->() const { return &(*elements_)[index_]; }
  SnapshotIterator& operator++() {
    ++index_;
    return *this;
  }
  SnapshotIterator operator++(int) {
    auto old = *this;
    ++index_;
    return old;
  }
  friend bool operator==(const SnapshotIterator& it, std::default_sentinel_t) {
    return !it.elements_ || it.index_ >= it.elements_->size();
  }

 private:
  std::shared_ptr<const std::vector<Element>> elements_;
  std::size_t index_ = 0;
};

}  // namespace mp::detail
