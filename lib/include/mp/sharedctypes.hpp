// Plain values and arrays in shared memory. Mirrors Python's
// `multiprocessing.sharedctypes` (Value, Array, RawValue, RawArray; get_lock(), get_obj(),
// and .value/.raw of char arrays).
//
// The element type plays the part of a ctypes type or Structure: any trivially copyable
// object type (int, double, a struct of them...), checked at compile time by the concept
// mp::shared_ctype (so `mp::Value<std::string>` does not compile, and the error names
// the unmet requirement, std::is_trivially_copyable_v<T>). A std::string or a pointer
// would point into one process's memory, meaningless in the others.
//
// Every object lives in mp's shared heap (see <mp/synchronize.hpp>); the classes here are
// handles to it: copying one gives another reference to the same memory, and the memory
// lives until the last handle in any process is gone.
//
// Differences from Python, on purpose:
//   - The type is a template argument, not a typecode string: Value<int>, not Value("i").
//   - Value::update(fn) and Array::update(fn) run a read-modify-write under the object's
//     lock. In Python `v.value += 1` looks atomic and is not (the get and the set each
//     take the lock, but not together); use `v.update([](int& x) { ++x; })` instead.
//   - Handles may also travel inside pickled messages (queues, pipes, files), not only as
//     Process arguments (Python raises RuntimeError there), within one process tree. A
//     loaded handle checks that its element type is the one it was created with.
//   - A Value or Array without a lock is the same type as one with a lock (construct it
//     with mp::no_lock), so code is not written twice; get_lock() and update() on it throw
//     std::logic_error. RawValue and RawArray are the lock-free types, as in Python.
//   - Array::operator[], at(), begin()/end() and span() give references into the shared
//     memory and do not lock (Python's synchronized arrays lock each single item access,
//     which guards nothing larger than an item anyway). Hold get_lock() around them, or
//     use update(), value(), to_vector(), which lock.
//   - RawValue of a scalar type (int, double, a pointer, an enum) reads and writes with
//     relaxed atomic loads and stores, so a concurrent reader never sees a torn value.
//   - copy() and synchronized() (Python's sharedctypes.copy/synchronized) are typed:
//     copy() of a RawValue/RawArray gives a new RawValue/RawArray, and of a Value/Array
//     (read under its lock) the same; synchronized() gives a Value/Array over the very
//     memory of a RawValue/RawArray.
#pragma once

#include <mp/detail/export.hpp>

#include <atomic>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <initializer_list>
#include <mutex>
#include <new>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

#include <mp/detail/chrono.hpp>
#include <mp/detail/heap.hpp>
#include <mp/detail/shared_ctype.hpp>
#include <mp/detail/type_name.hpp>
#include <mp/synchronize.hpp>

namespace mp {

// shared_ctype, what these objects can hold: <mp/detail/shared_ctype.hpp>.

// Tag: construct a Value or Array without a lock. Python: lock=False.
struct no_lock_t {
  explicit no_lock_t() = default;
};
// The no_lock tag to pass: mp::Value<int> v(0, mp::no_lock). Python: lock=False.
inline constexpr no_lock_t no_lock{};

// A Lock or an RLock: the lock of a Value or Array. A handle like them (copies share the
// lock), Lockable and TimedLockable, so `std::scoped_lock guard(v.get_lock());` works.
// Python: whatever lock get_lock() returns.
class AnyLock : public detail::lockable<AnyLock> {
 public:
  // A new RLock (Python's default lock for Value and Array).
  AnyLock() = default;
  // That RLock (a handle to it: whoever else uses it shares it). Python: lock=rlock.
  AnyLock(RLock lock) : lock_(std::move(lock)) {}  // NOLINT: implicit on purpose
  // That Lock, shared the same way. Python: lock=lock.
  AnyLock(Lock lock) : lock_(std::move(lock)) {}  // NOLINT: implicit on purpose

  // As Lock::acquire / RLock::acquire.
  bool acquire(bool block = true, std::optional<std::chrono::nanoseconds> timeout = std::nullopt) {
    return std::visit([&](auto& lock) { return lock.acquire(block, timeout); }, lock_);
  }
  // As Lock::release / RLock::release (their exceptions).
  void release() {
    std::visit([](auto& lock) { lock.release(); }, lock_);
  }
  // See Lock::recovered().
  bool recovered() const noexcept {
    return std::visit([](const auto& lock) { return lock.recovered(); }, lock_);
  }

  // The lock itself: std::get<mp::Lock>(v.get_lock().variant()).
  const std::variant<RLock, Lock>& variant() const noexcept { return lock_; }

  // Pickles as which of the two it is, then a reference to the lock (mp::pickle).
  template <class Archive>
  void serialize(Archive& ar) {
    ar(lock_);  // which of the two, then the lock
  }

 private:
  std::variant<RLock, Lock> lock_;
};

namespace detail {

// The byte-level core of every sharedctypes object: `count` elements of `element_size`
// bytes in the shared heap, after a small header that records the element type (checked
// when a handle is loaded from a pickle). Compiled once in lib/src/sharedctypes.cpp.
class MP_API ctypes_core : public shared_object {
 public:
  // `initial`: count * element_size bytes to copy in, or nullptr for zeroes.
  // Throws std::length_error if the size overflows, mp::HeapExhausted.
  ctypes_core(shared_kind kind, std::size_t element_size, std::uint32_t fingerprint,
              std::size_t count, const void* initial);

  std::byte* data() const noexcept { return static_cast<std::byte*>(state()) + kDataOffset; }
  std::size_t count() const noexcept;

  template <class Archive>
  void save_core(Archive& ar) const {
    save_ref(ar);
  }
  // Throws mp::UnpicklingError if the object is gone, of another kind or element type.
  template <class Archive>
  void load_core(Archive& ar, shared_kind kind, std::size_t element_size,
                 std::uint32_t fingerprint) {
    load_ref(ar, kind);
    check_type(element_size, fingerprint);
  }

  // Python's c_char array .value: the bytes up to the first NUL.
  std::string char_value() const;
  // Python's c_char array .value = text: throws std::invalid_argument if text is longer
  // than the array; writes a NUL after it if there is room.
  void set_char_value(std::string_view text) const;
  // Python's .raw = text: throws std::invalid_argument if too long; no NUL.
  void set_char_raw(std::string_view text) const;
  // Throws std::out_of_range unless index < count().
  void check_index(std::size_t index) const;

 private:
  static constexpr std::size_t kDataOffset = 16;
  void check_type(std::size_t element_size, std::uint32_t fingerprint) const;
};

// A ctypes_core of elements of type T and kind K that pickles as a reference to the same
// memory: RawValue and RawArray derive from it privately and publish ref, save and load.
template <class T, shared_kind K>
class ctypes_handle : public ctypes_core {
 public:
  // Pickles as a reference to the same shared memory (mp::pickle).
  template <class Archive>
  void save(Archive& ar) const {
    save_core(ar);
  }
  // Attaches to the memory saved. Throws mp::UnpicklingError if it no longer exists or
  // holds another type than T.
  template <class Archive>
  void load(Archive& ar) {
    load_core(ar, K, sizeof(T), type_fingerprint<T>);
  }

 protected:
  // `count` elements copied from `initial` (nullptr: zeroes). Throws as ctypes_core.
  ctypes_handle(std::size_t count, const T* initial)
      : ctypes_core(K, sizeof(T), type_fingerprint<T>, count, initial) {}

  // The first element in the shared memory.
  T* elements() const noexcept { return std::launder(reinterpret_cast<T*>(data())); }
};

// Throws std::logic_error: `what` has no lock (it was made with mp::no_lock).
[[noreturn]] MP_API void throw_no_lock(const char* what);

}  // namespace detail

namespace detail {
// A text argument for a char array's constructor (chosen over the span constructor, which
// would keep a string literal's NUL).
template <class T, class Text>
concept text_for = std::same_as<T, char> && std::convertible_to<const Text&, std::string_view>;
}  // namespace detail

template <shared_ctype T>
class Value;
template <shared_ctype T>
class Array;
template <shared_ctype T>
class RawArray;

// One T in shared memory, without a lock. Python: RawValue(typecode_or_type, *args).
template <shared_ctype T>
class RawValue : private detail::ctypes_handle<T, detail::shared_kind::shared_value> {
  using handle = detail::ctypes_handle<T, detail::shared_kind::shared_value>;

 public:
  // Throws mp::HeapExhausted, std::system_error.
  explicit RawValue(T initial = T{}) : handle(1, &initial) {}

  // Reads the value; never blocks. Python: .value.
  T value() const noexcept {
    if constexpr (std::is_scalar_v<T>) {
      return std::atomic_ref<T>(object()).load(std::memory_order_relaxed);
    } else {
      T result;
      std::memcpy(&result, this->data(), sizeof(T));
      return result;
    }
  }
  // Writes the value; never blocks. Python: .value = x.
  void set_value(T value) const noexcept {
    if constexpr (std::is_scalar_v<T>) {
      std::atomic_ref<T>(object()).store(value, std::memory_order_relaxed);
    } else {
      std::memcpy(this->data(), &value, sizeof(T));
    }
  }

  // Pickles as a reference to the same shared memory (mp::pickle); loading throws
  // mp::UnpicklingError if it no longer exists or holds another type than T.
  using handle::ref, handle::save, handle::load;

 private:
  friend class Value<T>;
  T& object() const noexcept { return *this->elements(); }
};

namespace detail {
// The names that Value's and Array's get_lock() give in their errors.
inline constexpr char kValueGetLock[] = "mp::Value::get_lock";
inline constexpr char kArrayGetLock[] = "mp::Array::get_lock";

// Selects synchronized_core's constructor that makes a new RLock.
struct new_lock_t {};

// What Value and Array share: the unsynchronized object (a RawValue or RawArray), its
// lock if it has one, the members that give them out, and pickling.
template <class Raw, const char* GetLockName>
class synchronized_core {
 public:
  // The lock, to hold it around several operations. Throws std::logic_error without a
  // lock. Python: get_lock().
  AnyLock& get_lock() const {
    if (!lock_) throw_no_lock(GetLockName);
    return *lock_;
  }
  // Whether this object has a lock (not made with mp::no_lock).
  bool has_lock() const noexcept { return lock_.has_value(); }
  // The unsynchronized object (same memory). Python: get_obj().
  Raw get_obj() const noexcept { return object_; }

  // Where the shared memory lives, the same in every process: equal for handles to the
  // same object.
  shared_ref ref() const noexcept { return object_.ref(); }

  // Pickles as a reference to the same memory and to its lock, if any (mp::pickle);
  // loading throws as the unsynchronized object's and AnyLock's.
  template <class Archive>
  void serialize(Archive& ar) {
    ar(object_, lock_);  // the lock: whether there is one, then which, then the lock
  }

 protected:
  // The object made from `args`, then a new RLock.
  template <class... Args>
  explicit synchronized_core(new_lock_t, Args&&... args)
      : object_(std::forward<Args>(args)...), lock_(AnyLock()) {}
  // The object made from `args`, with `lock`.
  template <class... Args>
  explicit synchronized_core(AnyLock lock, Args&&... args)
      : object_(std::forward<Args>(args)...), lock_(std::move(lock)) {}
  // The object made from `args`, without a lock.
  template <class... Args>
  explicit synchronized_core(no_lock_t, Args&&... args) : object_(std::forward<Args>(args)...) {}

  // Runs fn under the lock, if there is one.
  template <class F>
  decltype(auto) locked(F fn) const {
    if (!lock_) return fn();
    std::scoped_lock guard(*lock_);
    return fn();
  }

  Raw object_;
  mutable std::optional<AnyLock> lock_;
};
}  // namespace detail

template <shared_ctype T>
Value<T> synchronized(RawValue<T> object, AnyLock lock = AnyLock());
template <shared_ctype T>
Array<T> synchronized(RawArray<T> object, AnyLock lock = AnyLock());

// One T in shared memory with a lock (an RLock unless given). Python: Value(typecode_or_type,
// *args, lock=True).
template <shared_ctype T>
class Value : public detail::synchronized_core<RawValue<T>, detail::kValueGetLock> {
  using core = typename Value::synchronized_core;

 public:
  // With a new RLock. Throws mp::HeapExhausted, std::system_error.
  explicit Value(T initial = T{}) : core(detail::new_lock_t{}, initial) {}
  // With an existing Lock or RLock (shared with whatever else uses it). Python: lock=lock.
  Value(T initial, AnyLock lock) : core(std::move(lock), initial) {}
  // Without a lock (Python: lock=False): value() and set_value() do not lock, get_lock()
  // and update() throw std::logic_error.
  Value(T initial, no_lock_t) : core(no_lock, initial) {}

  // Reads the value, holding the lock (blocks while another process holds it).
  // Python: .value.
  T value() const {
    return locked([&] { return object_.value(); });
  }
  // Writes the value, holding the lock. Python: .value = x.
  void set_value(T value) const {
    locked([&] { object_.set_value(value); });
  }

  // Runs fn(T&) on the shared value while holding the lock, and returns the value fn left.
  // The atomic read-modify-write that Python's `v.value += 1` is not:
  //   counter.update([](int& n) { ++n; });
  // Blocks while another process holds the lock; fn's exceptions pass through (the value
  // keeps whatever fn wrote before throwing). Throws std::logic_error without a lock.
  template <class F>
  requires std::invocable<F&, T&> T update(F fn)
  const {
    if (!lock_) detail::throw_no_lock("mp::Value::update");
    std::scoped_lock guard(*lock_);
    T& shared = object_.object();
    fn(shared);
    return shared;
  }

  // get_lock(), has_lock(), get_obj(), ref() and pickling: see detail::synchronized_core.

 private:
  friend Value<T> synchronized<T>(RawValue<T> object, AnyLock lock);
  Value(RawValue<T> object, AnyLock lock) : core(std::move(lock), std::move(object)) {}

  using core::lock_, core::locked, core::object_;
};

// Elements of a shared array, without a lock. Python: RawArray(typecode_or_type,
// size_or_initializer).
//
// For char arrays, value()/raw()/set_value()/set_raw() are Python's .value/.raw.
template <shared_ctype T>
class RawArray : private detail::ctypes_handle<T, detail::shared_kind::shared_array> {
  using handle = detail::ctypes_handle<T, detail::shared_kind::shared_array>;

 public:
  // `size` zeroed elements. Use parentheses: RawArray<int>{5} is one element, 5.
  // Throws std::length_error, mp::HeapExhausted, std::system_error.
  explicit RawArray(std::size_t size = 0) : RawArray(size, nullptr) {}
  // A copy of `initial`.
  RawArray(std::initializer_list<T> initial) : RawArray(initial.size(), initial.begin()) {}
  // A copy of `initial` (a vector, an array...). Throws as above.
  explicit RawArray(std::span<const T> initial) : RawArray(initial.size(), initial.data()) {}
  // char only: the bytes of `text` (a string literal, std::string, string_view), no NUL
  // added. Python: RawArray('c', b'text').
  template <class Text>
  requires detail::text_for<T, Text>
  explicit RawArray(const Text& text)
      : RawArray(std::string_view(text).size(), std::string_view(text).data()) {}

  // Never blocks or throws.
  std::size_t size() const noexcept { return this->count(); }
  // A reference into the shared memory; no bounds check, no lock.
  T& operator[](std::size_t index) const noexcept { return elements()[index]; }
  // As operator[], but throws std::out_of_range for index >= size() (Python: IndexError).
  T& at(std::size_t index) const {
    this->check_index(index);
    return elements()[index];
  }
  // The first element in the shared memory; with end(), a range-for over it. No lock.
  T* begin() const noexcept { return elements(); }
  // Past the last element. Never blocks or throws.
  T* end() const noexcept { return elements() + size(); }
  // All the elements in the shared memory, as a span. No lock. Python: memoryview(arr).
  std::span<T> span() const noexcept { return {elements(), size()}; }
  // A copy of the elements. Python: arr[:].
  std::vector<T> to_vector() const { return {begin(), end()}; }

  // char arrays: Python's .value (up to the first NUL) and .raw (every byte).
  std::string value() const requires std::same_as<T, char> { return this->char_value(); }
  // Every byte of a char array, NULs included. Python: .raw.
  std::string raw() const requires std::same_as<T, char> { return {begin(), end()}; }
  // Copies `text` in, with a NUL after it if there is room. Throws std::invalid_argument
  // if text is longer than the array (Python: ValueError). Python: .value = text.
  void set_value(std::string_view text) const requires std::same_as<T, char> {
    this->set_char_value(text);
  }
  // Copies `text` in, no NUL. Throws std::invalid_argument if too long. Python: .raw = text.
  void set_raw(std::string_view text) const requires std::same_as<T, char> {
    this->set_char_raw(text);
  }

  // Pickles as a reference to the same shared memory (mp::pickle); loading throws
  // mp::UnpicklingError if it no longer exists or holds another type than T.
  using handle::ref, handle::save, handle::load;

 private:
  RawArray(std::size_t size, const T* initial) : handle(size, initial) {}
  using handle::elements;
};

// A shared array with a lock (an RLock unless given). Python: Array(typecode_or_type,
// size_or_initializer, *, lock=True).
//
// Element access (operator[], at, begin/end, span) does not lock: hold get_lock() around
// it or use update(). value(), raw(), set_value(), set_raw(), to_vector() lock.
template <shared_ctype T>
class Array : public detail::synchronized_core<RawArray<T>, detail::kArrayGetLock> {
  using core = typename Array::synchronized_core;

 public:
  // `size` zeroed elements, with a new RLock. Use parentheses: Array<int>{5} is one
  // element, 5. Throws std::length_error, mp::HeapExhausted, std::system_error.
  explicit Array(std::size_t size = 0) : core(detail::new_lock_t{}, size) {}
  // With an existing Lock or RLock (shared with whatever else uses it). Python: lock=lock.
  Array(std::size_t size, AnyLock lock) : core(std::move(lock), size) {}
  // Without a lock (Python: lock=False): get_lock() and update() throw std::logic_error.
  Array(std::size_t size, no_lock_t) : core(no_lock, size) {}
  // A copy of `initial`.
  Array(std::initializer_list<T> initial) : core(detail::new_lock_t{}, initial) {}
  // A copy of `initial`, with `lock`.
  Array(std::initializer_list<T> initial, AnyLock lock) : core(std::move(lock), initial) {}
  // A copy of `initial`, without a lock.
  Array(std::initializer_list<T> initial, no_lock_t) : core(no_lock, initial) {}
  // A copy of `initial` (a vector, an array...), with a new RLock.
  explicit Array(std::span<const T> initial) : core(detail::new_lock_t{}, initial) {}
  // A copy of `initial`, with `lock`.
  Array(std::span<const T> initial, AnyLock lock) : core(std::move(lock), initial) {}
  // A copy of `initial`, without a lock.
  Array(std::span<const T> initial, no_lock_t) : core(no_lock, initial) {}
  // char only: the bytes of `text` (a string literal, std::string, string_view), no NUL
  // added. Python: Array('c', b'text').
  template <class Text>
  requires detail::text_for<T, Text>
  explicit Array(const Text& text) : core(detail::new_lock_t{}, text) {}
  // char only: the bytes of `text`, with `lock`.
  template <class Text>
  requires detail::text_for<T, Text> Array(const Text& text, AnyLock lock)
      : core(std::move(lock), text) {}
  // char only: the bytes of `text`, without a lock.
  template <class Text>
  requires detail::text_for<T, Text> Array(const Text& text, no_lock_t) : core(no_lock, text) {}

  // The number of elements (fixed). Never blocks or throws. Python: len(arr).
  std::size_t size() const noexcept { return object_.size(); }
  // References into the shared memory, without locking (see above).
  T& operator[](std::size_t index) const noexcept { return object_[index]; }
  // Throws std::out_of_range for index >= size() (Python: IndexError).
  T& at(std::size_t index) const { return object_.at(index); }
  // As RawArray::begin(), end(), span(): the shared memory itself, without the lock.
  T* begin() const noexcept { return object_.begin(); }
  // Past the last element; no lock.
  T* end() const noexcept { return object_.end(); }
  // All the elements, as a span; no lock.
  std::span<T> span() const noexcept { return object_.span(); }

  // A copy of the elements, taken under the lock. Python: arr[:].
  std::vector<T> to_vector() const {
    return locked([&] { return object_.to_vector(); });
  }

  // Runs fn(std::span<T>) over the whole array while holding the lock and returns what fn
  // returns: an atomic read-modify-write of any part of the array, e.g.
  //   arr.update([](std::span<int> a) { for (int& x : a) x *= 2; });
  // Blocks while another process holds the lock. Throws std::logic_error without a lock.
  template <class F>
  requires std::invocable<F&, std::span<T>>
  decltype(auto) update(F fn) const {
    if (!lock_) detail::throw_no_lock("mp::Array::update");
    std::scoped_lock guard(*lock_);
    return fn(object_.span());
  }

  // char arrays, under the lock: see RawArray.
  std::string value() const requires std::same_as<T, char> {
    return locked([&] { return object_.value(); });
  }
  // Every byte, under the lock. Python: .raw.
  std::string raw() const requires std::same_as<T, char> {
    return locked([&] { return object_.raw(); });
  }
  // As RawArray::set_value, under the lock (throws the same). Python: .value = text.
  void set_value(std::string_view text) const requires std::same_as<T, char> {
    locked([&] { object_.set_value(text); });
  }
  // As RawArray::set_raw, under the lock (throws the same). Python: .raw = text.
  void set_raw(std::string_view text) const requires std::same_as<T, char> {
    locked([&] { object_.set_raw(text); });
  }

  // As Value: get_lock(), has_lock(), get_obj(), ref() and pickling (see
  // detail::synchronized_core).

 private:
  friend Array<T> synchronized<T>(RawArray<T> object, AnyLock lock);
  Array(RawArray<T> object, AnyLock lock) : core(std::move(lock), std::move(object)) {}

  using core::lock_, core::locked, core::object_;
};

// ---- Module functions ------------------------------------------------------------------

// A new RawValue holding `object`'s current value (new shared memory). Throws
// mp::HeapExhausted, std::system_error. Python: sharedctypes.copy(obj).
template <shared_ctype T>
RawValue<T> copy(const RawValue<T>& object) {
  return RawValue<T>(object.value());
}
// A new RawArray holding a copy of `object`'s elements. Throws std::length_error,
// mp::HeapExhausted, std::system_error. Python: sharedctypes.copy(obj).
template <shared_ctype T>
RawArray<T> copy(const RawArray<T>& object) {
  return RawArray<T>(std::span<const T>(object.span()));
}
// The same for a synchronized object, read under its lock (blocks while another process
// holds it). Python: sharedctypes.copy(v.get_obj()), done consistently.
template <shared_ctype T>
RawValue<T> copy(const Value<T>& object) {
  return RawValue<T>(object.value());
}
// A new RawArray holding `object`'s elements, read under its lock. Throws as
// copy(RawArray). Python: sharedctypes.copy(arr.get_obj()), done consistently.
template <shared_ctype T>
RawArray<T> copy(const Array<T>& object) {
  const std::vector<T> elements = object.to_vector();
  return RawArray<T>(std::span<const T>(elements));
}

// A Value over the same shared memory as `object`, with `lock` (a new RLock by default):
// writes through either are seen by both. Throws mp::HeapExhausted, std::system_error
// (making the RLock). Python: sharedctypes.synchronized(obj, lock=None).
template <shared_ctype T>
Value<T> synchronized(RawValue<T> object, AnyLock lock) {
  return Value<T>(std::move(object), std::move(lock));
}
// An Array over the same shared memory as `object`, with `lock` (a new RLock by
// default). Python: sharedctypes.synchronized(obj, lock=None).
template <shared_ctype T>
Array<T> synchronized(RawArray<T> object, AnyLock lock) {
  return Array<T>(std::move(object), std::move(lock));
}

}  // namespace mp
