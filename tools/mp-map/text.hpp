// mp-map: how a value from the user (an item, an option's value, a program's name)
// appears inside a message.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace mp_map {

// `value` made safe for a one-line message: control bytes and DEL escaped (\n, \t, \r,
// \xNN), and cut after `limit` bytes with a marker that says how long it was:
// "abc... (100000 bytes)". A cut never splits a UTF-8 sequence.
std::string shown(std::string_view value, std::size_t limit = 80);

}  // namespace mp_map
