// What every example shares: its command line, scaled-down sleeps and line-at-a-time
// printing. Header-only, so that an example is one .cpp file and one line of CMake.
//
// Every example takes
//   --start-method METHOD      the start method of its processes, one of
//                              mp::get_all_start_methods() (default: mp's, fork)
//   --time-scale X             seconds slept per second the Python sleeps (default 0.05,
//                              so that the examples run in CI; 1 sleeps as the seeds do)
// and positional arguments of its own, described in its header comment.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

#include <mp/mp.hpp>

namespace example {

// The time scale travels to spawned children (which re-execute main() without its
// arguments) in the environment, which they inherit.
inline constexpr const char* kTimeScaleVariable = "MP_EXAMPLES_TIME_SCALE";
inline constexpr double kDefaultTimeScale = 0.05;

inline double time_scale() {
  static const double scale = [] {
    const char* text = std::getenv(kTimeScaleVariable);
    if (text == nullptr || *text == '\0') return kDefaultTimeScale;
    char* end = nullptr;
    const double value = std::strtod(text, &end);
    return *end == '\0' && value >= 0 && value <= 100 ? value : kDefaultTimeScale;
  }();
  return scale;
}

// Sleeps where the Python program sleeps `python_seconds`, scaled by time_scale().
inline void sleep(double python_seconds) {
  std::this_thread::sleep_for(std::chrono::duration<double>(python_seconds * time_scale()));
}

// printf, then flush: each line reaches the terminal (or the pipe ctest reads) in one
// write, so lines of different processes never mix and come in the order printed.
[[gnu::format(printf, 1, 2)]] inline void say(const char* format, ...) {
  va_list args;
  va_start(args, format);
  std::vprintf(format, args);
  va_end(args);
  std::fflush(stdout);
}

// Python's repr() of a list of ints: "[1, 2, 3]".
template <class Range>
std::string list_repr(const Range& items) {
  std::string out = "[";
  for (const auto& item : items) {
    if (out.size() > 1) out += ", ";
    out += std::to_string(item);
  }
  return out + "]";
}

// collections.deque of at most N ints, as a plain object that can live in shared memory
// (in an mp::RawValue or mp::Value); whoever changes it holds a lock.
template <int N>
struct Deque {
  int head = 0;
  int size = 0;
  int items[N] = {};

  // Python: d.append(value). The caller checks that size < N.
  void append(int value) {
    items[(head + size) % N] = value;
    ++size;
  }
  // Python: d.popleft(). The caller checks that size > 0.
  int popleft() {
    const int value = items[head];
    head = (head + 1) % N;
    --size;
    return value;
  }
  // Python: str(d), as "deque([1, 2])".
  std::string repr() const {
    std::vector<int> values;
    for (int i = 0; i < size; ++i) values.push_back(items[(head + i) % N]);
    return "deque(" + list_repr(values) + ")";
  }
};

// The positional argument at `index` as a number (as std::atol reads it), or `fallback`
// when there are fewer arguments.
inline long number_arg(const std::vector<std::string>& args, std::size_t index, long fallback) {
  return args.size() > index ? std::atol(args[index].c_str()) : fallback;
}

// Parses the common options (see the top of this file), sets mp's default start method
// and returns the positional arguments. Prints a usage message and exits 2 on bad input;
// `usage` names the positional arguments, as "[TEXT...]"; without it, there are none.
inline std::vector<std::string> parse_args(int argc, char** argv, const char* usage = "") {
  const std::vector<std::string> methods = mp::get_all_start_methods();
  std::string method_choice;  // "fork|spawn"
  for (const auto& method : methods) method_choice += (method_choice.empty() ? "" : "|") + method;
  auto fail = [&](const std::string& message) {
    std::fprintf(stderr, "%s: %s\nusage: %s [--start-method %s] [--time-scale X] %s\n", argv[0],
                 message.c_str(), argv[0], method_choice.c_str(), usage);
    std::exit(2);
  };
  std::vector<std::string> positional;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) fail(arg + " needs a value");
      return argv[++i];
    };
    if (arg == "--start-method") {
      const std::string method = value();
      if (std::find(methods.begin(), methods.end(), method) == methods.end())
        fail("--start-method must be one of " + method_choice + ", got '" + method + "'");
      mp::set_start_method(method, /*force=*/true);
    } else if (arg == "--time-scale") {
      const std::string text = value();
      char* end = nullptr;
      const double scale = std::strtod(text.c_str(), &end);
      if (text.empty() || *end != '\0' || !(scale >= 0 && scale <= 100))
        fail("--time-scale needs a number between 0 and 100, got '" + text + "'");
      ::setenv(kTimeScaleVariable, text.c_str(), 1);
    } else if (arg == "-h" || arg == "--help") {
      std::printf("usage: %s [--start-method %s] [--time-scale X] %s\n", argv[0],
                  method_choice.c_str(), usage);
      std::exit(0);
    } else if (arg.size() > 1 && arg[0] == '-') {
      fail("unknown option '" + arg + "'");
    } else if (*usage == '\0') {
      fail("unexpected argument '" + arg + "'");
    } else {
      positional.push_back(arg);
    }
  }
  return positional;
}

// Joins every process and returns main()'s exit status: 0 if all exited with 0.
inline int join_all(std::vector<mp::Process>& processes) {
  int status = 0;
  for (auto& process : processes) {
    process.join();
    if (process.exitcode() != 0) status = 1;
  }
  return status;
}

}  // namespace example
