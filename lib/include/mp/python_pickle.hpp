// mp::pickle::python: Python's own pickle format, for plain data, so that a C++ program
// can exchange values with a Python program (a multiprocessing peer, a pickle file).
// Mirrors Python's `pickle.dumps`/`pickle.loads` restricted to None, bool, int, float,
// str, bytes, tuple, list, dict, set and frozenset.
//
// Differences from Python, on purpose:
//   - Safe: loads never calls code. Every opcode that builds an object by calling
//     something (GLOBAL, STACK_GLOBAL, REDUCE, BUILD, INST, OBJ, NEWOBJ, NEWOBJ_EX,
//     EXT1/2/4, PERSID, BINPERSID, out-of-band buffers) throws mp::UnpicklingError,
//     with one exception: the globals CPython itself writes for plain data at protocols
//     2 and 3 are accepted as the callable of a REDUCE, and evaluated here without
//     calling anything: (_codecs, encode) with a str and "latin1" (bytes at protocol 2),
//     (__builtin__ or builtins, bytes) with no arguments (b'' at protocol 2), and
//     (__builtin__ or builtins, set / frozenset) with an empty tuple or one list (sets
//     below protocol 4). Any other (module, name) is refused when it is read.
//   - Reads protocols 2 to 5 (and the protocol 0/1 opcodes CPython still emits in them:
//     MARK, APPEND(S), SETITEM(S), PUT/GET, POP, DUP, ...); the Python 2 str opcodes
//     (STRING, BINSTRING, SHORT_BINSTRING) and protocol 0's UNICODE are refused.
//     Writes protocol 4 without frames and without memo, which CPython 3.4 and later
//     read (a value reachable twice is written twice).
//   - Shared references in a pickle (the memo) are expanded into copies; a pickle whose
//     expansion would exceed 2^24 + 64 * its size elements and string bytes (a "billion
//     laughs" pickle), or that refers to itself (a list containing itself), is refused.
//     Nesting deeper than 1000 containers is refused (throws, never overflows the stack).
//   - Bad bytes (truncated, lengths larger than the bytes that follow, unknown opcodes,
//     stack or MARK mismatches, memo indices never stored) throw mp::UnpicklingError;
//     nothing is allocated for a declared length before its bytes are present. While
//     loading, memory stays proportional to the input (about 150 bytes per opcode).
//   - Typed: loads<T> converts to T and throws mp::UnpicklingError naming both the Python
//     type found and T when they disagree, or when an int does not fit T. Lenient where
//     Python code is: a float T accepts an int, a std::vector or std::tuple accepts a
//     list or a tuple, a std::set a set or a frozenset. Dict keys and set elements are
//     taken as they come: duplicates (which CPython never writes) keep the last value.
//   - str is UTF-8 in a std::string; as CPython's "surrogatepass", lone surrogates are
//     accepted in both directions. dumps throws mp::PicklingError for a std::string
//     that is not UTF-8 (Python could not load it); send bytes as Bytes.
//
// Type mapping (dumps and loads<T>):
//   None <-> std::nullopt_t, std::monostate, an empty std::optional
//   bool <-> bool;  int <-> integer types (range-checked on load);  float <-> double, float
//   str <-> std::string;  bytes <-> Bytes, std::vector<std::byte>   (bytearray loads as bytes)
//   tuple <-> std::tuple, std::pair;  list <-> std::vector (not of std::byte)
//   dict <-> std::map, std::unordered_map;  set <-> std::set, std::unordered_set
//   anything in this list <-> Object (dynamic; ints of any size)
#pragma once

#include <mp/detail/export.hpp>

#include <concepts>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <optional>
#include <string>
#include <string_view>
#include <tuple>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

#include <mp/detail/std_shapes.hpp>
#include <mp/detail/type_name.hpp>
#include <mp/errors.hpp>

namespace mp::pickle::python {

// Python bytes: raw octets, distinct from str (std::string).
struct Bytes {
  // The octets, any values (NUL included).
  std::string data;
  friend bool operator==(const Bytes&, const Bytes&) = default;
  friend auto operator<=>(const Bytes&, const Bytes&) = default;
};

// A Python value of any of the plain types: what loads<Object> returns for data of unknown
// shape. A tree of values (no sharing, no cycles); copyable; == compares structurally
// (same kind, so 1 != 1.0 != True unlike Python; equal contents; a NaN equals a NaN;
// dicts and sets as multisets of entries, regardless of order, in quadratic time).
class MP_API Object {
 public:
  // Which Python type the value is: None, bool, int, float, str, bytes, list, tuple,
  // dict, set or frozenset.
  enum class Kind {
    none,
    boolean,
    integer,
    floating,
    str,
    bytes,
    list,
    tuple,
    dict,
    set,
    frozenset
  };

  Object() = default;  // None
  // Python's None (as Object()).
  static Object none() { return Object(); }
  // Python's True or False.
  static Object boolean(bool value);
  // A Python int from any C++ integer type but bool (use boolean()).
  template <std::integral I>
  requires(!std::is_same_v<I, bool>) static Object integer(I value) {
    if constexpr (std::is_signed_v<I>)
      return from_int64(static_cast<std::int64_t>(value));
    else
      return from_uint64(static_cast<std::uint64_t>(value));
  }
  // A Python int from a signed 64-bit value.
  static Object from_int64(std::int64_t value);
  // A Python int from an unsigned 64-bit value (held beyond int64 if needed).
  static Object from_uint64(std::uint64_t value);
  // An int of any size from its little-endian two's-complement bytes (Python's
  // int.to_bytes(n, "little", signed=True)); empty means 0.
  static Object integer_from_bytes(std::string_view little_endian_twos_complement);
  // A Python float.
  static Object floating(double value);
  // A Python str from UTF-8 text (not checked here: dumps throws mp::PicklingError for
  // text that is not UTF-8).
  static Object str(std::string utf8);
  // A Python bytes from raw octets.
  static Object bytes(std::string octets);
  // A Python list of `items`, in order.
  static Object list(std::vector<Object> items = {});
  // A Python tuple of `items`, in order.
  static Object tuple(std::vector<Object> items = {});
  // Entries in order; keys are Objects.
  static Object dict(std::vector<std::pair<Object, Object>> entries = {});
  // A Python set of `items` (kept in order; duplicates are not removed here, Python
  // drops them when it loads the pickle).
  static Object set(std::vector<Object> items = {});
  // A Python frozenset of `items`, as set().
  static Object frozenset(std::vector<Object> items = {});

  // Which Python type this is. Python: type(obj).
  Kind kind() const noexcept { return kind_; }
  // Whether this is None. Python: obj is None.
  bool is_none() const noexcept { return kind_ == Kind::none; }
  // Python's type name of this value: "NoneType", "int", "str", ...
  std::string_view type_name() const noexcept;

  // Accessors throw std::invalid_argument when the kind differs.
  bool as_bool() const;
  // True iff an int that fits std::int64_t (or std::uint64_t).
  bool fits_int64() const noexcept;
  // True iff an int that fits std::uint64_t (0 to 2**64 - 1).
  bool fits_uint64() const noexcept;
  // Throws std::out_of_range if the int does not fit.
  std::int64_t as_int64() const;
  // The same for std::uint64_t: std::invalid_argument if not an int, std::out_of_range if
  // negative or too large.
  std::uint64_t as_uint64() const;
  // Any int in decimal, as Python's str(int).
  std::string int_decimal() const;
  // Any int as minimal little-endian two's-complement bytes.
  std::string int_bytes() const;
  // A float, or an int converted to double (exact up to 2**53 in magnitude).
  double as_double() const;
  // A str's UTF-8 text.
  const std::string& as_str() const;
  // A bytes' octets.
  const std::string& as_bytes() const;
  // list, tuple, set or frozenset elements, in order.
  const std::vector<Object>& items() const;
  // The same, to change them in place. Throws std::invalid_argument for another kind.
  std::vector<Object>& items();
  // A dict's entries: keys at even, values at odd positions of the stored sequence.
  std::size_t dict_size() const;
  // The key of entry `index` (insertion order). Throws std::invalid_argument if not a
  // dict, std::out_of_range unless index < dict_size().
  const Object& dict_key(std::size_t index) const;
  // The value of entry `index`; throws as dict_key.
  const Object& dict_value(std::size_t index) const;
  // The value for `key` (== comparison), or nullptr. Linear.
  const Object* find(const Object& key) const;
  // Appends an entry to a dict (no duplicate check).
  void dict_append(Object key, Object value);

  friend MP_API bool operator==(const Object& a, const Object& b);

 private:
  Kind kind_ = Kind::none;
  bool boolean_ = false;
  bool big_ = false;  // integer held in text_ (two's complement bytes), not in small_
  std::int64_t small_ = 0;
  double floating_ = 0;
  std::string text_;           // str, bytes, big int
  std::vector<Object> items_;  // sequences; dict: key, value, key, value, ...
};

}  // namespace mp::pickle::python

namespace mp::pickle::python::detail {

// The byte-level core, compiled once (lib/src/python_pickle.cpp).
// Throws mp::PicklingError for a str that is not UTF-8 or nesting deeper than 1000.
MP_API std::string dumps_object(const Object& value);
// Throws mp::UnpicklingError as described at the top of this file.
MP_API Object loads_object(std::string_view data);
[[noreturn]] MP_API void throw_type_mismatch(const Object& found, std::string_view expected,
                                             std::string_view cpp_type);
[[noreturn]] MP_API void throw_out_of_range(const Object& found, std::string_view cpp_type);

template <class T>
struct is_optional : std::false_type {};
template <class T>
struct is_optional<std::optional<T>> : std::true_type {};
template <class T>
struct is_tuple_like : std::false_type {};
template <class... Ts>
struct is_tuple_like<std::tuple<Ts...>> : std::true_type {};
template <class A, class B>
struct is_tuple_like<std::pair<A, B>> : std::true_type {};
template <class T>
struct is_vector : std::false_type {};
template <class T, class A>
struct is_vector<std::vector<T, A>> : std::true_type {};
// std::map and std::unordered_map; std::set and std::unordered_set (std_shapes.hpp).
template <class T>
struct is_map : std::bool_constant<mp::detail::std_map_like<T> && mp::detail::std_unique_keys<T>> {
};
template <class T>
struct is_set : std::bool_constant<mp::detail::std_set_like<T> && mp::detail::std_unique_keys<T>> {
};

template <class T>
inline constexpr bool always_false = false;

template <class T>
Object to_object(const T& value) {
  if constexpr (std::is_same_v<T, Object>) {
    return value;
  } else if constexpr (std::is_same_v<T, std::nullopt_t> || std::is_same_v<T, std::monostate>) {
    return Object();
  } else if constexpr (std::is_same_v<T, bool>) {
    return Object::boolean(value);
  } else if constexpr (std::is_integral_v<T>) {
    return Object::integer(value);
  } else if constexpr (std::is_floating_point_v<T>) {
    return Object::floating(static_cast<double>(value));
  } else if constexpr (std::is_same_v<T, std::string> || std::is_same_v<T, std::string_view>) {
    return Object::str(std::string(value));
  } else if constexpr (std::is_same_v<T, Bytes>) {
    return Object::bytes(value.data);
  } else if constexpr (std::is_same_v<T, std::vector<std::byte>>) {
    return Object::bytes(std::string(reinterpret_cast<const char*>(value.data()), value.size()));
  } else if constexpr (is_optional<T>::value) {
    return value ? to_object(*value) : Object();
  } else if constexpr (is_tuple_like<T>::value) {
    std::vector<Object> items;
    std::apply([&](const auto&... element) { (items.push_back(to_object(element)), ...); }, value);
    return Object::tuple(std::move(items));
  } else if constexpr (is_vector<T>::value) {
    std::vector<Object> items;
    items.reserve(value.size());
    for (const auto& element : value) items.push_back(to_object(element));
    return Object::list(std::move(items));
  } else if constexpr (is_map<T>::value) {
    Object out = Object::dict();
    for (const auto& [key, mapped] : value) out.dict_append(to_object(key), to_object(mapped));
    return out;
  } else if constexpr (is_set<T>::value) {
    std::vector<Object> items;
    items.reserve(value.size());
    for (const auto& element : value) items.push_back(to_object(element));
    return Object::set(std::move(items));
  } else {
    static_assert(always_false<T>,
                  "mp::pickle::python: no Python type for T (see the mapping in "
                  "mp/python_pickle.hpp); convert it to an Object yourself");
  }
}

template <class T>
void from_object(const Object& object, T& out) {
  using K = Object::Kind;
  const auto mismatch = [&](std::string_view expected) {
    throw_type_mismatch(object, expected, mp::detail::type_name<T>());
  };
  if constexpr (std::is_same_v<T, Object>) {
    out = object;
  } else if constexpr (std::is_same_v<T, std::nullopt_t>) {
    if (!object.is_none()) mismatch("None");
  } else if constexpr (std::is_same_v<T, std::monostate>) {
    if (!object.is_none()) mismatch("None");
    out = {};
  } else if constexpr (std::is_same_v<T, bool>) {
    if (object.kind() != K::boolean) mismatch("bool");
    out = object.as_bool();
  } else if constexpr (std::is_integral_v<T>) {
    if (object.kind() != K::integer) mismatch("int");
    if constexpr (std::is_signed_v<T>) {
      if (!object.fits_int64()) throw_out_of_range(object, mp::detail::type_name<T>());
      const std::int64_t wide = object.as_int64();
      if (wide < std::numeric_limits<T>::min() || wide > std::numeric_limits<T>::max())
        throw_out_of_range(object, mp::detail::type_name<T>());
      out = static_cast<T>(wide);
    } else {
      if (!object.fits_uint64()) throw_out_of_range(object, mp::detail::type_name<T>());
      const std::uint64_t wide = object.as_uint64();
      if (wide > std::numeric_limits<T>::max())
        throw_out_of_range(object, mp::detail::type_name<T>());
      out = static_cast<T>(wide);
    }
  } else if constexpr (std::is_floating_point_v<T>) {
    if (object.kind() != K::floating && object.kind() != K::integer) mismatch("float");
    out = static_cast<T>(object.as_double());
  } else if constexpr (std::is_same_v<T, std::string>) {
    if (object.kind() != K::str) mismatch("str");
    out = object.as_str();
  } else if constexpr (std::is_same_v<T, Bytes>) {
    if (object.kind() != K::bytes) mismatch("bytes");
    out.data = object.as_bytes();
  } else if constexpr (std::is_same_v<T, std::vector<std::byte>>) {
    if (object.kind() != K::bytes) mismatch("bytes");
    const std::string& octets = object.as_bytes();
    out.resize(octets.size());
    for (std::size_t i = 0; i < octets.size(); ++i) out[i] = static_cast<std::byte>(octets[i]);
  } else if constexpr (is_optional<T>::value) {
    if (object.is_none()) {
      out.reset();
    } else {
      typename T::value_type value{};
      from_object(object, value);
      out = std::move(value);
    }
  } else if constexpr (is_tuple_like<T>::value) {
    if (object.kind() != K::tuple && object.kind() != K::list) mismatch("tuple");
    const auto& items = object.items();
    if (items.size() != std::tuple_size_v<T>)
      mismatch("tuple of " + std::to_string(std::tuple_size_v<T>) + " elements");
    std::size_t index = 0;
    std::apply([&](auto&... element) { (from_object(items[index++], element), ...); }, out);
  } else if constexpr (is_vector<T>::value) {
    if (object.kind() != K::list && object.kind() != K::tuple) mismatch("list");
    out.clear();
    out.reserve(object.items().size());
    for (const Object& item : object.items()) {
      typename T::value_type value{};
      from_object(item, value);
      out.push_back(std::move(value));
    }
  } else if constexpr (is_map<T>::value) {
    if (object.kind() != K::dict) mismatch("dict");
    out.clear();
    for (std::size_t i = 0; i < object.dict_size(); ++i) {
      typename T::key_type key{};
      typename T::mapped_type mapped{};
      from_object(object.dict_key(i), key);
      from_object(object.dict_value(i), mapped);
      out.insert_or_assign(std::move(key), std::move(mapped));
    }
  } else if constexpr (is_set<T>::value) {
    if (object.kind() != K::set && object.kind() != K::frozenset) mismatch("set");
    out.clear();
    for (const Object& item : object.items()) {
      typename T::value_type value{};
      from_object(item, value);
      out.insert(std::move(value));
    }
  } else {
    static_assert(always_false<T>,
                  "mp::pickle::python: no Python type for T (see the mapping in "
                  "mp/python_pickle.hpp); load an Object and convert it yourself");
  }
}

}  // namespace mp::pickle::python::detail

namespace mp::pickle::python {

// The protocol 4 pickle of `value`, which CPython's pickle.loads reads back as the
// corresponding Python value (see the mapping above). Compile-time error for a type
// without a Python counterpart. Throws mp::PicklingError for a std::string that is not
// UTF-8 or an Object nested deeper than 1000. Python: pickle.dumps(value, protocol=4).
template <class T>
std::string dumps(const T& value) {
  if constexpr (std::is_same_v<T, Object>)
    return detail::dumps_object(value);
  else
    return detail::dumps_object(detail::to_object(value));
}

// The value pickled in `data` (protocols 2 to 5, one pickle, nothing after STOP), as T.
// Never calls code. Throws mp::UnpicklingError for bad or hostile bytes, a refused
// opcode or global, or a value that is not a T (the message names both).
// Python: pickle.loads(data), restricted to plain data.
template <class T = Object>
T loads(std::string_view data) {
  Object object = detail::loads_object(data);
  if constexpr (std::is_same_v<T, Object>) {
    return object;
  } else if constexpr (std::is_same_v<T, std::nullopt_t>) {
    if (!object.is_none()) detail::throw_type_mismatch(object, "None", "std::nullopt_t");
    return std::nullopt;
  } else {
    T value{};
    detail::from_object(object, value);
    return value;
  }
}

}  // namespace mp::pickle::python
