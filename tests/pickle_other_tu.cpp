// A second translation unit for PickleAcrossUnits and TypeIdentity (pickle_test.cpp).
// It defines its own `Msg` in an anonymous namespace, as pickle_test.cpp does: same name,
// same size, another type. And it names
// std::vector<long> and std::map<std::string, long> first from inside templates, where
// GCC spells their default template arguments out (std::vector<long int,
// std::allocator<long int> >), while pickle_test.cpp names them plainly first. The type
// fingerprints in pickle headers must not depend on that spelling.
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <map>
#include <mp/pickle.hpp>
#include <mp/process.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace {

// pickle_test.cpp's Msg is { long a; long b; }: the same size and the same name.
struct Msg {
  double x = 0;
  double y = 0;
};

void exit_zero_if_msg_intact(Msg msg) { std::exit(msg.x == 1.5 && msg.y == -2.5 ? 0 : 3); }

}  // namespace

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

std::string dumps_anonymous_msg() { return mp::pickle::dumps(Msg{1.5, -2.5}); }

bool loads_anonymous_msg(std::string_view bytes) {
  const Msg msg = mp::pickle::loads<Msg>(bytes);
  return msg.x == 1.5 && msg.y == -2.5;
}

// Starts a child with `method` that checks this file's Msg; its exit code (3: the Msg
// arrived damaged), or nullopt if it did not end within a minute.
std::optional<int> anonymous_msg_in_child(const std::string& method) {
  mp::Process child({.start_method = method}, &exit_zero_if_msg_intact, Msg{1.5, -2.5});
  child.start();
  if (!child.join(std::chrono::seconds(60))) {
    child.kill();
    child.join();
    return std::nullopt;
  }
  return child.exitcode();
}

}  // namespace pickle_other_tu
