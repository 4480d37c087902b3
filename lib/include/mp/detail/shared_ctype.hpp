// The concept of what a shared ctypes object holds, apart from <mp/sharedctypes.hpp> so
// that a header can declare Value<T> and Array<T> without including their definitions
// (<mp/managers.hpp> does, for its factories).
#pragma once

#include <mp/detail/export.hpp>

#include <type_traits>

namespace mp {

// What Value, Array, RawValue and RawArray can hold: the analogue of a ctypes type or
// Structure. Trivially copyable (its bytes are the value, valid in every process), a
// plain object type (not const, a reference or a C array: use Array for several), and
// aligned to at most 16 bytes (the heap's alignment).
template <class T>
concept shared_ctype =
    std::is_trivially_copyable_v<T> && std::is_object_v<T> && !std::is_const_v<T> &&
    !std::is_volatile_v<T> && !std::is_array_v<T> && alignof(T) <= 16;

template <shared_ctype T>
class Value;
template <shared_ctype T>
class Array;

}  // namespace mp
