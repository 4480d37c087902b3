// mp-map's input: the items, from the arguments after ::: or from standard input.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <new>
#include <optional>
#include <string>
#include <vector>

#include "packed.hpp"

namespace mp_map {

// Bytes from malloc, grown by realloc: a large buffer's pages are then remapped rather
// than copied, and new bytes are left untouched (a std::string would write zeros into
// them, so memory would be used before a byte is read).
class Buffer {
 public:
  Buffer() = default;
  ~Buffer() { std::free(data_); }
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;

  char* data() noexcept { return data_; }
  const char* data() const noexcept { return data_; }
  std::size_t size() const noexcept { return size_; }
  // Keeps the first min(size, size()) bytes. Throws std::bad_alloc.
  void resize(std::size_t size) {
    void* grown = std::realloc(data_, size);
    if (!grown && size != 0) throw std::bad_alloc();
    data_ = static_cast<char*>(grown);
    size_ = size;
  }

 private:
  char* data_ = nullptr;
  std::size_t size_ = 0;
};

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
    return lines_;  // at the end, a last line without '\n' got one
  }

  // Reads once from stdin (call it when poll says stdin is readable: it may block
  // otherwise); sets ended() at the end of the input. Throws std::runtime_error.
  void read_some();

  // Appends the next min(n, ready()) items to `into`; returns how many. Never reads.
  std::size_t take(std::size_t n, Packed& into);

  // The bytes read from stdin and not yet taken.
  std::size_t buffered() const { return filled_ - start_; }

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
  // Moves the bytes not taken to the front.
  void compact();
  // Gives back the memory of a buffer that a long line grew, once the line is taken.
  void shrink();

  static constexpr std::size_t kRead = 1 << 20;

  const std::vector<std::string>* arguments_;
  bool stdin_closed_;
  std::size_t index_ = 0;
  Buffer buffer_;              // stdin's bytes: [start_, filled_) not yet taken
  std::size_t start_ = 0;      // the first byte not taken
  std::size_t lines_end_ = 0;  // after the last '\n' read (<= filled_)
  std::size_t filled_ = 0;     // the end of what was read
  std::size_t lines_ = 0;      // complete lines in [start_, lines_end_)
  bool eof_ = false;
};

}  // namespace mp_map
