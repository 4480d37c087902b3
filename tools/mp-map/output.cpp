#include "output.hpp"

#include <poll.h>
#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <cstring>

namespace mp_map {
namespace {

std::string tsv_field(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (char c : text) {
    switch (c) {
      case '\t':
        out += "\\t";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\\':
        out += "\\\\";
        break;
      default:
        out.push_back(c);
    }
  }
  return out;
}

}  // namespace

void append_record(std::string& out, Format format, std::string_view input, bool ok,
                   std::string_view output, std::string_view error) {
  switch (format) {
    case Format::plain:
      if (ok) {
        out.append(output);
        out.push_back('\n');
      }
      return;
    case Format::tsv:
      out += tsv_field(input) + "\t" + tsv_field(output) + "\t" + (ok ? "true" : "false") + "\t" +
             tsv_field(error) + "\n";
      return;
    case Format::jsonl:
      out += "{\"input\": " + json_string(input) +
             ", \"output\": " + (ok ? json_string(output) : "null") +
             ", \"ok\": " + (ok ? "true" : "false") +
             ", \"error\": " + (ok ? "null" : json_string(error)) + "}\n";
      return;
  }
}

void Output::write(std::string_view bytes) {
  buffer_.append(bytes);
  if (buffer_.size() >= kFlushFrom) flush();
}

void Output::flush() {
  if (buffer_.empty()) return;
  if (closed_) throw WriteError{EBADF};
  std::size_t done = 0;
  while (done < buffer_.size()) {
    const ssize_t n = ::write(fd_, buffer_.data() + done, buffer_.size() - done);
    if (n >= 0) {
      done += static_cast<std::size_t>(n);
    } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
      pollfd fd{fd_, POLLOUT, 0};  // a non-blocking stdout we were given: wait for room
      (void)::poll(&fd, 1, -1);
    } else if (errno != EINTR) {
      const int error = errno;
      buffer_.clear();
      throw WriteError{error};
    }
  }
  buffer_.clear();
}

Progress::Progress(bool enabled, std::FILE* out)
    : enabled_(enabled), out_(out), start_(std::chrono::steady_clock::now()) {}

void Progress::update(std::uint64_t done, bool force) {
  if (!enabled_) return;
  const auto now = std::chrono::steady_clock::now();
  if (!force && drawn_ && now - last_draw_ < std::chrono::milliseconds(100)) return;
  last_draw_ = now;
  const double elapsed = std::chrono::duration<double>(now - start_).count();
  const double rate = elapsed > 0 ? static_cast<double>(done) / elapsed : 0;
  char line[160];
  if (total_ && *total_ > 0) {
    constexpr int kWidth = 30;
    const double fraction = std::min(1.0, static_cast<double>(done) / static_cast<double>(*total_));
    const int filled = static_cast<int>(fraction * kWidth);
    char bar[kWidth + 1];
    for (int i = 0; i < kWidth; ++i) bar[i] = i < filled ? '#' : '.';
    bar[kWidth] = '\0';
    char eta[32] = "?";
    if (rate > 0)
      std::snprintf(eta, sizeof eta, "%.0fs",
                    std::ceil(static_cast<double>(*total_ - std::min(done, *total_)) / rate));
    std::snprintf(line, sizeof line, "\r[%s] %llu/%llu %3.0f%% %.1f items/s ETA %s\x1b[K", bar,
                  static_cast<unsigned long long>(done), static_cast<unsigned long long>(*total_),
                  fraction * 100, rate, eta);
  } else {
    std::snprintf(line, sizeof line, "\r%llu done, %.1f items/s\x1b[K",
                  static_cast<unsigned long long>(done), rate);
  }
  std::fputs(line, out_);
  std::fflush(out_);
  drawn_ = true;
}

void Progress::clear() {
  if (!enabled_ || !drawn_) return;
  std::fputs("\r\x1b[K", out_);
  std::fflush(out_);
  drawn_ = false;
}

}  // namespace mp_map
