#include "input.hpp"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <stdexcept>

namespace mp_map {
namespace {

// Finds where the first `n` lines of [p, end) end: returns the byte after the last '\n'
// taken (p if none) and sets `n` to how many lines that is. Counts whole blocks first,
// which compilers vectorize, so short lines cost no call each.
const char* skip_lines(const char* p, const char* end, std::size_t& n) {
  constexpr std::size_t kBlock = 4096;
  const char* after = p;
  std::size_t found = 0;
  while (found < n && p < end) {
    const std::size_t length = std::min<std::size_t>(static_cast<std::size_t>(end - p), kBlock);
    const auto in_block = static_cast<std::size_t>(std::count(p, p + length, '\n'));
    if (found + in_block <= n) {
      found += in_block;
      if (in_block != 0) after = static_cast<const char*>(::memrchr(p, '\n', length)) + 1;
      p += length;
      continue;
    }
    while (found < n) {
      p = static_cast<const char*>(std::memchr(p, '\n', static_cast<std::size_t>(end - p))) + 1;
      ++found;
    }
    after = p;
  }
  n = found;
  return after;
}

}  // namespace

void Input::read_some() {
  if (ended()) return;
  make_room();
  while (true) {
    const ssize_t got = stdin_closed_
                            ? (errno = EBADF, -1)
                            : ::read(0, buffer_.data() + filled_, buffer_.size() - filled_);
    if (got > 0) {
      scan(filled_, filled_ + static_cast<std::size_t>(got));
      filled_ += static_cast<std::size_t>(got);
      return;
    }
    if (got == 0) break;
    if (errno != EINTR)
      throw std::runtime_error("reading standard input failed: " +
                               std::string(std::strerror(errno)));
  }
  eof_ = true;
  if (lines_end_ < filled_) {
    // A last line without its '\n' is an item too: it gets one, as the others have.
    if (filled_ == buffer_.size()) buffer_.resize(filled_ + 1);
    buffer_.data()[filled_] = '\n';
    scan(filled_, filled_ + 1);
    ++filled_;
  }
}

std::size_t Input::take(std::size_t n, Packed& into) {
  n = std::min(n, ready());
  if (arguments_) {
    for (std::size_t i = 0; i < n; ++i) into.push((*arguments_)[index_++]);
    return n;
  }
  std::size_t lines = std::min(n, lines_);
  if (lines != 0) {
    const char* begin = buffer_.data() + start_;
    // Every ready line: they end where the scan found the last '\n'. Fewer: find the
    // end of the n-th line (only the bytes taken are scanned again).
    const char* after = lines == lines_ ? buffer_.data() + lines_end_
                                        : skip_lines(begin, buffer_.data() + lines_end_, lines);
    const auto size = static_cast<std::size_t>(after - begin);
    // Long lines go straight to shared memory (one copy), and shrink() below has the
    // buffer they grew give its memory back.
    if (into.empty() && size >= Packed::kShareFrom)
      into.share_lines(std::string_view(begin, size), lines);
    else
      into.push_lines(std::string_view(begin, size), lines);
    start_ += size;
    lines_ -= lines;
  }
  shrink();
  return lines;
}

void Input::scan(std::size_t from, std::size_t to) {
  const char* begin = buffer_.data() + from;
  const auto length = to - from;
  const auto found = static_cast<std::size_t>(std::count(begin, begin + length, '\n'));
  if (found == 0) return;
  lines_ += found;
  lines_end_ = static_cast<std::size_t>(static_cast<const char*>(::memrchr(begin, '\n', length)) +
                                        1 - buffer_.data());
}

void Input::make_room() {
  if (buffer_.size() - filled_ >= kRead / 2) return;
  compact();
  if (buffer_.size() - filled_ < kRead / 2) buffer_.resize(std::max(2 * buffer_.size(), kRead));
}

void Input::compact() {
  if (start_ == 0) return;
  std::memmove(buffer_.data(), buffer_.data() + start_, filled_ - start_);
  filled_ -= start_;
  lines_end_ -= start_;
  start_ = 0;
}

void Input::shrink() {
  const std::size_t left = filled_ - start_;
  if (buffer_.size() <= 4 * kRead || left > buffer_.size() / 4) return;
  compact();
  buffer_.resize(std::max(2 * left, kRead));
}

}  // namespace mp_map
