// mp::pickle: turning values into bytes and back, so that arguments, results and
// functions cross process boundaries. Mirrors Python's `pickle` (dumps/loads,
// PicklingError/UnpicklingError) as used by `multiprocessing.reduction`. Python's own
// pickle format, to exchange plain data with Python programs, is <mp/python_pickle.hpp>.
//
// Differences from Python, on purpose:
//   - Typed: loads<T>(bytes) says which type it expects. The bytes carry a fingerprint of
//     the type's name and loads checks it, so loading another type's pickle fails cleanly
//     instead of producing a wrong value. The fingerprint is the same whichever compiler
//     (GCC or Clang) built each side. Types that a name does not identify (those of an
//     anonymous namespace, whose name two .cpp files may both use, lambdas, local classes
//     and classes of the global namespace) are told apart by the offset of an object
//     unique to the type in the binary instead: distinct in each translation unit, the
//     same in every process running that binary.
//   - A type that cannot be pickled is a compile-time error naming the type and saying
//     what to add (Python raises at run time). Built in: arithmetic types, enums,
//     std::string, vector, array, deque, list, (unordered_)(multi)map/set, pair, tuple,
//     optional, variant, monostate, chrono durations and time points, complex,
//     filesystem::path; plain structs (below, copied as raw bytes); empty classes such as
//     captureless lambdas (zero bytes); function pointers; and any type with a
//     cereal-style `template <class Archive> void serialize(Archive& ar)` member (or
//     save/load members). Not picklable: raw data pointers, std::string_view and
//     references (they would dangle in the other process), capturing lambdas, unions.
//   - A third-party type you cannot add members to: write free functions
//       `template <class Archive> void save(Archive& ar, const their::T& value);`
//       `template <class Archive> void load(Archive& ar, their::T& value);`
//     (or one `void serialize(Archive& ar, their::T& value)`), calling ar(...) on what
//     rebuilds the value, in T's own namespace (`their`: found by argument-dependent
//     lookup), declared before the first dumps/loads of T. For a type of a namespace you
//     may not add to (std), put them in namespace cereal instead. T must be default
//     constructible and movable; load() fills a default-constructed T.
//   - A plain struct is a trivially copyable aggregate without serialization of its own
//     whose bases and members (and elements of C array members) are all arithmetic types,
//     enums, plain structs, or std::array, std::optional, chrono durations or time points
//     of them, recursively (bit-fields included). Only then do its bytes mean the same in
//     another process. A pointer, std::string_view, function pointer, member pointer,
//     union or class with its own serialize() inside it is a compile-time error naming
//     that member's type: give the struct serialize() (there, a function pointer member
//     pickles as a code reference). A class that is not an aggregate (private members,
//     constructors) cannot be inspected, so it needs serialize() whatever it holds; nor
//     can a struct of more than 4096 members and C array elements (use std::array).
//   - Values nested deeper than a fixed bound (detail::kMaxPickleNesting, 10,000 nested
//     `ar(...)` calls: 4,999 levels of `struct Node { std::vector<Node> children; }`)
//     throw PicklingError or UnpicklingError instead of overflowing the stack (Python
//     raises RecursionError).
//   - A function pointer pickles as (module, offset): the module's GNU build id and the
//     offset from its load address, so it resolves in a spawned child running the same
//     binary at another address (Python pickles functions by qualified name). Loading it
//     in a process that runs another binary throws UnpicklingError.
//   - Not a storage or interchange format: the bytes are for processes of one program
//     (same build, same machine), with native byte order, like the pipes they cross.
//     There are no protocol versions and no shared references (Python's memo): a value
//     reachable twice is pickled twice.
//   - Bad bytes (truncated, corrupt, another type's pickle, absurd sizes, trailing bytes,
//     a bool other than 0/1, a variant index out of range) throw UnpicklingError, never
//     crash: a container may claim at most as many elements as bytes are left, so what
//     loads allocates stays proportional to its input (a vector, deque or list of an empty
//     type, such as std::monostate, spends a byte per element for this). Enum values and the
//     bytes of plain structs are copied unchecked (give an enum a fixed underlying type, `enum E :
//     int`, so that every value is valid). As with Python, only unpickle bytes from processes you
//     trust: a function pointer in the bytes will be called by whoever asked for one.
//   - dumps/loads may run on any thread at once; values made of built-in types only reuse
//     a per-thread archive, so pickling an int costs a few nanoseconds.
//
// Format: an 8-byte header (magic "mp", format version 1, a zero byte, the 32-bit type
// fingerprint) followed by the value's encoding (see mp/detail/pickle_archive.hpp).
#pragma once

#include <mp/detail/export.hpp>

#include <array>
#include <bit>
#include <concepts>
#include <cstdint>
#include <cstring>
#include <mp/detail/pickle_traits.hpp>
#include <mp/detail/type_name.hpp>
#include <mp/errors.hpp>
#include <stdexcept>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

namespace mp::detail {

inline constexpr unsigned char kPickleMagic0 = 'm';
inline constexpr unsigned char kPickleMagic1 = 'p';
inline constexpr unsigned char kPickleVersion = 1;
inline constexpr std::size_t kPickleHeaderSize = 8;

// The header of a pickle of a type with this fingerprint, as an 8-byte word in memory
// order.
constexpr std::uint64_t make_pickle_header(std::uint32_t fingerprint) noexcept {
  return std::bit_cast<std::uint64_t>(std::array<unsigned char, 8>{
      kPickleMagic0, kPickleMagic1, kPickleVersion, 0, static_cast<unsigned char>(fingerprint),
      static_cast<unsigned char>(fingerprint >> 8), static_cast<unsigned char>(fingerprint >> 16),
      static_cast<unsigned char>(fingerprint >> 24)});
}

// The header of a pickle of T: its type fingerprint (a compile-time constant, the same
// whichever compiler built the code), or, for a type that its name does not identify (an
// anonymous namespace's, a lambda, a local class), the identity of its type_anchor, the
// same in every process running this binary.
template <class T>
std::uint64_t pickle_header() noexcept {
  if constexpr (has_address_identity<T>) {
    static const std::uint64_t header = make_pickle_header(address_fingerprint(&type_anchor<T>));
    return header;
  } else {
    return std::integral_constant<std::uint64_t, make_pickle_header(type_fingerprint<T>)>::value;
  }
}

// Cold paths, compiled once in lib/src/pickle.cpp.
// Explains why `data` does not start with `expected_header` and throws UnpicklingError.
[[noreturn]] MP_API void throw_bad_header(std::string_view data, std::uint64_t expected_header,
                                          std::string_view type);
[[noreturn]] MP_API void throw_trailing_bytes(std::size_t count, std::string_view type);
// Inside a catch block: rethrows cereal::Exception as PicklingError, anything else as is.
[[noreturn]] MP_API void rethrow_pickling_error(std::string_view type);
// Inside a catch block: rethrows cereal::Exception, std::length_error and std::bad_alloc
// (bogus sizes) as UnpicklingError, anything else (a user's load()) as is.
[[noreturn]] MP_API void rethrow_unpickling_error(std::string_view type);

// The bytes after the header of a pickle of T; throws UnpicklingError (throw_bad_header)
// unless `data` starts with that header.
template <class T>
std::string_view pickle_body(std::string_view data) {
  std::uint64_t header = 0;
  const std::uint64_t expected_header = pickle_header<T>();
  if (data.size() >= sizeof header) std::memcpy(&header, data.data(), sizeof header);
  if (data.size() < sizeof header || header != expected_header) [[unlikely]]
    throw_bad_header(data, expected_header, type_name<T>());
  return data.substr(sizeof header);
}

// Bytes a fresh pickle of `obj` will need, when that is cheap to know.
template <class T>
std::size_t pickle_size_hint(const T& obj) {
  if constexpr (std::is_arithmetic_v<T>) {
    return kPickleHeaderSize + sizeof(T);
  } else if constexpr (std::is_pointer_v<T>) {  // a function: id size, id (~60), offset
    return kPickleHeaderSize + 96;
  } else if constexpr (requires {
                         typename T::value_type;
                         obj.size();
                         obj.data();
                       }) {
    if constexpr (std::is_arithmetic_v<typename T::value_type>)  // string, vector<int>
      return kPickleHeaderSize + sizeof(std::uint64_t) +
             obj.size() * sizeof(typename T::value_type);
    else
      return 0;
  } else {
    return 0;
  }
}

}  // namespace mp::detail

namespace mp::pickle {

// True iff dump/dumps/loads accept T (recursively for the standard containers).
// Never a hard error: usable in `if constexpr` and requires-clauses.
template <class T>
concept picklable = detail::pickle_traits<T>::value;

// Appends the pickle of `obj` to `out` (Python: pickle.dump into a stream).
// Compile-time error if T is not picklable. Throws what the type's serialize()/save()
// throws (unchanged; `out` is then restored to its previous size), mp::PicklingError for
// a function pointer outside any loaded module, std::bad_alloc.
template <class T>
void dump(const T& obj, std::string& out) {
  if constexpr (!picklable<T>) {
    detail::report_unpicklable<typename detail::pickle_traits<T>::culprit>();
  } else {
    const std::size_t old_size = out.size();
    try {
      const std::uint64_t header = detail::pickle_header<T>();
      out.append(reinterpret_cast<const char*>(&header), sizeof header);
      detail::ArchiveLease<detail::PickleOutputArchive, detail::pickle_traits<T>::builtin,
                           std::string>
          archive(out);
      (*archive)(obj);
    } catch (...) {
      out.resize(old_size);
      detail::rethrow_pickling_error(detail::type_name<T>());
    }
  }
}

// The pickle of `obj` (Python: pickle.dumps). Throws as dump().
template <class T>
std::string dumps(const T& obj) {
  std::string out;
  if constexpr (picklable<T>) {
    if (const std::size_t hint = detail::pickle_size_hint(obj); hint > out.capacity())
      out.reserve(hint);
  }
  pickle::dump(obj, out);  // qualified: a user's dump() found by ADL must not compete
  return out;
}

// Loads the value pickled in `data` into `value`, reusing what storage `value` has (a
// vector's or string's capacity): for decoding many pickles of one type in a loop.
// Throws as loads(); `value` is then valid but unspecified.
template <class T>
void load(std::string_view data, T& value) {
  if constexpr (!picklable<T>) {
    detail::report_unpicklable<typename detail::pickle_traits<T>::culprit>();
  } else {
    std::string_view body = detail::pickle_body<T>(data);
    try {
      detail::ArchiveLease<detail::PickleInputArchive, detail::pickle_traits<T>::builtin,
                           std::string_view>
          archive(body);
      (*archive)(value);
      if ((*archive).remaining() != 0) [[unlikely]]
        detail::throw_trailing_bytes((*archive).remaining(), detail::type_name<T>());
    } catch (const UnpicklingError&) {
      throw;
    } catch (...) {
      detail::rethrow_unpickling_error(detail::type_name<T>());
    }
  }
}

// The value pickled in `data`, which must be exactly one pickle of T (Python:
// pickle.loads). Compile-time error if T is not picklable. Throws mp::UnpicklingError
// if `data` is not a complete, valid pickle of T (wrong type, truncated, corrupt,
// trailing bytes, sizes that cannot be allocated), or if a function pointer in it names
// code this process does not have. Other exceptions from a user type's load() or
// serialize() pass through unchanged (cereal::Exception, std::length_error and
// std::bad_alloc become UnpicklingError).
template <class T>
T loads(std::string_view data) {
  if constexpr (!picklable<T>) {
    detail::report_unpicklable<typename detail::pickle_traits<T>::culprit>();
    throw std::logic_error("unreachable");
  } else {
    T value{};
    pickle::load(data, value);  // qualified: a user's free load(ar, T&) is found by ADL
    return value;
  }
}

}  // namespace mp::pickle
