// mp::pickle's cereal archives: PickleOutputArchive appends to a std::string,
// PickleInputArchive reads a std::string_view with a bounds check on every read.
// Internal to mp; the only place (with pickle_traits.hpp) that includes cereal.
//
// Encoding (native byte order and sizes: a pickle is for processes running the same
// binary on the same machine, never a storage or interchange format):
//   arithmetic           sizeof(T) bytes (bool: one byte, 0 or 1)
//   enum                 its underlying type
//   string, vector of arithmetic   8-byte size, then the elements in one block
//   array of arithmetic  the elements in one block
//   other ranges         8-byte size, then each element (map: key, value)
//   pair, tuple          the members in order; chrono: the count
//   optional             bool "empty", then the value if present
//   variant              int32 index, then the alternative
//   complex              real, imaginary
//   filesystem::path     its native string
//   vector, deque, list of an empty type (std::monostate, a captureless lambda)
//                        8-byte size, then a zero byte before each element, so that
//                        every element takes a byte (see read_size)
//   function pointer     module id (8-byte size + characters) and 8-byte offset
//                        (mp/detail/code_ref.hpp); null: an empty id and offset 0
//   plain struct         its sizeof(T) bytes (a trivially copyable aggregate without
//                        serialization functions of its own whose bases and members
//                        are all arithmetic, enums, plain structs or std::array,
//                        optional, duration or time_point of them; see raw_bytes_class)
//   empty class          nothing (a captureless lambda, a stateless function object)
//   anything else        whatever its serialize()/save()/load() writes
#pragma once

#include <mp/detail/export.hpp>

#include <cereal/cereal.hpp>
#include <cereal/types/array.hpp>
#include <cereal/types/optional.hpp>
#include <cereal/types/string.hpp>
#include <cereal/types/tuple.hpp>
#include <cereal/types/utility.hpp>
#include <cereal/types/variant.hpp>
#include <cereal/types/vector.hpp>
#include <cstdint>
#include <cstring>
#include <limits>
#include <memory>
#include <mp/detail/aggregate_members.hpp>
#include <mp/detail/chrono.hpp>
#include <mp/detail/std_shapes.hpp>
#include <mp/detail/type_name.hpp>
#include <new>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

namespace mp::detail {
template <class>
inline constexpr bool dependent_false = false;

}  // namespace mp::detail

namespace mp::pickle {

// Instantiating cannot_pickle<T> is how mp reports, at compile time, that T cannot be
// pickled: the compiler names T in "In instantiation of 'struct
// mp::pickle::cannot_pickle<T>'" right above the message.
template <class T>
struct cannot_pickle {
  static_assert(
      detail::dependent_false<T>,
      "mp::pickle: type T cannot be pickled: give it a `template <class Archive> void "
      "serialize(Archive& ar) { ar(field1, field2); }` member, or make it a trivially copyable "
      "aggregate (it must also be default constructible and movable). A capturing lambda cannot "
      "cross a process boundary: pass the captured values as arguments or use a function object "
      "with serialize(). Raw data pointers and std::string_view cannot be pickled either (they "
      "would dangle in the other process). A plain struct is pickled as its raw bytes only if "
      "every member is an arithmetic type, an enum, or a plain struct or std::array of them: "
      "when T is a member of one (a pointer, std::string_view, function pointer, union...), "
      "give that struct serialize() (which may pickle a function pointer member). A plain "
      "struct of more than 4096 members and C array elements cannot be inspected: use "
      "std::array for large arrays.");
};

}  // namespace mp::pickle

namespace mp::detail {

// Triggers mp's compile-time error naming T, or the member of T to blame when T is a
// plain struct with a member that cannot be copied as raw bytes (defined below).
template <class T>
constexpr void report_unpicklable();

// Out-of-line throwers (lib/src/pickle.cpp): keep the inline read path small.
[[noreturn]] MP_API void throw_truncated(std::size_t wanted, std::size_t available);
[[noreturn]] MP_API void throw_bad_size(std::uint64_t count, std::size_t available);
[[noreturn]] MP_API void throw_bad_bool(unsigned value);
[[noreturn]] MP_API void throw_too_deep_to_pickle(std::size_t limit);
[[noreturn]] MP_API void throw_too_deep_to_unpickle(std::size_t limit);

// How deeply `ar(...)` calls may nest while pickling or unpickling (each level of a
// recursive type such as `struct Node { std::vector<Node> children; }` takes two: its
// serialize() and the vector's element). Deeper values throw PicklingError or
// UnpicklingError instead of overflowing the stack; a pickle of another process could
// otherwise crash its reader by claiming a deep enough nesting. The bound leaves room for
// the frames of each level on a thread's stack, even with sanitizers.
inline constexpr std::size_t kMaxPickleNesting = 10000;

// Counts one level of nesting for the lifetime of the guard.
template <bool Output>
class NestingGuard {
 public:
  explicit NestingGuard(std::size_t& depth) : depth_(depth) {
    if (depth_ >= kMaxPickleNesting) [[unlikely]] {
      if constexpr (Output)
        throw_too_deep_to_pickle(kMaxPickleNesting);
      else
        throw_too_deep_to_unpickle(kMaxPickleNesting);
    }
    ++depth_;
  }
  ~NestingGuard() { --depth_; }
  NestingGuard(const NestingGuard&) = delete;
  NestingGuard& operator=(const NestingGuard&) = delete;

 private:
  std::size_t& depth_;
};

class MP_API PickleOutputArchive
    : public cereal::OutputArchive<PickleOutputArchive, cereal::AllowEmptyClassElision> {
 public:
  // Appends to `out`, which must outlive the archive (or the next rebind()).
  explicit PickleOutputArchive(std::string& out)
      : cereal::OutputArchive<PickleOutputArchive, cereal::AllowEmptyClassElision>(this),
        out_(&out) {}

  void write(const void* data, std::size_t size) {
    out_->append(static_cast<const char*>(data), size);
  }

  void rebind(std::string& out) noexcept { out_ = &out; }

  // cereal's entry points, each counting one level of nesting (kMaxPickleNesting).
  template <class... Types>
  PickleOutputArchive& operator()(Types&&... args) {
    NestingGuard<true> guard(depth_);
    return OutputArchive::operator()(std::forward<Types>(args)...);
  }
  template <class T>
  PickleOutputArchive& operator&(T&& arg) {
    return (*this)(std::forward<T>(arg));
  }
  template <class T>
  PickleOutputArchive& operator<<(T&& arg) {
    return (*this)(std::forward<T>(arg));
  }

 private:
  std::string* out_;
  std::size_t depth_ = 0;
};

class MP_API PickleInputArchive
    : public cereal::InputArchive<PickleInputArchive, cereal::AllowEmptyClassElision> {
 public:
  // Reads from `in`, whose bytes must outlive the archive (or the next rebind()).
  explicit PickleInputArchive(std::string_view in)
      : cereal::InputArchive<PickleInputArchive, cereal::AllowEmptyClassElision>(this) {
    rebind(in);
  }

  void rebind(std::string_view in) noexcept {
    next_ = in.data();
    end_ = in.data() + in.size();
  }

  // Copies the next `size` bytes; throws mp::UnpicklingError if fewer are left.
  void read(void* data, std::size_t size) {
    if (size > remaining()) throw_truncated(size, remaining());
    if (size != 0) std::memcpy(data, next_, size);
    next_ += size;
  }

  // The next `size` bytes, in place; throws mp::UnpicklingError if fewer are left.
  std::string_view read_view(std::size_t size) {
    if (size > remaining()) throw_truncated(size, remaining());
    std::string_view view(next_, size);
    next_ += size;
    return view;
  }

  // A range size (element count) written by PickleOutputArchive. Every element takes
  // at least one byte, so a count above the bytes left is corrupt: refusing it bounds
  // what a container may allocate before its elements are read. (A container of more
  // than `remaining()` elements that pickle to zero bytes, such as empty lambdas, is
  // refused too.)
  std::uint64_t read_size() {
    std::uint64_t count;
    read(&count, sizeof count);
    if (count > remaining()) throw_bad_size(count, remaining());
    return count;
  }

  std::size_t remaining() const noexcept { return static_cast<std::size_t>(end_ - next_); }

  // cereal's entry points, each counting one level of nesting (kMaxPickleNesting).
  template <class... Types>
  PickleInputArchive& operator()(Types&&... args) {
    NestingGuard<false> guard(depth_);
    return InputArchive::operator()(std::forward<Types>(args)...);
  }
  template <class T>
  PickleInputArchive& operator&(T&& arg) {
    return (*this)(std::forward<T>(arg));
  }
  template <class T>
  PickleInputArchive& operator>>(T&& arg) {
    return (*this)(std::forward<T>(arg));
  }

 private:
  const char* next_ = nullptr;
  const char* end_ = nullptr;
  std::size_t depth_ = 0;
};

// Constructing and destroying a cereal archive costs more than pickling an int (its
// bookkeeping for shared pointers, class versions and base classes is five hash
// containers). That bookkeeping is only touched by user serialize() functions, so values
// made of built-in types only (pickle_traits<T>::builtin) reuse one archive per thread.
// The slot is constructed on first use and never destroyed: an empty cereal archive owns
// no memory, and a thread_local with a destructor could not be used from other
// thread_local destructors.
template <class Archive>
struct ThreadArchiveSlot {
  alignas(Archive) unsigned char storage[sizeof(Archive)];
  Archive* archive = nullptr;
  bool in_use = false;
};
MP_API ThreadArchiveSlot<PickleOutputArchive>& thread_output_archive() noexcept;
MP_API ThreadArchiveSlot<PickleInputArchive>& thread_input_archive() noexcept;

// The archive for one dump/load: the thread's shared one when `Reuse` and it is free
// (it is not when a comparator or hash function pickles while a load runs), else its own.
template <class Archive, bool Reuse, class Buffer>
class ArchiveLease {
 public:
  explicit ArchiveLease(Buffer& buffer) {
    if constexpr (Reuse) {
      ThreadArchiveSlot<Archive>& slot = slot_for();
      if (!slot.in_use) {
        if (slot.archive == nullptr) slot.archive = ::new (slot.storage) Archive(buffer);
        slot.archive->rebind(buffer);
        slot.in_use = true;
        archive_ = slot.archive;
        return;
      }
    }
    archive_ = &own_.emplace(buffer);
  }
  ~ArchiveLease() {
    if constexpr (Reuse) {
      if (!own_) slot_for().in_use = false;
    }
  }
  ArchiveLease(const ArchiveLease&) = delete;
  ArchiveLease& operator=(const ArchiveLease&) = delete;

  Archive& operator*() noexcept { return *archive_; }

 private:
  static ThreadArchiveSlot<Archive>& slot_for() noexcept {
    if constexpr (std::is_same_v<Archive, PickleOutputArchive>)
      return thread_output_archive();
    else
      return thread_input_archive();
  }

  Archive* archive_ = nullptr;
  std::optional<Archive> own_;
};

// ---- Archive hooks --------------------------------------------------------------------
// Found by argument-dependent lookup on the archive types (this namespace).

// Arithmetic types: their bytes. A bool must read back as 0 or 1 (anything else would be
// undefined behaviour when used).
template <class T>
requires std::is_arithmetic_v<T>
void CEREAL_SAVE_FUNCTION_NAME(PickleOutputArchive& ar, const T& value) {
  ar.write(std::addressof(value), sizeof value);
}
template <class T>
requires std::is_arithmetic_v<T>
void CEREAL_LOAD_FUNCTION_NAME(PickleInputArchive& ar, T& value) {
  if constexpr (std::is_same_v<T, bool>) {
    unsigned char byte;
    ar.read(&byte, 1);
    if (byte > 1) throw_bad_bool(byte);
    value = byte != 0;
  } else {
    ar.read(std::addressof(value), sizeof value);
  }
}

// Contiguous blocks (strings, vectors and arrays of arithmetic types): one copy.
template <class T>
void CEREAL_SAVE_FUNCTION_NAME(PickleOutputArchive& ar, const cereal::BinaryData<T>& block) {
  ar.write(block.data, static_cast<std::size_t>(block.size));
}
template <class T>
void CEREAL_LOAD_FUNCTION_NAME(PickleInputArchive& ar, cereal::BinaryData<T>& block) {
  using Element = std::remove_cv_t<
      std::remove_all_extents_t<std::remove_pointer_t<std::remove_reference_t<T>>>>;
  const auto size = static_cast<std::size_t>(block.size);
  if constexpr (std::is_same_v<Element, bool>) {  // std::array<bool, N>, bool[N]
    const std::string_view bytes = ar.read_view(size);
    for (char byte : bytes)
      if (static_cast<unsigned char>(byte) > 1) throw_bad_bool(static_cast<unsigned char>(byte));
    if (size != 0) std::memcpy(block.data, bytes.data(), size);
  } else {
    ar.read(block.data, size);
  }
}

// Range sizes: 8 bytes, checked against the input left on load.
template <class T>
void CEREAL_SERIALIZE_FUNCTION_NAME(PickleOutputArchive& ar, cereal::SizeTag<T>& tag) {
  const auto count = static_cast<std::uint64_t>(tag.size);
  ar.write(&count, sizeof count);
}
template <class T>
void CEREAL_SERIALIZE_FUNCTION_NAME(PickleInputArchive& ar, cereal::SizeTag<T>& tag) {
  using Size = std::remove_reference_t<decltype(tag.size)>;
  const std::uint64_t count = ar.read_size();
  if constexpr (sizeof(Size) < sizeof(std::uint64_t)) {
    if (count > static_cast<std::uint64_t>(std::numeric_limits<Size>::max()))
      throw_bad_size(count, ar.remaining());
  }
  tag.size = static_cast<Size>(count);
}

// Names are for text archives: a pickle carries only values.
template <class T>
void CEREAL_SERIALIZE_FUNCTION_NAME(PickleOutputArchive& ar, cereal::NameValuePair<T>& pair) {
  ar(pair.value);
}
template <class T>
void CEREAL_SERIALIZE_FUNCTION_NAME(PickleInputArchive& ar, cereal::NameValuePair<T>& pair) {
  ar(pair.value);
}

// Ordered associative containers: cereal inserts each element before the previous one,
// which reverses the order of equal keys in a multimap/multiset. Inserting at the end
// keeps the saved order (and is amortized O(1) per element, since it is sorted).
template <class Map>
void load_ordered_map(PickleInputArchive& ar, Map& map) {
  cereal::size_type size;
  ar(cereal::make_size_tag(size));
  map.clear();
  for (cereal::size_type i = 0; i < size; ++i) {
    typename Map::key_type key;
    typename Map::mapped_type value;
    ar(cereal::make_map_item(key, value));
    map.emplace_hint(map.end(), std::move(key), std::move(value));
  }
}
template <class Set>
void load_ordered_set(PickleInputArchive& ar, Set& set) {
  cereal::size_type size;
  ar(cereal::make_size_tag(size));
  set.clear();
  for (cereal::size_type i = 0; i < size; ++i) {
    typename Set::key_type key;
    ar(key);
    set.emplace_hint(set.end(), std::move(key));
  }
}
// Maps: the size, then each key and value (cereal's map items).
template <class Map>
requires std_map_like<Map>
void CEREAL_SAVE_FUNCTION_NAME(PickleOutputArchive& ar, const Map& map) {
  ar(cereal::make_size_tag(static_cast<cereal::size_type>(map.size())));
  for (const auto& item : map) ar(cereal::make_map_item(item.first, item.second));
}
template <class Map>
requires std_map_like<Map>
void CEREAL_LOAD_FUNCTION_NAME(PickleInputArchive& ar, Map& map) {
  if constexpr (std_ordered<Map>) {
    load_ordered_map(ar, map);
  } else {
    cereal::size_type size;
    ar(cereal::make_size_tag(size));
    map.clear();
    auto hint = map.begin();
    for (cereal::size_type i = 0; i < size; ++i) {
      typename Map::key_type key;
      typename Map::mapped_type value;
      ar(cereal::make_map_item(key, value));
      hint = map.emplace_hint(hint, std::move(key), std::move(value));
    }
  }
}

// Sets: the size, then each element.
template <class Set>
requires std_set_like<Set>
void CEREAL_SAVE_FUNCTION_NAME(PickleOutputArchive& ar, const Set& set) {
  ar(cereal::make_size_tag(static_cast<cereal::size_type>(set.size())));
  for (const auto& key : set) ar(key);
}
template <class Set>
requires std_set_like<Set>
void CEREAL_LOAD_FUNCTION_NAME(PickleInputArchive& ar, Set& set) {
  if constexpr (std_ordered<Set>) {
    load_ordered_set(ar, set);
  } else {
    cereal::size_type size;
    ar(cereal::make_size_tag(size));
    set.clear();
    set.reserve(static_cast<std::size_t>(size));
    for (cereal::size_type i = 0; i < size; ++i) {
      typename Set::key_type key;
      ar(key);
      set.emplace(std::move(key));
    }
  }
}

// std::deque and std::list: the size, then each element.
template <class Sequence>
requires std_node_sequence<Sequence> &&
    (!std::is_empty_v<typename Sequence::value_type>)void CEREAL_SAVE_FUNCTION_NAME(
        PickleOutputArchive& ar, const Sequence& sequence) {
  ar(cereal::make_size_tag(static_cast<cereal::size_type>(sequence.size())));
  for (const auto& element : sequence) ar(element);
}
template <class Sequence>
requires std_node_sequence<Sequence> &&
    (!std::is_empty_v<typename Sequence::value_type>)void CEREAL_LOAD_FUNCTION_NAME(
        PickleInputArchive& ar, Sequence& sequence) {
  cereal::size_type size;
  ar(cereal::make_size_tag(size));
  sequence.resize(static_cast<std::size_t>(size));
  for (auto& element : sequence) ar(element);
}

// Complex numbers: the real part, then the imaginary part.
template <class Complex>
requires std_complex_like<Complex>
void CEREAL_SAVE_FUNCTION_NAME(PickleOutputArchive& ar, const Complex& number) {
  ar(number.real(), number.imag());
}
template <class Complex>
requires std_complex_like<Complex>
void CEREAL_LOAD_FUNCTION_NAME(PickleInputArchive& ar, Complex& number) {
  typename Complex::value_type real;
  typename Complex::value_type imag;
  ar(real, imag);
  number = Complex(real, imag);
}

// Sequences of an empty type (std::monostate, a stateless function object): a zero byte
// before each element, whose own pickle is usually empty, so that read_size's bound
// (every element takes at least one byte) holds for them too.
template <class Sequence>
void save_empty_elements(PickleOutputArchive& ar, const Sequence& sequence) {
  ar(cereal::make_size_tag(static_cast<cereal::size_type>(sequence.size())));
  for (const auto& element : sequence) {
    const unsigned char marker = 0;
    ar.write(&marker, 1);
    ar(element);
  }
}
template <class Sequence>
void load_empty_elements(PickleInputArchive& ar, Sequence& sequence) {
  cereal::size_type size;
  ar(cereal::make_size_tag(size));
  sequence.clear();
  sequence.resize(static_cast<std::size_t>(size));
  for (auto& element : sequence) {
    unsigned char marker;
    ar.read(&marker, 1);
    if (marker != 0) throw_bad_bool(marker);
    ar(element);
  }
}
// std::vector is handled by cereal's header, whose overloads take any archive: one
// more specialized pair of overloads for it; deque and list by a pair of constrained ones.
template <class T, class A>
requires std::is_empty_v<T>
void CEREAL_SAVE_FUNCTION_NAME(PickleOutputArchive& ar, const std::vector<T, A>& sequence) {
  save_empty_elements(ar, sequence);
}
template <class T, class A>
requires std::is_empty_v<T>
void CEREAL_LOAD_FUNCTION_NAME(PickleInputArchive& ar, std::vector<T, A>& sequence) {
  load_empty_elements(ar, sequence);
}
template <class Sequence>
requires std_node_sequence<Sequence> && std::is_empty_v<typename Sequence::value_type>
void CEREAL_SAVE_FUNCTION_NAME(PickleOutputArchive& ar, const Sequence& sequence) {
  save_empty_elements(ar, sequence);
}
template <class Sequence>
requires std_node_sequence<Sequence> && std::is_empty_v<typename Sequence::value_type>
void CEREAL_LOAD_FUNCTION_NAME(PickleInputArchive& ar, Sequence& sequence) {
  load_empty_elements(ar, sequence);
}

// std::chrono durations: the count; time points: the duration since the clock's epoch
// (the bytes cereal's <cereal/types/chrono.hpp> writes, without its <chrono>).
template <class Rep, class Period>
void CEREAL_SAVE_FUNCTION_NAME(PickleOutputArchive& ar,
                               const std::chrono::duration<Rep, Period>& duration) {
  ar(duration.count());
}
template <class Rep, class Period>
void CEREAL_LOAD_FUNCTION_NAME(PickleInputArchive& ar,
                               std::chrono::duration<Rep, Period>& duration) {
  Rep count{};
  ar(count);
  duration = std::chrono::duration<Rep, Period>(count);
}
template <class Clock, class Duration>
void CEREAL_SAVE_FUNCTION_NAME(PickleOutputArchive& ar,
                               const std::chrono::time_point<Clock, Duration>& time) {
  ar(time.time_since_epoch());
}
template <class Clock, class Duration>
void CEREAL_LOAD_FUNCTION_NAME(PickleInputArchive& ar,
                               std::chrono::time_point<Clock, Duration>& time) {
  Duration since_epoch{};
  ar(since_epoch);
  time = std::chrono::time_point<Clock, Duration>(since_epoch);
}

// A path: its native string. Templates, so that nothing converts to a path on the way
// (std::string_view would).
template <class Path>
requires std_path_like<Path>
void CEREAL_SAVE_FUNCTION_NAME(PickleOutputArchive& ar, const Path& path) { ar(path.native()); }
template <class Path>
requires std_path_like<Path>
void CEREAL_LOAD_FUNCTION_NAME(PickleInputArchive& ar, Path& path) {
  typename Path::string_type text;
  ar(text);
  path = std::move(text);
}

// Function pointers travel as code references (mp/detail/code_ref.hpp). These
// overloads are more specialized than cereal's catch-all for raw pointers (which
// only static_asserts).
MP_API void save_function_address(PickleOutputArchive& ar, const void* address);
MP_API const void* load_function_address(PickleInputArchive& ar);

template <class F>
requires std::is_function_v<F>
void CEREAL_SERIALIZE_FUNCTION_NAME(PickleOutputArchive& ar, F*& function) {
  save_function_address(ar, reinterpret_cast<const void*>(function));
}
template <class F>
requires std::is_function_v<F>
void CEREAL_SERIALIZE_FUNCTION_NAME(PickleInputArchive& ar, F*& function) {
  function = reinterpret_cast<F*>(const_cast<void*>(load_function_address(ar)));
}

// Whether T (or cereal, for it) defines serialize/save/load/save_minimal of its own.
// Checked against a probe archive that does not see the overloads of this namespace, so
// that the raw-bytes overloads below do not count themselves.
namespace pickle_probe {
class ProbeOutputArchive : public cereal::OutputArchive<ProbeOutputArchive> {
 public:
  ProbeOutputArchive() : cereal::OutputArchive<ProbeOutputArchive>(this) {}
};
}  // namespace pickle_probe

template <class T>
inline constexpr bool has_own_serialization =
    cereal::traits::detail::count_output_serializers<T, pickle_probe::ProbeOutputArchive>::value !=
    0;

// A class mp may pickle as its raw bytes: a trivially copyable aggregate ("plain
// struct", not a union) without serialization functions of its own...
template <class T>
concept plain_struct =
    std::is_class_v<T> && !std::is_empty_v<T> && std::is_trivially_copyable_v<T> &&
    std::is_aggregate_v<T> && std::is_default_constructible_v<T> && std::is_copy_assignable_v<T> &&
    !is_library_type<T> && !has_own_serialization<T>;

// ...and does when each of its bases and members (each element of a C array member) is
// one of these, recursively: bytes that mean the same in another process. A pointer (it
// would dangle, or for a function point elsewhere in a binary loaded at another
// address), std::string_view, a member pointer, a union (which member is active cannot
// be told) or a class with a serialization of its own makes the struct need a
// serialize() of its own. A class that is not an aggregate (private members,
// constructors) cannot be inspected, so it needs serialize() whatever it holds.
template <class T>
consteval bool raw_member();

template <class T>
struct raw_library_member : std::false_type {};
template <class T, std::size_t N>
struct raw_library_member<std::array<T, N>> : std::bool_constant<raw_member<T>()> {};
template <class T>
struct raw_library_member<std::optional<T>>
    : std::bool_constant<raw_member<T>() && std::is_trivially_copyable_v<std::optional<T>>> {};
template <class Rep, class Period>
struct raw_library_member<std::chrono::duration<Rep, Period>>
    : std::bool_constant<raw_member<Rep>()> {};
template <class Clock, class Duration>
struct raw_library_member<std::chrono::time_point<Clock, Duration>>
    : std::bool_constant<raw_member<Duration>()> {};
template <class T>
requires std_complex_like<T>
struct raw_library_member<T>
    : std::bool_constant<raw_member<typename T::value_type>() && std::is_trivially_copyable_v<T>> {
};

// Converts to every type; the conversion is noexcept when the type is a raw member.
struct RawMemberProbe {
  template <class U>
  operator U() const noexcept(raw_member<U>());
};

template <class T>
consteval bool raw_members() {
  if constexpr (aggregate_slots<T>() == kUnknownSlots)
    return false;
  else
    return every_slot_passes<T, RawMemberProbe>();
}

template <class T>
concept raw_bytes_class = plain_struct<T> && raw_members<T>();

// An empty class without serialization of its own (a captureless lambda, a stateless
// function object): pickles to zero bytes (cereal's AllowEmptyClassElision), loads as a
// default-constructed object.
template <class T>
concept empty_class =
    std::is_class_v<T> && std::is_empty_v<T> && std::is_default_constructible_v<T> &&
    std::is_copy_assignable_v<T> && !is_library_type<T> &&
    !has_own_serialization<T>;

template <class T>
consteval bool raw_member() {
  if constexpr (std::is_arithmetic_v<T> || std::is_enum_v<T>) {
    return true;
  } else if constexpr (!std::is_class_v<T> || !std::is_trivially_copyable_v<T>) {
    return false;  // pointers, member pointers, unions, references, non-trivial classes
  } else if constexpr (is_library_type<T>) {
    return raw_library_member<T>::value;
  } else {
    return raw_bytes_class<T> || empty_class<T>;
  }
}

// Blames, at compile time, the first member of the plain struct T that is not a raw
// member (naming its type): converting to it instantiates its report.
template <class U>
consteval bool blame_unless_raw_member() {
  if constexpr (!raw_member<U>()) report_unpicklable<U>();
  return true;
}
struct MemberBlamer {
  template <class U>
  operator U() const noexcept(blame_unless_raw_member<U>());
};

template <class T>
constexpr void report_unpicklable() {
  if constexpr (plain_struct<T> && aggregate_slots<T>() != kUnknownSlots) {
    static_assert(!raw_bytes_class<T>, "mp: internal error: T is picklable");
    [[maybe_unused]] constexpr bool blamed = every_slot_passes<T, MemberBlamer>();
    // Then T itself, should no member have been blamed.
    [[maybe_unused]] pickle::cannot_pickle<T> report;
  } else {
    [[maybe_unused]] pickle::cannot_pickle<T> report;
  }
}

template <class T>
requires raw_bytes_class<T>
void CEREAL_SERIALIZE_FUNCTION_NAME(PickleOutputArchive& ar, T& value) {
  ar.write(std::addressof(value), sizeof(T));
}
template <class T>
requires raw_bytes_class<T>
void CEREAL_SERIALIZE_FUNCTION_NAME(PickleInputArchive& ar, T& value) {
  ar.read(std::addressof(value), sizeof(T));
}

// Inside a user's serialize(), `ar(x)` with an x that cannot be pickled reaches cereal's
// own static_assert. cereal calls prologue() first; its return type is computed during
// overload resolution, before any function body is instantiated, so mp's message (naming
// the type) comes first. cereal's wrappers (NameValuePair, SizeTag, base_class...) pass.
template <class T, class Archive>
consteval bool element_ok() {
  if constexpr (std::is_pointer_v<T>) {
    return std::is_function_v<std::remove_pointer_t<T>>;
  } else if constexpr (std::is_empty_v<T> || type_name<T>().starts_with("cereal::")) {
    return true;
  } else if constexpr (std::is_base_of_v<cereal::detail::OutputArchiveBase, Archive>) {
    return cereal::traits::detail::count_output_serializers<T, Archive>::value != 0;
  } else {
    return cereal::traits::detail::count_input_serializers<T, Archive>::value != 0;
  }
}
struct element_passes {};
template <class T, class Archive>
struct element_check
    : std::conditional_t<element_ok<T, Archive>(), element_passes, pickle::cannot_pickle<T>> {
  using type = void;
};
template <class T>
typename element_check<T, PickleOutputArchive>::type prologue(PickleOutputArchive&, const T&) {}
template <class T>
typename element_check<T, PickleInputArchive>::type prologue(PickleInputArchive&, const T&) {}

}  // namespace mp::detail

CEREAL_REGISTER_ARCHIVE(mp::detail::PickleOutputArchive)
CEREAL_REGISTER_ARCHIVE(mp::detail::PickleInputArchive)
CEREAL_SETUP_ARCHIVE_TRAITS(mp::detail::PickleInputArchive, mp::detail::PickleOutputArchive)
