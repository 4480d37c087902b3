// mp-map's input: the items, from the arguments after ::: or from standard input.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "packed.hpp"

namespace mp_map {

// The items, from the ::: arguments or from stdin (lines without their '\n'; a final
// line without one counts too). Stdin is read only when the caller knows it is readable
// (poll), so that results keep flowing while the input is slow or idle. Every byte read
// is scanned once for line ends as it arrives (and once more when its chunk is taken),
// so a line of any length costs what reading it costs.
class Input {
 public:
  Input(const std::optional<std::vector<std::string>>& arguments, bool stdin_closed)
      : arguments_(arguments ? &*arguments : nullptr), stdin_closed_(stdin_closed) {}

  bool from_stdin() const { return arguments_ == nullptr; }
  // No more bytes will come (the items are then exactly those ready()).
  bool ended() const { return !from_stdin() || eof_; }

  // The items that can be taken now, without reading.
  std::size_t ready() const {
    if (arguments_) return arguments_->size() - index_;
    return lines_ + (eof_ && lines_end_ < filled_ ? 1 : 0);
  }

  // Reads once from stdin (call it when poll says stdin is readable: it may block
  // otherwise); sets ended() at the end of the input. Throws std::runtime_error.
  void read_some();

  // Appends the next min(n, ready()) items to `into`; returns how many. Never reads.
  std::size_t take(std::size_t n, Packed& into);

  // How the n-th item (from 1) is named in messages.
  std::string where(std::uint64_t n) const {
    return (arguments_ ? "argument " : "line ") + std::to_string(n);
  }
  std::optional<std::size_t> known_size() const {
    if (!arguments_) return std::nullopt;
    return arguments_->size();
  }

 private:
  // Counts the line ends in the new bytes [from, to).
  void scan(std::size_t from, std::size_t to);

  // Makes at least kRead / 2 bytes of room after what is buffered: moves the bytes not
  // taken to the front, or grows the buffer (doubling, so a long line is moved O(1)
  // times per byte).
  void make_room();

  static constexpr std::size_t kRead = 1 << 20;
  static constexpr std::size_t kAdoptFrom = 4 << 20;

  const std::vector<std::string>* arguments_;
  bool stdin_closed_;
  std::size_t index_ = 0;
  std::string buffer_;         // stdin's bytes: [start_, filled_) not yet taken
  std::size_t start_ = 0;      // the first byte not taken
  std::size_t lines_end_ = 0;  // after the last '\n' read (<= filled_)
  std::size_t filled_ = 0;     // the end of what was read
  std::size_t lines_ = 0;      // complete lines in [start_, lines_end_)
  bool eof_ = false;
};

}  // namespace mp_map
