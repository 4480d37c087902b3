// A JSON string literal of any bytes, for the tools' JSON output (mp-map's jsonl records,
// mp-bench's result lines): valid UTF-8 is kept, the rest becomes U+FFFD.
#pragma once

#include <cstdint>
#include <cstdio>
#include <string>
#include <string_view>

namespace mp_tools {

// Length of the valid UTF-8 sequence at the start of `s`, or 0.
inline std::size_t utf8_sequence(std::string_view s) {
  const auto byte = [&](std::size_t i) { return static_cast<unsigned char>(s[i]); };
  const unsigned char lead = byte(0);
  std::size_t length = 0;
  std::uint32_t min = 0;
  if (lead < 0x80) return 1;
  if ((lead & 0xe0) == 0xc0)
    length = 2, min = 0x80;
  else if ((lead & 0xf0) == 0xe0)
    length = 3, min = 0x800;
  else if ((lead & 0xf8) == 0xf0)
    length = 4, min = 0x10000;
  else
    return 0;
  if (s.size() < length) return 0;
  std::uint32_t code = lead & (0x7f >> length);
  for (std::size_t i = 1; i < length; ++i) {
    if ((byte(i) & 0xc0) != 0x80) return 0;
    code = (code << 6) | (byte(i) & 0x3f);
  }
  if (code < min || code > 0x10ffff || (code >= 0xd800 && code <= 0xdfff)) return 0;
  return length;
}

// JSON string literal for `text`; bytes that are not UTF-8 become U+FFFD.
inline std::string json_string(std::string_view text) {
  std::string out = "\"";
  while (!text.empty()) {
    const char c = text.front();
    const std::size_t length = utf8_sequence(text);
    if (length == 0) {
      out += "\\ufffd";
      text.remove_prefix(1);
      continue;
    }
    if (length > 1) {
      out.append(text.substr(0, length));
    } else if (c == '"') {
      out += "\\\"";
    } else if (c == '\\') {
      out += "\\\\";
    } else if (c == '\n') {
      out += "\\n";
    } else if (c == '\t') {
      out += "\\t";
    } else if (c == '\r') {
      out += "\\r";
    } else if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) {
      char escaped[8];
      std::snprintf(escaped, sizeof escaped, "\\u%04x", static_cast<unsigned char>(c));
      out += escaped;
    } else {
      out.push_back(c);
    }
    text.remove_prefix(length);
  }
  out.push_back('"');
  return out;
}

}  // namespace mp_tools
