// mp-map's command line: the options and how they are parsed.
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <vector>

#include "output.hpp"

namespace mp_map {

// A bad command line: main prints the message and exits with status 2.
struct UsageError {
  std::string message;
};

// --help and --version: printed; main checks standard output and exits with `status`.
struct ExitNow {
  int status;
};

struct Options {
  std::string function;             // a built-in, or empty with --exec
  std::optional<std::string> exec;  // the command template
  unsigned jobs = 0;                // 0: cpu_count()
  std::size_t chunksize = 0;        // 0: chosen as Pool.map does (1 for --exec/--timeout)
  bool unordered = false;
  std::optional<double> timeout;  // seconds per item
  bool halt_on_error = false;
  std::optional<bool> progress;  // default: whether stderr is a terminal
  Format format = Format::plain;
  std::string start_method;
  std::optional<std::vector<std::string>> arguments;  // the items after :::
};

// The most workers -j accepts: each is a process with its own rings, descriptors and
// memory, and a machine with more CPUs than this is rare.
constexpr unsigned kMaxJobs = 1024;

// Parses the command line. Throws UsageError, or ExitNow after printing --help or
// --version.
Options parse_options(int argc, char** argv);

}  // namespace mp_map
