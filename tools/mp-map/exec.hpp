// mp-map --exec: runs a command per item and captures its standard output.
#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace mp_map {

// A command template such as "wc -c {}" or "echo {} | tr a-z A-Z".
struct Command {
  std::string text;
  // Filled by prepare(): the template split into words when it holds nothing a shell
  // would interpret (then the item replaces {} inside an argument, unquoted, and the
  // program runs without a shell, as xargs runs it); empty: run through /bin/sh -c.
  std::vector<std::string> words;
  std::string program;  // the resolved path of words[0] (empty: run through the shell)

  template <class Archive>
  void serialize(Archive& ar) {
    ar(text, words, program);
  }
};

// Checks and prepares a template. Throws std::invalid_argument for an empty command, a
// program that execvp would not find (for a template run without a shell), or a shell
// template with {} inside quotes or right after '\' or '$' (which would undo the quoting
// of the item).
Command prepare(std::string text);

// The shell command line for `item`: every {} replaced by the item quoted for sh, or the
// quoted item appended after a space when the template has no {} (as GNU parallel).
std::string shell_line(std::string_view text, std::string_view item);

// Runs the command for `item` with stdin from /dev/null and stderr inherited; returns
// its standard output without one trailing newline. Throws std::runtime_error naming
// the exit status or signal if it fails, that it was killed after `timeout`, that the
// item holds a NUL byte or is too long for a command argument (then nothing runs), or
// what could not be started. The command
// runs in mp-map's process group under the calling process's launcher (launcher.hpp):
// whatever it leaves running is killed when it exits, and everything it started when
// it times out or the calling process dies.
std::string run(const Command& command, std::string_view item,
                std::optional<std::chrono::duration<double>> timeout);

}  // namespace mp_map
