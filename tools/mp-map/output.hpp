// mp-map's output: one record per item on stdout (plain, tsv or jsonl), error messages
// and the progress bar on stderr.
#pragma once

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <optional>
#include <string>
#include <string_view>

#include "../json_string.hpp"

namespace mp_map {

enum class Format { plain, tsv, jsonl };

// Appends the record of one item to `out`, newline included:
//   plain: the output (nothing for a failed item; its error goes to stderr)
//   tsv:   input TAB output TAB ok(true|false) TAB error, with \t \n \r \\ escaped
//   jsonl: {"input": ..., "output": ..., "ok": ..., "error": ...} (output or error null)
void append_record(std::string& out, Format format, std::string_view input, bool ok,
                   std::string_view output, std::string_view error);

using mp_tools::json_string;

// Standard output, written with write(2) so that every failure is seen: a full disk, a
// closed descriptor, a reader that went away (EPIPE). Bytes are buffered until flush();
// a large buffer is written out at once. write() and flush() throw WriteError.
struct WriteError {
  int error;  // errno
};

class Output {
 public:
  // `closed`: the descriptor was closed when mp-map started (something else occupies it
  // now); the first write fails with EBADF, as a write to a closed stdout does.
  explicit Output(int fd, bool closed = false) : fd_(fd), closed_(closed) {}
  void write(std::string_view bytes);
  void flush();
  bool empty() const { return buffer_.empty(); }

 private:
  static constexpr std::size_t kFlushFrom = 1 << 20;
  int fd_;
  bool closed_;
  std::string buffer_;
};

// A one-line progress display on a terminal: done/total, rate, ETA. Redrawn at most ten
// times a second; clear() erases it (before other stderr output and at the end).
class Progress {
 public:
  explicit Progress(bool enabled, std::FILE* out = stderr);
  void set_total(std::uint64_t total) { total_ = total; }
  void update(std::uint64_t done, bool force = false);
  void clear();

 private:
  bool enabled_;
  std::FILE* out_;
  std::optional<std::uint64_t> total_;
  std::chrono::steady_clock::time_point start_;
  std::chrono::steady_clock::time_point last_draw_{};
  bool drawn_ = false;
};

}  // namespace mp_map
