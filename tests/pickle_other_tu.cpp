// A second translation unit for PickleAcrossUnits (pickle_test.cpp): it names
// std::vector<long> and std::map<std::string, long> first from inside templates, where
// GCC spells their default template arguments out (std::vector<long int,
// std::allocator<long int> >), while pickle_test.cpp names them plainly first. The type
// fingerprints in pickle headers must not depend on that spelling.
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include <mp/pickle.hpp>

namespace pickle_other_tu {

template <class R>
std::string dumps_vector_of(R value) {
  return mp::pickle::dumps(std::vector<R>{value, value});
}

template <class K, class V>
std::string dumps_map_of(K key, V value) {
  return mp::pickle::dumps(std::map<K, V>{{key, value}});
}

std::string vector_of_long() { return dumps_vector_of<long>(7); }
std::string map_of_string_to_long() { return dumps_map_of<std::string, long>("seven", 7); }
std::uint32_t vector_of_long_fingerprint() {
  return mp::detail::type_fingerprint<std::vector<long>>;
}

}  // namespace pickle_other_tu
