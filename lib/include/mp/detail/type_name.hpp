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

// The end of the template argument that starts at `at` in a type name: the index of the
// ',' or '>' that closes it (nested <...> and (...) skipped).
constexpr std::size_t template_argument_end(std::string_view name, std::size_t at) noexcept {
  int depth = 0;
  for (; at < name.size(); ++at) {
    const char c = name[at];
    if (c == '<' || c == '(') {
      ++depth;
    } else if (c == '>' || c == ')') {
      if (depth == 0) return at;
      --depth;
    } else if (c == ',' && depth == 0) {
      return at;
    }
  }
  return at;
}

// FNV-1a of a type name without the default template arguments of the standard library
// (", std::allocator<...>", ", std::char_traits<...>", ", std::less<...>", ...) and
// without the space GCC puts in "> >". GCC spells those arguments out or not depending
// on where the type was first named in a translation unit (std::vector<long int> in
// one .cpp file, std::vector<long int, std::allocator<long int> > in another), so the
// plain spelling would give one type two fingerprints in one program.
constexpr std::uint32_t canonical_fingerprint(std::string_view name) noexcept {
  constexpr std::string_view kDefaults[] = {
      ", std::allocator<", ", std::char_traits<",    ", std::less<",  ", std::hash<",
      ", std::equal_to<",  ", std::default_delete<", ", std::deque<",
  };
  std::uint32_t hash = 2166136261u;
  for (std::size_t at = 0; at < name.size();) {
    bool skipped = false;
    if (name[at] == ',') {
      for (std::string_view prefix : kDefaults) {
        if (name.substr(at, prefix.size()) == prefix) {
          at = template_argument_end(name, at + 2);
          skipped = true;
          break;
        }
      }
    }
    if (skipped) continue;
    if (name[at] == ' ' && at + 1 < name.size() && name[at + 1] == '>') {
      ++at;
      continue;
    }
    hash ^= static_cast<unsigned char>(name[at]);
    hash *= 16777619u;
    ++at;
  }
  return hash;
}

// Identifies T inside one program: a pickle of T carries it and loads<U> compares it.
template <class T>
inline constexpr std::uint32_t type_fingerprint = canonical_fingerprint(type_name<T>());

// True for types the standard library or cereal define, which the generic rules for
// user types (raw bytes, empty classes) must leave alone.
template <class T>
inline constexpr bool is_library_type =
    type_name<T>().starts_with("std::") || type_name<T>().starts_with("cereal::");

}  // namespace mp::detail
