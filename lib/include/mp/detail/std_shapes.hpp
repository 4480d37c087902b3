// Standard containers and vocabulary types recognized by their shape, so that mp's
// public headers need not include <deque>, <list>, <map>, <set>, <unordered_map>,
// <unordered_set>, <complex> or <filesystem> to pickle them: a program that pickles a
// std::map has included <map> itself. Only types of namespace std qualify (a user's
// container pickles through its own serialize()). Internal to mp.
#pragma once

#include <cstddef>
#include <mp/detail/type_name.hpp>
#include <type_traits>

namespace mp::detail {

// std::deque and std::list (std::vector has no pop_front, std::forward_list no size).
template <class T>
concept node_sequence_shape = requires(T& sequence, const T& view, std::size_t count) {
  typename T::value_type;
  typename T::allocator_type;
  sequence.resize(count);
  sequence.pop_front();
  view.size();
  view.begin();
};
template <class T>
concept std_node_sequence = node_sequence_shape<T> && is_library_type<T>;
// std::map, multimap, unordered_map and unordered_multimap.
template <class T>
concept map_shape = requires(T& map, const T& view) {
  typename T::key_type;
  typename T::mapped_type;
  typename T::allocator_type;
  map.clear();
  view.size();
  view.begin();
};
template <class T>
concept std_map_like = map_shape<T> && is_library_type<T>;
// std::set, multiset, unordered_set and unordered_multiset.
template <class T>
concept set_shape = requires(T& set, const T& view) {
  typename T::key_type;
  typename T::allocator_type;
  set.clear();
  view.size();
  view.begin();
};
template <class T>
concept std_set_like = set_shape<T> &&
    std::is_same_v<typename T::key_type, typename T::value_type> && is_library_type<T>;
// The ordered ones among the above (the others hash).
template <class T>
concept std_ordered = requires {
  typename T::key_compare;
};
// std::complex.
template <class T>
concept complex_shape = requires(T& number, const T& view) {
  typename T::value_type;
  view.real();
  view.imag();
  number.real(view.real());
};
template <class T>
concept std_complex_like = complex_shape<T> && is_library_type<T>;
// std::filesystem::path.
template <class T>
concept path_shape = requires(const T& path) {
  typename T::string_type;
  T::preferred_separator;
  path.native();
};
template <class T>
concept std_path_like = path_shape<T> && is_library_type<T>;
// A map or set whose keys are unique (std::map, unordered_map, set, unordered_set; not
// the multi ones).
template <class T>
concept std_unique_keys = requires(T& container, const typename T::value_type& element) {
  container.insert(element).second;
};

}  // namespace mp::detail
