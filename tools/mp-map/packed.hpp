// mp-map's packed strings: the format in which chunks of items and their outputs travel
// between mp-map and its workers.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <mp/sharedctypes.hpp>

namespace mp_map {

// Strings packed one after another into one buffer, each followed by '\n': a chunk of
// items, or their outputs. A chunk of stdin lines is then one copy of the input, outputs
// in the plain format are written out as they are, and the whole pickles as one or two
// contiguous arrays (a vector of strings pickles string by string). The separators alone
// mark the strings unless one of them holds a '\n' itself; from then on `ends` holds
// every string's end (the offset of its separator).
//
// A large chunk of items lives in mp's shared memory instead (share()): it then crosses
// to its worker as a handle, and the worker reads the items where they are. A long line
// costs one copy in mp-map's memory, not one per step of pickling and transport in each
// process. Only mp-map shares: a handle must stay alive until its pickle is loaded, and
// mp-map keeps each chunk until its result is in.
struct Packed {
  // From this size on, share() moves the bytes to shared memory.
  static constexpr std::size_t kShareFrom = std::size_t{1} << 20;

  std::string bytes;                         // empty once shared
  std::optional<mp::RawArray<char>> shared;  // the bytes, when shared; then no more pushes
  std::vector<std::uint64_t> ends;           // empty until a string holds a '\n'
  std::uint64_t count = 0;

  std::size_t size() const { return count; }
  bool empty() const { return count == 0; }

  // All the strings, each followed by its '\n'.
  std::string_view view() const {
    return shared ? std::string_view(shared->begin(), shared->size()) : std::string_view(bytes);
  }

  // Moves the bytes to shared memory if there are kShareFrom or more of them.
  void share() {
    if (shared || bytes.size() < kShareFrom) return;
    shared.emplace(std::string_view(bytes));
    std::string().swap(bytes);
  }

  // Starts an empty Packed with `n` lines (`lines`: n strings without '\n', each followed
  // by one), copied straight to shared memory.
  void share_lines(std::string_view lines, std::size_t n) {
    shared.emplace(lines);
    count = n;
  }

  void push(std::string_view text) {
    const bool index = !ends.empty() || text.find('\n') != std::string_view::npos;
    if (index && ends.empty()) index_all();
    bytes.append(text);
    bytes.push_back('\n');
    if (index) ends.push_back(bytes.size() - 1);
    ++count;
  }
  // Appends `n` lines: `lines` is n strings without '\n', each followed by one.
  void push_lines(std::string_view lines, std::size_t n) {
    const std::size_t from = bytes.size();
    bytes.append(lines);
    if (!ends.empty())
      for (std::size_t at = from; at < bytes.size(); ++at)
        if (bytes[at] == '\n') ends.push_back(at);
    count += n;
  }

  // Reads the strings in order.
  class Reader {
   public:
    explicit Reader(const Packed& packed) : packed_(packed) {}
    std::string_view next() {
      const std::string_view bytes = packed_.view();
      const std::size_t stop = !packed_.ends.empty()
                                   ? static_cast<std::size_t>(packed_.ends[index_])
                                   : separator(bytes, offset_);
      const std::string_view text = bytes.substr(offset_, stop - offset_);
      offset_ = stop + 1;
      ++index_;
      return text;
    }

   private:
    // The next '\n' from `from` (there is one: every string is followed by one). Items
    // are mostly short, where a plain loop beats a call to memchr.
    static std::size_t separator(std::string_view bytes, std::size_t from) {
      const std::size_t stop = std::min(bytes.size(), from + 16);
      for (std::size_t at = from; at < stop; ++at)
        if (bytes[at] == '\n') return at;
      return bytes.find('\n', stop);
    }

    const Packed& packed_;
    std::size_t offset_ = 0;
    std::size_t index_ = 0;
  };

  template <class Archive>
  void serialize(Archive& ar) {
    ar(bytes, shared, ends, count);
  }

 private:
  // The first string holding a '\n' is coming: record the ends of those so far.
  void index_all() {
    ends.reserve(count + 1);
    for (std::size_t at = 0; at < bytes.size(); ++at)
      if (bytes[at] == '\n') ends.push_back(at);
  }
};

}  // namespace mp_map
