// mp-map's output: one record per item on stdout (plain, tsv or jsonl), error messages
// and the progress bar on stderr.
#pragma once

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <optional>
#include <string>
#include <string_view>

namespace mp_map {

enum class Format { plain, tsv, jsonl };

// Appends the record of one item to `out`, newline included:
//   plain: the output (nothing for a failed item; its error goes to stderr)
//   tsv:   input TAB output TAB ok(true|false) TAB error, with \t \n \r \\ escaped
//   jsonl: {"input": ..., "output": ..., "ok": ..., "error": ...} (output or error null)
void append_record(std::string& out, Format format, std::string_view input, bool ok,
                   std::string_view output, std::string_view error);

// JSON string literal for `text`; bytes that are not UTF-8 become U+FFFD.
std::string json_string(std::string_view text);

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
