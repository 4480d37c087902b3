// A dict, a list, a value and a Namespace shared by processes, and Python's SyncManager
// factories. Mirrors Python's `multiprocessing.managers` (SyncManager, DictProxy,
// ListProxy, ValueProxy, Namespace) as returned by multiprocessing.Manager().
//
// Differences from Python, on purpose:
//   - No server process and no sockets: a Manager is one segment of shared memory (in
//     mp's shared heap, sparse: only the pages its objects touch cost memory), and every
//     operation runs in the calling process at memory speed (hundreds of times faster
//     than a Python proxy's round trip). Nothing has to be started or shut down; the
//     segment goes away with the last handle to the manager or to any of its objects, in
//     any process.
//   - Slices are mp::Slice{start, stop, step} given to SharedList's get, set and erase
//     (Python: l[a:b:c]); `d | m` gives a plain vector of pairs; dict.fromkeys is
//     Manager::dict_fromkeys.
//   - Typed: dict<K, V>(), list<T>() hold values of one picklable type each (see
//     <mp/pickle.hpp>), a compile-time error otherwise. Namespace attributes may differ in
//     type; reading one as another type throws mp::UnpicklingError.
//   - Values are copies, as in Python: get() returns a copy, and changing it does not
//     change the dict (Python's `d[k].append(x)` is lost the same way). Use update(key, fn)
//     for a read-modify-write: it runs atomically (Python's `d[k] += 1` on a proxy is two
//     round trips and races).
//   - Keys (and the values that SharedList::index/remove look for) compare by their
//     pickled bytes, not by operator==: two equal values with different pickles (0.0 and
//     -0.0, unordered containers holding the same elements in another order) are different
//     keys. Python compares with __eq__ and __hash__.
//   - Crash safety: a process killed (even by SIGKILL) in the middle of any operation
//     leaves every object of the manager as if that operation had run entirely or not at
//     all, and never blocks the others (the next process rolls the operation back within
//     about 25 ms; see lib/src/manager_segment.hpp). A Python manager dies with its server.
//   - A full segment throws mp::HeapExhausted (the operation changes nothing); set
//     ManagerOptions::segment_size. Erased entries' memory is reused.
//   - Iteration walks a snapshot taken under the manager's lock (Python's dict raises
//     "changed size during iteration" instead). A SharedDict iterates over (key, value)
//     pairs, as std::map does; Python's dict iterates over keys (use keys()).
//   - The factories Lock(), Event(), Value()... return mp's own shared objects (from
//     <mp/synchronize.hpp>, <mp/sharedctypes.hpp>), not proxies: they live in mp's heap
//     next to the segment and behave exactly as those types do; Queue<T>() and
//     JoinableQueue<T>() return mp's queues (<mp/queues.hpp>).
//
// One lock per manager serializes the operations on all its objects; each operation
// holds it for about the time of a hash lookup and a copy of the value. Never call an
// operation of the same manager from inside update(key, fn): the lock is not recursive,
// so that waits forever.
#pragma once

#include <mp/detail/export.hpp>

#include <concepts>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <iterator>
#include <memory>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <type_traits>
#include <unordered_map>
#include <utility>
#include <vector>

#include <mp/detail/chrono.hpp>
#include <mp/detail/manager_core.hpp>
#include <mp/detail/ranges.hpp>
#include <mp/detail/shared_ctype.hpp>
#include <mp/detail/type_name.hpp>
#include <mp/errors.hpp>
#include <mp/pickle.hpp>
#include <mp/synchronize.hpp>

namespace mp {

// Python: the arguments of SyncManager() (address, authkey... have no meaning here).
struct ManagerOptions {
  // Bytes of shared memory for the manager's dicts, lists and namespaces, their keys and
  // values. Address space is reserved, memory is used only as objects fill it. At least
  // 64 KiB; mp's heap (MP_HEAP_SIZE, 64 GiB by default) must have room for it.
  std::size_t segment_size = std::size_t{1} << 30;
};

// Python's slice(start, stop, step) for SharedList's get, set and erase: a missing start
// or stop is the end of the list in the step's direction; negative indexes count from the
// end, and out-of-range ones are clamped, as in Python. A step of 0 throws
// std::invalid_argument (Python: ValueError).
struct Slice {
  // The first index selected; none: the start of the list (its end if step < 0).
  std::optional<std::int64_t> start;
  // The index the selection stops before; none: past the end (before the start if step < 0).
  std::optional<std::int64_t> stop;
  // The distance between selected indexes; negative walks backwards, 0 throws.
  std::int64_t step = 1;
};

// What Manager's Queue(), JoinableQueue(), Value() and Array() factories make: declared
// here, defined in <mp/queues.hpp> and <mp/sharedctypes.hpp>, which a program that calls
// those factories includes (<mp/mp.hpp> includes both). This header stays light.
template <class T>
class Queue;
template <class T>
class JoinableQueue;

namespace detail {

// A range of pairs whose first and second convert to K and V (what SharedDict::update
// takes), and a range of values that convert to T (what SharedList::extend takes).
// clang-format off
template <class Pairs, class K, class V>
concept pair_range_of = std::ranges::input_range<Pairs> &&
    requires(const std::ranges::range_value_t<Pairs>& pair) {
      { pair.first } -> std::convertible_to<const K&>;
      { pair.second } -> std::convertible_to<const V&>;
    };
template <class Values, class T>
concept range_of = std::ranges::input_range<Values> &&
    std::convertible_to<std::ranges::range_reference_t<Values>, const T&>;
// What d |= x and d | x take: another shared dict `Dict`, or such a range of pairs.
template <class Pairs, class Dict, class K, class V>
concept merge_source_of = std::same_as<Pairs, Dict> || pair_range_of<Pairs, K, V>;
// clang-format on

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

// Runs a store's modify(function, context) with fn(V&) applied to a copy of the old
// value (V{} if there is none) and returns the value stored: the read-modify-write of
// SharedDict::update(key, fn) and SharedValue::update(fn).
template <class V, class Fn, class Modify>
V modify_with(Fn& fn, Modify modify) {
  struct ModifyContext {
    Fn* fn;
    std::optional<V> result;
  } context{&fn, std::nullopt};
  modify(
      [](void* opaque, const std::string* old, std::string& out) {
        auto& ctx = *static_cast<ModifyContext*>(opaque);
        V value = old ? mp::pickle::loads<V>(*old) : V{};
        (*ctx.fn)(value);
        out.clear();
        mp::pickle::dump(value, out);
        ctx.result = std::move(value);
      },
      &context);
  return std::move(*context.result);
}

// Names the element types of a container (the low half K's fingerprint, the high half V's).
template <class K, class V>
inline constexpr std::uint64_t pair_fingerprint = std::uint64_t{type_fingerprint<K>} |
                                                  (std::uint64_t{type_fingerprint<V>} << 32);

// Loads every pickle of `pickles` as a T, in order.
template <class T>
std::vector<T> load_all(const std::vector<std::string>& pickles) {
  std::vector<T> result;
  result.reserve(pickles.size());
  for (const auto& pickle : pickles) result.push_back(mp::pickle::loads<T>(pickle));
  return result;
}

// What SharedDict, SharedList, SharedValue and Namespace share: the handle's core (a
// reference to the object in the manager's segment) and pickling as that reference,
// which on loading checks that the object is of kind `Kind` with `Fingerprint` (its
// element types) and throws mp::UnpicklingError if not.
template <class Core, ContainerKind Kind, std::uint64_t Fingerprint>
class container_handle {
 public:
  // Pickles as a reference to the same object (mp::pickle).
  template <class Archive>
  void save(Archive& ar) const {
    ar(core_);
  }
  // Throws mp::UnpicklingError if the bytes name no object of this kind and types.
  template <class Archive>
  void load(Archive& ar) {
    ar(core_);
    core_.check(Kind, Fingerprint);
  }

 protected:
  container_handle() = default;
  explicit container_handle(Core core) : core_(std::move(core)) {}

  Core core_;
};

// What d[key] and l[index] give: assigning stores (Container::set), reading loads
// (Container::load_item, which throws std::out_of_range where there is no item).
template <class Container, class Index, class T>
class item_reference {
 public:
  // Stores `value` there. Throws as Container::set.
  item_reference& operator=(const T& value) {
    container_->set(index_, value);
    return *this;
  }
  // Loads the item there.
  operator T() const { return container_->load_item(index_); }  // NOLINT: implicit on purpose

 private:
  friend Container;
  item_reference(const Container* container, const Index& index)
      : container_(container), index_(index) {}
  const Container* container_;
  Index index_;
};

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

}  // namespace detail

class Manager;

// A dict in a Manager's segment, shared by every process that has a handle (copies of a
// handle, and handles passed to children or pickled, refer to the same dict).
// Python: DictProxy, from Manager().dict().
//
// Every operation is atomic and takes the manager's lock for its duration (see the top of
// this file); each may throw mp::UnpicklingError if stored bytes do not load as V (never,
// unless a user type's load() throws). Operations that pickle a key or value throw what
// its serialize()/save() throws, before anything changes. Operations that store may throw
// mp::HeapExhausted (the segment is full; nothing changes). Using a default-constructed
// handle (one that was never loaded) throws std::logic_error.
template <class K, class V>
class SharedDict : public detail::container_handle<detail::DictCore, detail::ContainerKind::dict,
                                                   detail::pair_fingerprint<K, V>> {
  using handle = typename SharedDict::container_handle;

  static_assert(detail::require_picklable<K>::value && detail::require_picklable<V>::value);

 public:
  // No mapped_type: cereal would take any template that has one for a std::map.
  using key_type = K;
  // A (key, value) pair, what the iterator and items() give.
  using value_type = std::pair<K, V>;
  // Iterates a snapshot of the items (begin() copies them), valid after the dict changes.
  using iterator = detail::SnapshotIterator<value_type>;

  // A handle to nothing, for mp::pickle to load into. Manager::dict() makes dicts.
  SharedDict() = default;

  // What d[key] gives: assigning stores (as set), reading loads (as at: throws
  // std::out_of_range if missing, as Python's KeyError). Python: d[key] = value, d[key].
  using reference = detail::item_reference<SharedDict, K, V>;
  // A reference to the entry `key` (nothing is read or stored until it is used).
  // Python: d[key].
  reference operator[](const K& key) const { return reference(this, key); }

  // Stores value under key. Python: d[key] = value.
  void set(const K& key, const V& value) const {
    core_.set(pickled_key(key), detail::pickle_into(detail::manager_value_buffer(), value));
  }
  // A copy of the value, or nullopt. Python: d.get(key).
  std::optional<V> get(const K& key) const {
    std::string& out = detail::manager_out_buffer();
    if (!core_.get(pickled_key(key), out)) return std::nullopt;
    return mp::pickle::loads<V>(out);
  }
  // Python: d.get(key, default).
  V get(const K& key, const V& default_value) const {
    std::string& out = detail::manager_out_buffer();
    if (!core_.get(pickled_key(key), out)) return default_value;
    return mp::pickle::loads<V>(out);
  }
  // Throws std::out_of_range if the key is missing. Python: d[key] (KeyError).
  V at(const K& key) const {
    std::string& out = detail::manager_out_buffer();
    if (!core_.get(pickled_key(key), out)) throw_missing("at");
    return mp::pickle::loads<V>(out);
  }
  // Removes the key; returns whether it was there. Python: del d[key] (which raises
  // KeyError when it is missing).
  bool erase(const K& key) const { return core_.erase(pickled_key(key), nullptr); }
  // Removes the key and returns its value. Throws std::out_of_range if it is missing.
  // Python: d.pop(key).
  V pop(const K& key) const {
    std::string& out = detail::manager_out_buffer();
    if (!core_.erase(pickled_key(key), &out)) throw_missing("pop");
    return mp::pickle::loads<V>(out);
  }
  // Python: d.pop(key, default).
  V pop(const K& key, const V& default_value) const {
    std::string& out = detail::manager_out_buffer();
    if (!core_.erase(pickled_key(key), &out)) return default_value;
    return mp::pickle::loads<V>(out);
  }
  // Removes and returns the pair inserted last. Throws std::out_of_range if the dict is
  // empty. Python: d.popitem().
  value_type popitem() const {
    std::string& key = detail::manager_key_buffer();
    std::string& value = detail::manager_out_buffer();
    if (!core_.popitem(key, value))
      throw std::out_of_range("mp::SharedDict::popitem: dictionary is empty");
    return value_type(mp::pickle::loads<K>(key), mp::pickle::loads<V>(value));
  }
  // Inserts key with `default_value` if missing; returns the value now stored.
  // Python: d.setdefault(key, default).
  V setdefault(const K& key, const V& default_value = V{}) const {
    std::string& out = detail::manager_out_buffer();
    core_.setdefault(pickled_key(key),
                     detail::pickle_into(detail::manager_value_buffer(), default_value), out);
    return mp::pickle::loads<V>(out);
  }
  // Python: key in d.
  bool contains(const K& key) const { return core_.contains(pickled_key(key)); }
  // Python: len(d).
  std::size_t size() const { return core_.size(); }
  // Whether the dict has no items. Python: not d.
  bool empty() const { return size() == 0; }
  // Python: d.clear().
  void clear() const { core_.clear(); }

  // Copies, in insertion order (as Python's dict). Python: list(d.keys()), ...
  std::vector<K> keys() const {
    std::vector<std::string> pickles;
    core_.snapshot(&pickles, nullptr);
    return detail::load_all<K>(pickles);
  }
  // Copies of the values, in the keys' order. Python: list(d.values()).
  std::vector<V> values() const {
    std::vector<std::string> pickles;
    core_.snapshot(nullptr, &pickles);
    return detail::load_all<V>(pickles);
  }
  // Copies of the (key, value) pairs, taken in one atomic read. Python: list(d.items()).
  std::vector<value_type> items() const {
    std::vector<std::string> keys, values;
    core_.snapshot(&keys, &values);
    std::vector<value_type> result;
    result.reserve(keys.size());
    for (std::size_t i = 0; i < keys.size(); ++i)
      result.emplace_back(mp::pickle::loads<K>(keys[i]), mp::pickle::loads<V>(values[i]));
    return result;
  }

  // Stores every (key, value) pair of `pairs` (a std::map, std::unordered_map, a vector of
  // pairs...) in one atomic operation: all or, if anything throws, none.
  // Python: d.update(mapping).
  template <std::ranges::input_range Pairs>
  requires requires(const std::ranges::range_value_t<Pairs>& pair) {
    { pair.first } -> std::convertible_to<const K&>;
    { pair.second } -> std::convertible_to<const V&>;
  }
  void update(const Pairs& pairs) const {
    std::vector<std::string> keys, values;
    for (const auto& pair : pairs) {
      keys.push_back(mp::pickle::dumps(static_cast<const K&>(pair.first)));
      values.push_back(mp::pickle::dumps(static_cast<const V&>(pair.second)));
    }
    core_.update(keys, values);
  }
  // Python: d.update(other) for another shared dict (a snapshot of it).
  void update(const SharedDict& other) const { update(other.items()); }
  // Python: d |= mapping (update; atomic as update()).
  template <detail::merge_source_of<SharedDict, K, V> Pairs>
  const SharedDict& operator|=(const Pairs& pairs) const {
    update(pairs);
    return *this;
  }
  // Python: d | mapping, a new plain dict: the pairs of a snapshot of d, in insertion
  // order, with those of `pairs` stored over them (a key already in d keeps its place, a
  // new one comes last). E.g. manager.dict<K, V>(d | other) for a new shared dict.
  template <detail::merge_source_of<SharedDict, K, V> Pairs>
  std::vector<value_type> operator|(const Pairs& pairs) const {
    std::vector<value_type> merged = items();
    std::unordered_map<std::string, std::size_t> where;
    for (std::size_t i = 0; i < merged.size(); ++i)
      where.emplace(mp::pickle::dumps(merged[i].first), i);
    for (const auto& [key, value] : merge_source(pairs)) {
      const auto [it, added] =
          where.emplace(mp::pickle::dumps(static_cast<const K&>(key)), merged.size());
      if (added)
        merged.emplace_back(key, value);
      else
        merged[it->second].second = value;
    }
    return merged;
  }

  // Atomic read-modify-write: calls fn(V&) on a copy of the value (V{} if the key is
  // missing) under the manager's lock and stores the result; returns it. If fn or
  // pickling throws, the dict is unchanged and the exception reaches the caller. fn must
  // not use this manager's objects (the lock is not recursive). Python has no equivalent
  // (`d[k] += 1` on a proxy is not atomic).
  template <class Fn>
  requires std::invocable<Fn&, V&> V update(const K& key, Fn fn)
  const {
    return detail::modify_with<V>(fn,
                                  [&](detail::DictCore::modify_function function, void* context) {
                                    core_.modify(pickled_key(key), function, context);
                                  });
  }

  // A snapshot of the (key, value) pairs, in insertion order. Python: iter(d.items()).
  iterator begin() const {
    return iterator(std::make_shared<const std::vector<value_type>>(items()));
  }
  // The end of any snapshot begin() took.
  std::default_sentinel_t end() const { return {}; }

  // Python: dict(d). E.g. std::map<K, V>(d), std::unordered_map<K, V>(d).
  template <class Map>
  requires requires {
    typename Map::key_type;
    typename Map::mapped_type;
  } && std::constructible_from < Map, typename std::vector<value_type>::iterator,
  typename std::vector<value_type>::iterator > explicit operator Map() const {
    auto pairs = items();
    return Map(pairs.begin(), pairs.end());
  }

  // Pickles as a reference to the same dict (mp::pickle); loading checks K and V and
  // throws mp::UnpicklingError if the bytes name no dict of this K and V.

 private:
  friend class Manager;
  explicit SharedDict(detail::DictCore core) : handle(std::move(core)) {}
  using handle::core_;

  static const std::string& pickled_key(const K& key) {
    return detail::pickle_into(detail::manager_key_buffer(), key);
  }
  template <class Pairs>
  static const Pairs& merge_source(const Pairs& pairs) {
    return pairs;
  }
  static std::vector<value_type> merge_source(const SharedDict& other) { return other.items(); }
  [[noreturn]] static void throw_missing(const char* what) {
    throw std::out_of_range(std::string("mp::SharedDict::") + what + ": key not found");
  }
  friend reference;
  V load_item(const K& key) const { return at(key); }
};

// A list in a Manager's segment. Python: ListProxy, from Manager().list().
// Atomicity, exceptions and handles as SharedDict. Indexes may be negative (counted from
// the end, as in Python); a bad index throws std::out_of_range (Python: IndexError).
template <class T>
class SharedList : public detail::container_handle<detail::ListCore, detail::ContainerKind::list,
                                                   detail::type_fingerprint<T>> {
  using handle = typename SharedList::container_handle;

  static_assert(detail::require_picklable<T>::value);

 public:
  // The type of the items.
  using value_type = T;
  // Iterates a snapshot of the items (begin() copies them), valid after the list changes.
  using iterator = detail::SnapshotIterator<T>;

  // A handle to nothing, for mp::pickle to load into. Manager::list() makes lists.
  SharedList() = default;

  // What l[i] gives: assigning stores (as set), reading loads (as get). Python: l[i] = x,
  // l[i].
  using reference = detail::item_reference<SharedList, std::int64_t, T>;
  // A reference to slot `index` (checked when it is used, not now). Python: l[index].
  reference operator[](std::int64_t index) const { return reference(this, index); }

  // Python: l.append(x).
  void append(const T& value) const {
    const std::string& item = detail::pickle_into(detail::manager_value_buffer(), value);
    core_.append(std::span<const std::string>(&item, 1));
  }
  // Appends all of `values` in one atomic operation. Python: l.extend(iterable).
  template <std::ranges::input_range Values>
  requires std::convertible_to < std::ranges::range_reference_t<Values>,
  const T& > void extend(const Values& values) const {
    std::vector<std::string> items;
    for (const auto& value : values)
      items.push_back(mp::pickle::dumps(static_cast<const T&>(value)));
    core_.append(items);
  }
  // The same with the values in braces: l.extend({1, 2}). Python: l.extend([1, 2]).
  void extend(std::initializer_list<T> values) const { extend(std::span<const T>(values)); }
  // Python: l[index].
  T get(std::int64_t index) const {
    std::string& out = detail::manager_out_buffer();
    core_.get(index, out);
    return mp::pickle::loads<T>(out);
  }
  // Python: l[index] = value.
  void set(std::int64_t index, const T& value) const {
    core_.set(index, detail::pickle_into(detail::manager_value_buffer(), value));
  }
  // Removes and returns the item at `index` (the last by default). Python: l.pop(i=-1).
  T pop(std::int64_t index = -1) const {
    std::string& out = detail::manager_out_buffer();
    core_.pop(index, out);
    return mp::pickle::loads<T>(out);
  }
  // Inserts before `index` (clamped to the list, as Python). Python: l.insert(i, x).
  void insert(std::int64_t index, const T& value) const {
    core_.insert(index, detail::pickle_into(detail::manager_value_buffer(), value));
  }
  // The index of the first item equal to value. Throws std::invalid_argument if there is
  // none (Python: ValueError). Python: l.index(x).
  std::size_t index(const T& value) const {
    const std::optional<std::size_t> found =
        core_.index(detail::pickle_into(detail::manager_value_buffer(), value));
    if (!found) throw std::invalid_argument("mp::SharedList::index: value is not in list");
    return *found;
  }
  // Removes the first item equal to value. Throws std::invalid_argument if there is none
  // (Python: ValueError). Python: l.remove(x).
  void remove(const T& value) const {
    if (!core_.remove(detail::pickle_into(detail::manager_value_buffer(), value)))
      throw std::invalid_argument("mp::SharedList::remove: value is not in list");
  }
  // How many items equal value (compared as index() does). Python: l.count(x).
  std::size_t count(const T& value) const {
    return core_.count(detail::pickle_into(detail::manager_value_buffer(), value));
  }
  // Reverses the list in place. Python: l.reverse().
  void reverse() const { core_.reverse(); }
  // Sorts the list in place, stably, by operator< of T (descending if `reverse`, equal
  // items keeping their order as in Python). Python: l.sort(reverse=False).
  void sort(bool reverse = false) const { sort(std::identity{}, reverse); }
  // Sorts by key(item) (computed once per item, compared with operator<). Runs under the
  // manager's lock: key must not use this manager's objects. If key or a comparison
  // throws, the list is unchanged. Python: l.sort(key=key, reverse=False).
  template <class Key>
  requires std::invocable<Key&, const T&>
  void sort(Key key, bool reverse = false) const {
    rewrite([&](std::vector<std::string>& items) {
      using KeyValue = std::decay_t<std::invoke_result_t<Key&, const T&>>;
      std::vector<KeyValue> keys;
      keys.reserve(items.size());
      for (const auto& item : items) keys.push_back(std::invoke(key, mp::pickle::loads<T>(item)));
      std::vector<std::size_t> order(items.size());
      for (std::size_t i = 0; i < order.size(); ++i) order[i] = i;
      std::stable_sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) {
        return reverse ? keys[b] < keys[a] : keys[a] < keys[b];
      });
      std::vector<std::string> sorted;
      sorted.reserve(items.size());
      for (const std::size_t i : order) sorted.push_back(std::move(items[i]));
      items = std::move(sorted);
    });
  }

  // Copies of the items a slice selects, from one snapshot. Python: l[start:stop:step].
  std::vector<T> get(const Slice& slice) const {
    std::vector<std::string> pickles;
    core_.snapshot(pickles);
    std::vector<T> result;
    for (const std::size_t i : positions(slice, pickles.size()))
      result.push_back(mp::pickle::loads<T>(pickles[i]));
    return result;
  }
  // Replaces the items a slice selects by `values`, in one atomic operation. With step 1
  // the list may grow or shrink; otherwise `values` must have as many items as the slice,
  // else std::invalid_argument (Python: ValueError). Python: l[start:stop:step] = values.
  template <std::ranges::input_range Values>
  requires std::convertible_to < std::ranges::range_reference_t<Values>,
  const T& > void set(const Slice& slice, const Values& values) const {
    std::vector<std::string> replacement;
    for (const auto& value : values)
      replacement.push_back(mp::pickle::dumps(static_cast<const T&>(value)));
    core_.assign_slice(slice.start, slice.stop, slice.step, std::move(replacement));
  }
  // The same with the values in braces: l.set({1, 3}, {7, 8}). Throws as above.
  void set(const Slice& slice, std::initializer_list<T> values) const {
    set(slice, std::span<const T>(values));
  }
  // Removes the items a slice selects. Python: del l[start:stop:step].
  void erase(const Slice& slice) const { core_.erase_slice(slice.start, slice.stop, slice.step); }

  // Python: l += values (extend).
  template <detail::range_of<T> Values>
  const SharedList& operator+=(const Values& values) const {
    extend(values);
    return *this;
  }
  // The same with the values in braces: l += {1, 2}. Throws mp::HeapExhausted if they do
  // not fit the segment. Python: l += [1, 2].
  const SharedList& operator+=(std::initializer_list<T> values) const {
    extend(values);
    return *this;
  }
  // Repeats the items `times` times in place (empties the list if times <= 0); throws
  // mp::HeapExhausted if the result does not fit the segment. Python: l *= times.
  const SharedList& operator*=(std::int64_t times) const {
    core_.repeat(times);
    return *this;
  }

  // Python: len(l).
  std::size_t size() const { return core_.size(); }
  // The same as size(). Python: len(l).
  std::size_t len() const { return size(); }
  // Whether the list has no items. Python: not l.
  bool empty() const { return size() == 0; }
  // Python: l.clear().
  void clear() const { core_.clear(); }
  // A copy of the items. Python: list(l).
  std::vector<T> to_vector() const {
    std::vector<std::string> pickles;
    core_.snapshot(pickles);
    return detail::load_all<T>(pickles);
  }

  // A snapshot of the items. Python: iter(l).
  iterator begin() const { return iterator(std::make_shared<const std::vector<T>>(to_vector())); }
  // The end of any snapshot begin() took.
  std::default_sentinel_t end() const { return {}; }

  // Pickles as a reference to the same list (mp::pickle), as SharedDict; loading throws
  // mp::UnpicklingError if the bytes name no list of this T.

 private:
  friend class Manager;
  explicit SharedList(detail::ListCore core) : handle(std::move(core)) {}
  using handle::core_;
  friend reference;
  T load_item(std::int64_t index) const { return get(index); }

  template <class Fn>
  void rewrite(Fn fn) const {
    core_.rewrite(
        [](void* context, std::vector<std::string>& items) { (*static_cast<Fn*>(context))(items); },
        &fn);
  }
  static std::vector<std::size_t> positions(const Slice& slice, std::size_t size) {
    return detail::slice_positions(slice.start, slice.stop, slice.step, size);
  }
};

// One value of any picklable type in a Manager's segment. Python: ValueProxy, from
// Manager().Value(typecode, value) (Manager::Value makes an mp::Value instead for the
// types of <mp/sharedctypes.hpp>). Atomicity, exceptions and handles as SharedDict.
template <class T>
class SharedValue
    : private detail::container_handle<detail::ValueCore, detail::ContainerKind::value,
                                       detail::type_fingerprint<T>> {
  using handle = typename SharedValue::container_handle;

  static_assert(detail::require_picklable<T>::value);

 public:
  // The type of the value held.
  using value_type = T;

  // A handle to nothing, for mp::pickle to load into. Manager::Value() makes values.
  SharedValue() = default;

  // A copy of the value. Python: v.get(), v.value.
  T get() const {
    std::string& out = detail::manager_out_buffer();
    core_.get(out);
    return mp::pickle::loads<T>(out);
  }
  // The same as get(). Python: v.value.
  T value() const { return get(); }
  // Python: v.set(x), v.value = x.
  void set(const T& value) const {
    core_.set(detail::pickle_into(detail::manager_value_buffer(), value));
  }
  // The same as set(value). Python: v.value = x.
  void set_value(const T& value) const { set(value); }
  // Atomic read-modify-write, as SharedDict::update(key, fn): calls fn(T&) on a copy under
  // the manager's lock, stores and returns the result; fn must not use this manager.
  template <class Fn>
  requires std::invocable<Fn&, T&> T update(Fn fn)
  const {
    return detail::modify_with<T>(fn, [&](detail::DictCore::modify_function function,
                                          void* context) { core_.modify(function, context); });
  }

  // Pickles as a reference to the same value (mp::pickle); loading checks T.
  template <class Archive>
  void serialize(Archive& ar) {
    if constexpr (Archive::is_loading::value)
      handle::load(ar);
    else
      handle::save(ar);
  }

 private:
  friend class Manager;
  explicit SharedValue(detail::ValueCore core) : handle(std::move(core)) {}
  using handle::core_;
};

// Named attributes of any picklable types, in a Manager's segment. Python: Namespace,
// from Manager().Namespace() (ns.x = 1 is ns.set("x", 1); ns.x is ns.get<int>("x")).
// Atomicity, exceptions and handles as SharedDict.
class Namespace
    : public detail::container_handle<detail::DictCore, detail::ContainerKind::name_space, 0> {
 public:
  // A handle to nothing, for mp::pickle to load into. Manager::Namespace() makes them.
  Namespace() = default;

  // Python: ns.name = value.
  template <class T>
  void set(const std::string& name, const T& value) const {
    static_assert(detail::require_picklable<T>::value);
    core_.set(pickled_name(name), detail::pickle_into(detail::manager_value_buffer(), value));
  }
  // Throws std::out_of_range if there is no such attribute (Python: AttributeError),
  // mp::UnpicklingError if it holds another type than T. Python: ns.name.
  template <class T>
  T get(const std::string& name) const {
    static_assert(detail::require_picklable<T>::value);
    std::string& out = detail::manager_out_buffer();
    if (!core_.get(pickled_name(name), out))
      throw std::out_of_range("mp::Namespace: no attribute '" + name + "'");
    return mp::pickle::loads<T>(out);
  }
  // Python: getattr(ns, name, default).
  template <class T>
  T get(const std::string& name, const T& default_value) const {
    static_assert(detail::require_picklable<T>::value);
    std::string& out = detail::manager_out_buffer();
    if (!core_.get(pickled_name(name), out)) return default_value;
    return mp::pickle::loads<T>(out);
  }
  // Python: hasattr(ns, name).
  bool contains(const std::string& name) const { return core_.contains(pickled_name(name)); }
  // Removes the attribute; returns whether it existed. Python: del ns.name.
  bool erase(const std::string& name) const { return core_.erase(pickled_name(name), nullptr); }
  // The attributes' names, in the order they were first set. Python: vars(ns).keys().
  MP_API std::vector<std::string> names() const;

  // Pickles as a reference to the same namespace (mp::pickle), as SharedDict; loading
  // throws mp::UnpicklingError if the bytes name no namespace.

 private:
  friend class Manager;
  explicit Namespace(detail::DictCore core) : container_handle(std::move(core)) {}
  // The pickle of an attribute's name, its key in the dict (in a per-thread buffer).
  MP_API static const std::string& pickled_name(const std::string& name);
};

// Python: multiprocessing.Manager() (a started SyncManager). Copies refer to the same
// segment.
class Manager {
 public:
  // A new segment of options.segment_size bytes (sparse). Throws std::invalid_argument
  // for a segment below 64 KiB, mp::HeapExhausted if mp's heap has no room for it,
  // std::system_error. Python: Manager() (which starts a server process).
  explicit Manager(ManagerOptions options = {}) : core_(options.segment_size) {}

  // The segment's size in bytes.
  std::size_t segment_size() const { return core_.segment_size(); }
  // Diagnostics: how many times a process took the manager's lock over from one that
  // died holding it, and how many operations of those dead processes were rolled back
  // (the others had completed). Python has no equivalent.
  std::uint64_t takeovers() const { return core_.recoveries().takeovers; }
  // The second figure above: operations of dead processes that were rolled back.
  std::uint64_t rolled_back() const { return core_.recoveries().rolled_back; }

  // A new empty dict. Throws mp::HeapExhausted. Python: manager.dict().
  template <class K, class V>
  SharedDict<K, V> dict() const {
    return SharedDict<K, V>(
        detail::DictCore(core_, detail::ContainerKind::dict, detail::pair_fingerprint<K, V>));
  }
  // A new dict holding a copy of `pairs` (a std::map, a vector of pairs...).
  // Python: manager.dict(mapping).
  template <class K, class V, class Pairs>
  SharedDict<K, V> dict(const Pairs& pairs) const {
    auto result = dict<K, V>();
    result.update(pairs);
    return result;
  }
  // A new dict mapping each of `keys` to `value`. Python: manager.dict(dict.fromkeys(keys,
  // value)).
  template <class K, class V, class Keys>
  requires std::convertible_to < std::ranges::range_reference_t<const Keys&>,
  const K& > SharedDict<K, V> dict_fromkeys(const Keys& keys, const V& value = V{}) const {
    std::vector<std::pair<K, V>> pairs;
    for (const auto& key : keys) pairs.emplace_back(static_cast<const K&>(key), value);
    return dict<K, V>(pairs);
  }
  // The same with the keys in braces: dict_fromkeys<std::string, int>({"a", "b"}, 0).
  // Throws mp::HeapExhausted. Python: manager.dict(dict.fromkeys(["a", "b"], 0)).
  template <class K, class V>
  SharedDict<K, V> dict_fromkeys(std::initializer_list<K> keys, const V& value = V{}) const {
    return dict_fromkeys<K, V>(std::span<const K>(keys), value);
  }
  // A new empty list. Throws mp::HeapExhausted. Python: manager.list().
  template <class T>
  SharedList<T> list() const {
    return SharedList<T>(detail::ListCore(core_, detail::type_fingerprint<T>));
  }
  // A new list holding a copy of `values`. Python: manager.list(sequence).
  template <class T, class Values>
  SharedList<T> list(const Values& values) const {
    auto result = list<T>();
    result.extend(values);
    return result;
  }
  // A new namespace without attributes. Python: manager.Namespace().
  mp::Namespace Namespace() const {
    return mp::Namespace(detail::DictCore(core_, detail::ContainerKind::name_space, 0));
  }

  // Python's SyncManager factories: mp's own objects (not proxies), living in mp's heap,
  // not in the segment. They throw what those types' constructors throw. Queue(),
  // JoinableQueue(), Value() and Array() need <mp/queues.hpp> or <mp/sharedctypes.hpp>
  // (see the top of this file).
  mp::Lock Lock() const { return mp::Lock(); }
  // Python: manager.RLock().
  mp::RLock RLock() const { return mp::RLock(); }
  // Python: manager.Semaphore(value).
  mp::Semaphore Semaphore(int value = 1) const { return mp::Semaphore(value); }
  // Python: manager.BoundedSemaphore(value).
  mp::BoundedSemaphore BoundedSemaphore(int value = 1) const { return mp::BoundedSemaphore(value); }
  // Python: manager.Condition() (with a new RLock).
  mp::Condition Condition() const { return mp::Condition(); }
  // Python: manager.Condition(lock).
  mp::Condition Condition(mp::Lock lock) const { return mp::Condition(std::move(lock)); }
  // Python: manager.Condition(rlock).
  mp::Condition Condition(mp::RLock lock) const { return mp::Condition(std::move(lock)); }
  // Python: manager.Event().
  mp::Event Event() const { return mp::Event(); }
  // Python: manager.Barrier(parties, action, timeout).
  mp::Barrier Barrier(int parties, void (*action)() = nullptr,
                      std::optional<std::chrono::nanoseconds> timeout = std::nullopt) const {
    return mp::Barrier(parties, action, timeout);
  }
  // Python: manager.Queue(maxsize) and manager.JoinableQueue(maxsize); 0: unbounded.
  template <class T>
  mp::Queue<T> Queue(long maxsize = 0) const {
    return mp::Queue<T>(maxsize);
  }
  // The joinable kind (task_done, join). Python: manager.JoinableQueue(maxsize).
  template <class T>
  mp::JoinableQueue<T> JoinableQueue(long maxsize = 0) const {
    return mp::JoinableQueue<T>(maxsize);
  }
  // Python: manager.Value(typecode, value).
  template <shared_ctype T>
  mp::Value<T> Value(T initial = T{}) const {
    return mp::Value<T>(initial);
  }
  // A value of any other picklable type (std::string, a vector, a struct...) in the
  // segment, with get()/set(). Throws mp::HeapExhausted. Python: manager.Value(typecode,
  // value) (a ValueProxy).
  template <class T>
  requires(!shared_ctype<T>) SharedValue<T> Value(const T& initial = T{})
  const {
    return SharedValue<T>(
        detail::ValueCore(core_, detail::type_fingerprint<T>,
                          detail::pickle_into(detail::manager_value_buffer(), initial)));
  }
  // A std::string value from a string literal: Value("text") holds a SharedValue<std::string>
  // rather than a pointer. Throws mp::HeapExhausted. Python: manager.Value("u", "text").
  MP_API SharedValue<std::string> Value(const char* initial) const;
  // Python: manager.Array(typecode, sequence).
  template <shared_ctype T>
  mp::Array<T> Array(std::size_t size) const {
    return mp::Array<T>(size);
  }
  // An array holding a copy of `initial`. Python: manager.Array(typecode, [1, 2]).
  template <shared_ctype T>
  mp::Array<T> Array(std::initializer_list<T> initial) const {
    return mp::Array<T>(initial);
  }
  // An array holding a copy of `initial`. Python: manager.Array(typecode, sequence).
  template <shared_ctype T>
  mp::Array<T> Array(std::span<const T> initial) const {
    return mp::Array<T>(initial);
  }

  // Not picklable (as Python's Manager): pass its dicts, lists and namespaces instead.

 private:
  detail::ManagerCore core_;
};

}  // namespace mp
