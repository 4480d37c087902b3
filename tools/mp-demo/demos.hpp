// mp-demo: the course examples the project grew from, run for real. The programs are
// examples/course's, shared with the examples; this tool adds a command line.
#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <vector>

namespace mp_demo {

// Options every demo understands.
struct Options {
  // The seeds sleep 2 s and 3 s; the demos sleep 2*delay and 3*delay.
  std::chrono::duration<double> delay{0.1};
  std::string start_method;  // empty: mp's default
  bool unshared = false;     // --unshared: the value demo without shared memory
  std::vector<std::string> positional;
};

// Thrown for bad command-line input: main prints it with the usage and exits 2.
struct UsageError {
  std::string message;
};

// The start methods mp has, as "fork|spawn" (default first).
std::string start_method_choices();

// Parses the options after the subcommand. Throws UsageError.
Options parse_options(const std::vector<std::string>& args);

int process_demo(const Options& options);
int value_demo(const Options& options);
int array_demo(const Options& options);
int dict_demo(const Options& options);

}  // namespace mp_demo
