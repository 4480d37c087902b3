// Compile-time type names and the type fingerprint that mp::pickle writes in its header.
// Internal to mp: not part of the public API.
#pragma once

#include <cstdint>
#include <string_view>

namespace mp::detail {

// GCC and Clang spell the template argument inside __PRETTY_FUNCTION__:
//   "constexpr const char* mp::detail::pretty_function_of() [with T = std::vector<int>]".
// The return type is a plain `const char*` on purpose: an alias (std::string_view) would
// add "; std::string_view = ..." after the type.
template <class T>
constexpr const char* pretty_function_of() noexcept {
  return __PRETTY_FUNCTION__;
}

// The name the compiler gives T, e.g. "std::vector<int>" or "main()::<lambda()>".
// Two lambdas with the same signature in the same function may share a name.
template <class T>
constexpr std::string_view type_name() noexcept {
  constexpr std::string_view pretty = pretty_function_of<T>();
  constexpr std::size_t begin = pretty.find("T = ") + 4;
  constexpr std::size_t end = pretty.rfind(']');
  static_assert(pretty.find("T = ") != std::string_view::npos && end > begin,
                "mp: unexpected __PRETTY_FUNCTION__ format");
  return pretty.substr(begin, end - begin);
}

// 32-bit FNV-1a.
constexpr std::uint32_t fnv1a32(std::string_view text) noexcept {
  std::uint32_t hash = 2166136261u;
  for (char c : text) {
    hash ^= static_cast<unsigned char>(c);
    hash *= 16777619u;
  }
  return hash;
}

// Identifies T inside one program: a pickle of T carries it and loads<U> compares it.
template <class T>
inline constexpr std::uint32_t type_fingerprint = fnv1a32(type_name<T>());

// True for types the standard library or cereal define, which the generic rules for
// user types (raw bytes, empty classes) must leave alone.
template <class T>
inline constexpr bool is_library_type =
    type_name<T>().starts_with("std::") || type_name<T>().starts_with("cereal::");

}  // namespace mp::detail
