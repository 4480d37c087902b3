// Which types mp::pickle accepts (mp::pickle::picklable), decided recursively through
// the standard containers so that std::vector<NotPicklable> is rejected up front, and
// which element to blame in the compile-time error. Internal to mp.
#pragma once

#include <mp/detail/export.hpp>

#include <array>
#include <mp/detail/chrono.hpp>
#include <mp/detail/pickle_archive.hpp>
#include <optional>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

namespace mp::detail {

// Rules for a type that is not one of the standard templates listed below.
template <class T>
consteval bool leaf_picklable() {
  if constexpr (!std::is_object_v<T> || std::is_const_v<T> || std::is_volatile_v<T> ||
                std::is_array_v<T>) {
    return false;  // references, functions, void, cv-qualified (cannot be loaded into), C arrays
  } else if constexpr (std::is_pointer_v<T>) {
    return std::is_function_v<std::remove_pointer_t<T>>;  // data pointers would dangle
  } else if constexpr (std::is_member_pointer_v<T> || std::is_null_pointer_v<T>) {
    return false;
  } else if constexpr (std::is_arithmetic_v<T> || std::is_enum_v<T>) {
    return true;
  } else if constexpr (!std::is_default_constructible_v<T> || !std::is_move_constructible_v<T> ||
                       !std::is_move_assignable_v<T>) {
    return false;  // loads() default-constructs, then fills in and moves
  } else if constexpr (raw_bytes_class<T> || empty_class<T>) {
    return true;
  } else {
    // serialize()/save()/load() of the user's, or cereal's support for another std type.
    return cereal::traits::is_output_serializable<T, PickleOutputArchive>::value &&
           cereal::traits::is_input_serializable<T, PickleInputArchive>::value;
  }
}

// Whether pickling T runs no user serialization code (only mp's and cereal's own), so
// that the thread's shared archive can be used (see ArchiveLease).
template <class T>
consteval bool leaf_builtin() {
  if constexpr (!leaf_picklable<T>()) {
    return false;
  } else if constexpr (std::is_class_v<T> || std::is_union_v<T>) {
    return raw_bytes_class<T> || empty_class<T>;
  } else {
    return true;  // arithmetic, enum, function pointer
  }
}

template <class T>
struct pickle_traits {
  static constexpr bool value = leaf_picklable<T>();
  static constexpr bool builtin = leaf_builtin<T>();
  // The type to name when T cannot be pickled.
  using culprit = T;
};

// The culprit among Elements (the first that cannot be pickled), else Self.
template <class Self, class... Elements>
struct first_culprit {
  using type = Self;
};
template <class Self, class Head, class... Rest>
struct first_culprit<Self, Head, Rest...> {
  using type =
      std::conditional_t<pickle_traits<Head>::value, typename first_culprit<Self, Rest...>::type,
                         typename pickle_traits<Head>::culprit>;
};

// A standard template is picklable when all its elements are.
template <class Self, class... Elements>
struct all_elements {
  static constexpr bool value =
      (pickle_traits<Elements>::value && ...) && std::is_default_constructible_v<Self>;
  static constexpr bool builtin = value && (pickle_traits<Elements>::builtin && ...);
  using culprit = typename first_culprit<Self, Elements...>::type;
};

template <class C, class Traits, class Alloc>
struct pickle_traits<std::basic_string<C, Traits, Alloc>> {
  static constexpr bool value = std::is_arithmetic_v<C>;
  static constexpr bool builtin = value;
  using culprit = std::basic_string<C, Traits, Alloc>;
};
template <class T, class A>
struct pickle_traits<std::vector<T, A>> : all_elements<std::vector<T, A>, T> {};
template <class T, std::size_t N>
struct pickle_traits<std::array<T, N>> : all_elements<std::array<T, N>, T> {};
// deque and list, the maps and the sets, recognized by their shape (pickle_archive.hpp).
template <class T>
requires std_node_sequence<T>
struct pickle_traits<T> : all_elements<T, typename T::value_type> {
};
template <class T>
requires std_map_like<T>
struct pickle_traits<T> : all_elements<T, typename T::key_type, typename T::mapped_type> {
};
template <class T>
requires std_set_like<T>
struct pickle_traits<T> : all_elements<T, typename T::key_type> {
};
template <class A, class B>
struct pickle_traits<std::pair<A, B>> : all_elements<std::pair<A, B>, A, B> {};
template <class... Ts>
struct pickle_traits<std::tuple<Ts...>> : all_elements<std::tuple<Ts...>, Ts...> {};
template <class T>
struct pickle_traits<std::optional<T>> : all_elements<std::optional<T>, T> {};
template <class... Ts>
struct pickle_traits<std::variant<Ts...>> : all_elements<std::variant<Ts...>, Ts...> {};
template <>
struct pickle_traits<std::monostate> : all_elements<std::monostate> {};
template <class Rep, class Period>
struct pickle_traits<std::chrono::duration<Rep, Period>>
    : all_elements<std::chrono::duration<Rep, Period>, Rep> {};
template <class Clock, class Duration>
struct pickle_traits<std::chrono::time_point<Clock, Duration>>
    : all_elements<std::chrono::time_point<Clock, Duration>, Duration> {};

template <class T>
requires std_complex_like<T>
struct pickle_traits<T> : all_elements<T, typename T::value_type> {
};
template <class T>
requires std_path_like<T>
struct pickle_traits<T> {
  static constexpr bool value = true;
  static constexpr bool builtin = true;
  using culprit = T;
};

}  // namespace mp::detail
