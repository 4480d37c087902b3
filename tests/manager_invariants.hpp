// The invariants of the dict, pair and list that tests hammer with concurrent writers
// (some of them SIGKILLed mid-operation): values are vectors of equal elements of length
// key % 37 + 1 for keys in [0, 500); "a" and "b" of `pair` are opposite (they change
// together, in one update()); sizes agree with contents.
#pragma once

#include <cstddef>
#include <string>

namespace mp_test {

// "" when the containers hold, else what is wrong.
template <class Values, class Pair, class Items>
std::string check_manager_invariants(const Values& values, const Pair& pair, const Items& items) {
  const auto all = values.items();
  if (all.size() != values.size()) return "dict size() disagrees with items()";
  for (const auto& [key, value] : all) {
    if (key < 0 || key >= 500) return "unexpected key " + std::to_string(key);
    if (value.size() != static_cast<std::size_t>(key % 37) + 1)
      return "value of key " + std::to_string(key) + " has the wrong length";
    for (int element : value)
      if (element != value[0]) return "value of key " + std::to_string(key) + " is torn";
  }
  if (pair.get("a", 0) != -pair.get("b", 0)) return "a and b of one update() changed separately";
  if (items.to_vector().size() != items.size()) return "list size() disagrees with its items";
  return "";
}

}  // namespace mp_test
