// Compile-time type names and the type fingerprint that mp::pickle writes in its header.
// Internal to mp: not part of the public API.
#pragma once

#include <mp/detail/export.hpp>

#include <cstddef>
#include <cstdint>
#include <iterator>
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

constexpr bool is_identifier_char(char c) noexcept {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
}
constexpr bool is_digit(char c) noexcept { return c >= '0' && c <= '9'; }

// Writes the canonical spelling of a type name, one that GCC's and Clang's
// __PRETTY_FUNCTION__ spellings of one type share, to `sink` (sink.put(char) for each
// character) and tells whether the name holds a part that does not identify a type across
// translation units (see has_address_identity below). The canonical spelling:
//   - drops the standard library's default template arguments (", std::allocator<...>",
//     ", std::char_traits<...>", ...), which GCC spells out or not depending on where the
//     type was first named in a translation unit;
//   - drops libstdc++'s inline namespaces (std::__cxx11::, std::chrono::_V2::), which GCC
//     prints and Clang does not;
//   - spells the builtin integer and floating types one way ("long" for GCC's "long int",
//     "unsigned long" for "long unsigned int", "unsigned __int128" for "__int128
//     unsigned");
//   - drops integer literal suffixes in template arguments (Clang's 5UL is GCC's 5);
//   - keeps a space only between two words ("const char*", not "const char *";
//     "std::vector<std::vector<long>>", not "> >"; "int(long)", not "int (long)");
//   - spells the anonymous namespace "(anonymous namespace)" (GCC: "{anonymous}").
// Lambdas, unnamed types and local classes have no common spelling: they are what the
// returned flag is for.
template <class Sink>
constexpr bool canonicalize_type_name(std::string_view name, Sink& sink) noexcept {
  constexpr std::string_view kDefaults[] = {
      ", std::allocator<", ", std::char_traits<",    ", std::less<",  ", std::hash<",
      ", std::equal_to<",  ", std::default_delete<", ", std::deque<",
  };
  constexpr std::string_view kInlineNamespaces[] = {"__cxx11", "_V2", "__1"};
  // Words that are not names of declared types.
  constexpr std::string_view kKeywords[] = {
      "const",    "volatile", "void",  "bool",  "float",    "wchar_t",  "char8_t",
      "char16_t", "char32_t", "true",  "false", "nullptr",  "auto",     "decltype",
      "struct",   "class",    "union", "enum",  "operator", "noexcept", "__restrict",
  };
  // Spellings of a name part that is not the same entity in every translation unit.
  constexpr std::string_view kLocalMarkers[] = {
      "{anonymous}", "(anonymous namespace)",
      "(anonymous ", "(unnamed ",
      "(lambda at ", "<lambda",
      "<unnamed ",   ")::",
  };
  bool local = false;
  bool after_word = false;  // the last character written ends a word
  const auto put_word = [&](std::string_view word) {
    if (after_word) sink.put(' ');
    for (char c : word) sink.put(c);
    after_word = true;
  };
  const auto put_punct = [&](std::string_view text) {
    for (char c : text) sink.put(c);
    after_word = false;
  };
  for (std::size_t at = 0; at < name.size();) {
    const std::string_view rest = name.substr(at);
    for (std::string_view marker : kLocalMarkers)
      if (rest.starts_with(marker)) local = true;
    const char c = name[at];
    if (c == ',') {
      bool skipped = false;
      for (std::string_view prefix : kDefaults) {
        if (rest.starts_with(prefix)) {
          at = template_argument_end(name, at + 2);
          skipped = true;
          break;
        }
      }
      if (skipped) continue;
    }
    if (rest.starts_with("{anonymous}") || rest.starts_with("(anonymous namespace)")) {
      put_punct("(anonymous namespace)");
      at += rest[0] == '{' ? 11 : 21;
      continue;
    }
    if (c == ' ') {
      ++at;
      continue;
    }
    if (is_digit(c)) {  // a number: digits (and hex letters), then a suffix to drop
      std::size_t end = at;
      while (end < name.size() && is_identifier_char(name[end])) ++end;
      std::size_t digits_end = at;
      const bool hex = rest.starts_with("0x") || rest.starts_with("0X");
      if (hex) digits_end += 2;
      while (digits_end < end &&
             (is_digit(name[digits_end]) ||
              (hex && ((name[digits_end] >= 'a' && name[digits_end] <= 'f') ||
                       (name[digits_end] >= 'A' && name[digits_end] <= 'F'))))) {
        ++digits_end;
      }
      bool suffix = true;
      for (std::size_t i = digits_end; i < end; ++i) {
        const char s = name[i];
        if (s != 'u' && s != 'U' && s != 'l' && s != 'L') suffix = false;
      }
      put_word(name.substr(at, suffix ? digits_end - at : end - at));
      at = end;
      continue;
    }
    if (!is_identifier_char(c)) {
      put_punct(name.substr(at, 1));
      ++at;
      continue;
    }
    // A word. First, a run of builtin arithmetic type words ("long unsigned int"): how
    // many times each appears in it.
    constexpr std::string_view kArithmeticWords[] = {"unsigned", "signed", "short",    "long",
                                                     "int",      "char",   "__int128", "double"};
    int counts[std::size(kArithmeticWords)] = {};
    std::size_t run_end = at;
    for (std::size_t next = at;;) {
      std::size_t end = next;
      while (end < name.size() && is_identifier_char(name[end])) ++end;
      const std::string_view word = name.substr(next, end - next);
      std::size_t which = 0;
      while (which < std::size(kArithmeticWords) && kArithmeticWords[which] != word) ++which;
      if (which == std::size(kArithmeticWords)) break;
      ++counts[which];
      run_end = end;
      if (end + 1 < name.size() && name[end] == ' ' && is_identifier_char(name[end + 1])) {
        next = end + 1;
      } else {
        break;
      }
    }
    if (run_end != at) {
      const int is_unsigned = counts[0], is_signed = counts[1], shorts = counts[2],
                longs = counts[3], chars = counts[5], int128s = counts[6], doubles = counts[7];
      const std::string_view sign = is_unsigned ? "unsigned" : "";
      if (sign.size() != 0 && chars == 0 && doubles == 0) put_word(sign);
      if (doubles) {
        if (longs) put_word("long");
        put_word("double");
      } else if (chars) {
        if (is_unsigned) put_word("unsigned");
        if (is_signed) put_word("signed");
        put_word("char");
      } else if (int128s) {
        put_word("__int128");
      } else if (shorts) {
        put_word("short");
      } else if (longs) {
        put_word("long");
        if (longs > 1) put_word("long");
      } else {
        put_word("int");
      }
      at = run_end;
      continue;
    }
    std::size_t end = at;
    while (end < name.size() && is_identifier_char(name[end])) ++end;
    const std::string_view word = name.substr(at, end - at);
    const bool qualified_before = at >= 2 && name.substr(at - 2, 2) == "::";
    const bool qualified_after = name.substr(end).starts_with("::");
    if (qualified_before && qualified_after) {
      bool inline_namespace = false;
      for (std::string_view skip : kInlineNamespaces)
        if (word == skip) inline_namespace = true;
      if (inline_namespace) {
        at = end + 2;
        continue;
      }
    }
    if (!qualified_before && !qualified_after) {
      // An unqualified name: a class of the global namespace, or (Clang) a local class,
      // which Clang prints without its function.
      bool keyword = false;
      for (std::string_view skip : kKeywords)
        if (word == skip) keyword = true;
      if (!keyword && !word.starts_with("__")) local = true;
    }
    put_word(word);
    at = end;
  }
  return local;
}

struct Fnv1a32Sink {
  std::uint32_t hash = 2166136261u;
  constexpr void put(char c) noexcept {
    hash ^= static_cast<unsigned char>(c);
    hash *= 16777619u;
  }
};

// FNV-1a of the canonical spelling of a type name (canonicalize_type_name), so that one
// type has one fingerprint whichever compiler (GCC or Clang) built the code that names it
// and wherever it was first named in a translation unit.
constexpr std::uint32_t canonical_fingerprint(std::string_view name) noexcept {
  Fnv1a32Sink sink;
  canonicalize_type_name(name, sink);
  return sink.hash;
}

// Identifies T by name: a pickle of T carries it (or, for the types below, an identity
// derived from an address) and loads<U> compares it.
template <class T>
inline constexpr std::uint32_t type_fingerprint = canonical_fingerprint(type_name<T>());

struct NullSink {
  constexpr void put(char) noexcept {}
};
constexpr bool names_local_type(std::string_view name) noexcept {
  NullSink sink;
  return canonicalize_type_name(name, sink);
}

// True for types whose name does not identify them across translation units: types in an
// anonymous namespace (two .cpp files may each define their own `Msg`), lambdas, unnamed
// and local classes (Clang prints a local class without its function), and, because a
// local class cannot be told from one, classes of the global namespace; and the
// templates instantiated with any of those. mp::pickle identifies them by the address of
// type_anchor<T> instead of by name (pickle_identity in mp/pickle.hpp).
template <class T>
inline constexpr bool has_address_identity = names_local_type(type_name<T>());

// One object per type of the program: for a type with internal linkage (an anonymous
// namespace's), one per translation unit; for any other type, one per module, merged by
// the linker. Its offset in its module is the type's identity across the processes that
// run that module (mp::pickle's type check for has_address_identity types).
template <class T>
inline char type_anchor = 0;

// A 32-bit identity of the object at `anchor`: a hash of the id of the module holding it
// and its offset from that module's load base (lib/src/pickle.cpp). Equal in every process
// running the same binary.
MP_API std::uint32_t address_fingerprint(const void* anchor) noexcept;

// True for types the standard library or cereal define, which the generic rules for
// user types (raw bytes, empty classes) must leave alone.
template <class T>
inline constexpr bool is_library_type =
    type_name<T>().starts_with("std::") || type_name<T>().starts_with("cereal::");

}  // namespace mp::detail
