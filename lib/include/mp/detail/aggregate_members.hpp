// Looking at the member types of an aggregate without reflection, to decide whether a
// plain struct may be pickled as its raw bytes. Internal to mp.
//
// An aggregate T is brace-initialized from "slots": one per base class and member, or
// one per element of a C array member (brace elision). A probe object that converts to
// any type U fills one slot: AnyMember counts the slots (the most probes T{...}
// accepts), and a probe whose conversion to U is noexcept(predicate<U>) tells, through
// noexcept(T{probe, probe, ...}), whether every slot's type satisfies the predicate.
// Every conversion is viable whatever U is, so no slot is ever skipped by brace elision
// into a member the predicate refuses. Only declarations are used: nothing here runs.
#pragma once

#include <mp/detail/export.hpp>

#include <climits>
#include <cstddef>
#include <limits>
#include <type_traits>
#include <utility>

// The probes fill C array members without braces (brace elision) on purpose.
#if defined(__clang__)
#pragma clang diagnostic push
#pragma clang diagnostic ignored "-Wmissing-braces"
#elif defined(__GNUC__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmissing-braces"
#endif

namespace mp::detail {

// Converts to anything (declared only: used in unevaluated operands).
struct AnyMember {
  template <class U>
  operator U() const noexcept;
};

template <class T, std::size_t... I>
consteval bool brace_initializable(std::index_sequence<I...>) {
  return requires { T{(static_cast<void>(I), AnyMember{})...}; };
}
template <class T, std::size_t N>
consteval bool takes_slots() {
  return brace_initializable<T>(std::make_index_sequence<N>{});
}

// The largest N in [low, high] with takes_slots<T, N>, given takes_slots<T, low>.
template <class T, std::size_t low, std::size_t high>
consteval std::size_t bisect_slots() {
  if constexpr (low == high) {
    return low;
  } else {
    constexpr std::size_t middle = low + (high - low + 1) / 2;
    if constexpr (takes_slots<T, middle>())
      return bisect_slots<T, middle, high>();
    else
      return bisect_slots<T, low, middle - 1>();
  }
}

// At most this many slots are inspected: compile time grows faster than the slot count
// (a C array member of 65536 chars would take minutes), while std::array<char, 65536>
// is one slot.
inline constexpr std::size_t kMaxInspectedSlots = 4096;

// Doubles the guess until T refuses it, then bisects: the probes stay at most twice as
// many as T's slots. The bound counts bits, as bit-fields can be that many; one past
// kMaxInspectedSlots means "too many".
template <class T, std::size_t known>
consteval std::size_t count_slots_from() {
  constexpr std::size_t bound =
      sizeof(T) * CHAR_BIT < kMaxInspectedSlots + 1 ? sizeof(T) * CHAR_BIT : kMaxInspectedSlots + 1;
  constexpr std::size_t guess = known == 0 ? 1 : 2 * known;
  if constexpr (guess > bound) {
    return bisect_slots<T, known, bound>();
  } else if constexpr (takes_slots<T, guess>()) {
    return count_slots_from<T, guess>();
  } else {
    return bisect_slots<T, known, guess - 1>();
  }
}

// Whether T{probes..., {}} compiles: a slot is left after `probes`.
template <class T, std::size_t... I>
consteval bool slot_left(std::index_sequence<I...>) {
  return requires { T{(static_cast<void>(I), AnyMember{})..., {}}; };
}

inline constexpr std::size_t kUnknownSlots = std::numeric_limits<std::size_t>::max();

// The number of slots of the aggregate T (T{} must compile), or kUnknownSlots when a
// member stops the probes (a conversion the compiler finds ambiguous, such as to a
// class with a constructor template) although slots are left, or when T has more than
// kMaxInspectedSlots: such a T cannot be inspected.
template <class T>
consteval std::size_t aggregate_slots() {
  constexpr std::size_t slots = count_slots_from<T, 0>();
  if constexpr (slots > kMaxInspectedSlots)
    return kUnknownSlots;
  else if constexpr (slot_left<T>(std::make_index_sequence<slots>{}))
    return kUnknownSlots;
  else
    return slots;
}

// Whether the conversion of every slot of T from Probe is noexcept (Probe's conversion
// to U is noexcept exactly when U passes its test). T must have known slots.
template <class T, class Probe, std::size_t... I>
consteval bool every_slot_passes(std::index_sequence<I...>) {
  return noexcept(T{(static_cast<void>(I), Probe{})...});
}
template <class T, class Probe>
consteval bool every_slot_passes() {
  return every_slot_passes<T, Probe>(std::make_index_sequence<aggregate_slots<T>()>{});
}

}  // namespace mp::detail

#if defined(__clang__)
#pragma clang diagnostic pop
#elif defined(__GNUC__)
#pragma GCC diagnostic pop
#endif
