#include "text.hpp"

#include <cstdio>

namespace mp_map {

std::string shown(std::string_view value, std::size_t limit) {
  std::string_view head = value;
  if (value.size() > limit) {
    std::size_t cut = limit;
    // Back to the start of a UTF-8 sequence (continuation bytes are 10xxxxxx).
    while (cut > 0 && (static_cast<unsigned char>(value[cut]) & 0xc0) == 0x80) --cut;
    head = value.substr(0, cut);
  }
  std::string out;
  out.reserve(head.size() + 24);
  for (const char c : head) {
    const auto byte = static_cast<unsigned char>(c);
    if (c == '\n') {
      out += "\\n";
    } else if (c == '\t') {
      out += "\\t";
    } else if (c == '\r') {
      out += "\\r";
    } else if (byte < 0x20 || byte == 0x7f) {
      char escaped[8];
      std::snprintf(escaped, sizeof escaped, "\\x%02x", byte);
      out += escaped;
    } else {
      out.push_back(c);
    }
  }
  if (head.size() < value.size()) out += "... (" + std::to_string(value.size()) + " bytes)";
  return out;
}

}  // namespace mp_map
