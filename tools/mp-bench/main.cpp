// mp-bench: mp's half of the side-by-side benchmark with CPython.
//
//   mp-bench [--quick] [--only NAME[,NAME...]] [--runs 3] [--start-method fork]
//            [--timeout 600] [--list]
//
// Prints the JSON lines of bench/python/mp_bench.py (same names, params, metrics,
// units, sizes and timed sections) with "impl": "mp-cpp"; bench/compare.py runs both
// and prints the table. Progress and errors go to stderr. Exit status 1 if a row
// failed (named on stderr; the other rows still run), 2 for a usage error.
//
// Limit probes. Rows named probe_* measure the machine with plain POSIX calls (no mp)
// and print "impl": "limit", so that no table can mistake them for mp: they are the
// floor each mp row is compared with (raw fork, raw posix_spawn of this binary, pipe
// and futex ping-pong, memcpy, first touch of a fresh shared mapping).
//
// Adding a row: write `void NAME(const Row&)` (see bench.hpp) and add one line to
// kRows below, with the sizes of mp_bench.py's SIZES. A row appears only once the
// library feature it measures exists.
#include <cxxabi.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <memory>
#include <string>
#include <string_view>
#include <thread>
#include <typeinfo>
#include <vector>

#include <signal.h>
#include <unistd.h>

#include <mp/context.hpp>

#include "bench.hpp"

namespace mp_bench {
namespace {

constexpr std::string_view kImpl = "mp-cpp";
constexpr std::string_view kLimit = "limit";
constexpr std::string_view kPeer = "peer";  // another library doing the same work
#if defined(__clang__)
constexpr const char* kCompiler = "clang " __clang_version__;
#elif defined(__GNUC__)
constexpr const char* kCompiler = "g++ " __VERSION__;
#else
constexpr const char* kCompiler = "an unknown compiler";
#endif
#ifndef MP_BENCH_BUILD_TYPE
#define MP_BENCH_BUILD_TYPE "unknown"
#endif
constexpr std::int64_t kShmSize = std::int64_t{256} * 1024 * 1024;

struct RowSpec {
  std::string_view name;
  std::string_view impl;
  std::int64_t full_size;
  std::int64_t quick_size;
  BenchFunction function;
};

// The rows, in mp_bench.py's order, then the probes (cheap ones before the 256 MiB
// ones, so that fork and exec never copy page tables of big buffers).
constexpr RowSpec kRows[] = {
    {"process_start_fork", kImpl, 200, 50, &process_start_fork},
    {"process_start_spawn", kImpl, 20, 5, &process_start_spawn},
    {"pool_map_trivial", kImpl, 1'000'000, 200'000, &pool_map_trivial},
    {"pool_map_trivial_chunk1", kImpl, 50'000, 10'000, &pool_map_trivial_chunk1},
    {"pool_apply_async_latency", kImpl, 5'000, 1'000, &pool_apply_async_latency},
    {"pool_map_cpu", kImpl, 64, 16, &pool_map_cpu},
    {"queue_throughput_small", kImpl, 200'000, 50'000, &queue_throughput_small},
    {"queue_throughput_1k", kImpl, 100'000, 20'000, &queue_throughput_1k},
    {"queue_throughput_1m", kImpl, 500, 100, &queue_throughput_1m},
    {"pipe_roundtrip", kImpl, 20'000, 5'000, &pipe_roundtrip},
    {"value_lock_increment", kImpl, 200'000, 50'000, &value_lock_increment},
    {"lock_uncontended", kImpl, 1'000'000, 200'000, &lock_uncontended},
    {"manager_dict_set_get", kImpl, 20'000, 5'000, &manager_dict_set_get},
    {"manager_dict_concurrent", kImpl, 20'000, 5'000, &manager_dict_concurrent},  // per child
    {"barrier_cycle", kImpl, 10'000, 2'000, &barrier_cycle},
    {"event_pingpong", kImpl, 10'000, 2'000, &event_pingpong},
    {"shared_memory_array_write", kImpl, kShmSize, kShmSize, &shared_memory_array_write},
    {"shared_memory_array_write_prefault", kImpl, kShmSize, kShmSize,
     &shared_memory_array_write_prefault},
    {"listener_roundtrip", kImpl, 20'000, 5'000, &listener_roundtrip},
    {"heap_churn", kImpl, 50'000, 10'000, &heap_churn},
    {"peer_boost_ipc_map", kPeer, 20'000, 5'000, &peer_boost_ipc_map},
    {"interprocess_map_set_get", kImpl, 20'000, 5'000, &interprocess_map_set_get},
    {"peer_boost_process_spawn", kPeer, 20, 5, &peer_boost_process_spawn},
    {"process_start_spawn_rss", kImpl, 20, 5, &process_start_spawn_rss},
    {"interprocess_vector_update", kImpl, kShmSize, kShmSize, &interprocess_vector_update},
    {"probe_fork", kLimit, 200, 50, &probe_fork},
    {"probe_atomic_pair", kLimit, 1'000'000, 200'000, &probe_atomic_pair},
    {"probe_spawn", kLimit, 20, 5, &probe_spawn},
    {"probe_pipe_roundtrip", kLimit, 20'000, 5'000, &probe_pipe_roundtrip},
    {"probe_futex_roundtrip", kLimit, 10'000, 2'000, &probe_futex_roundtrip},
    {"probe_boost_message_queue", kLimit, 200'000, 50'000, &probe_boost_message_queue},
    {"probe_socket_roundtrip", kLimit, 20'000, 5'000, &probe_socket_roundtrip},
    {"probe_memcpy", kLimit, kShmSize, kShmSize, &probe_memcpy},
    {"probe_shm_first_touch", kLimit, kShmSize, kShmSize, &probe_shm_first_touch},
};

// ---------------------------------------------------------------------------
// --timeout. A signal handler cannot throw, so SIGALRM (installed without
// SA_RESTART, so it interrupts blocking calls with EINTR) sets a flag that
// check_deadline() turns into BenchTimeout. A row stuck where it cannot look at the
// flag (inside the library) gets a grace period, then mp-bench names it and exits 1.
// ---------------------------------------------------------------------------

constexpr unsigned kHardAbortGraceSeconds = 30;
volatile sig_atomic_t g_deadline_passed = 0;
char g_hard_abort_message[256];

extern "C" void on_alarm(int) {
  if (!g_deadline_passed) {
    g_deadline_passed = 1;
    alarm(kHardAbortGraceSeconds);
    return;
  }
  const ssize_t ignored =
      write(STDERR_FILENO, g_hard_abort_message, std::strlen(g_hard_abort_message));
  (void)ignored;
  _exit(1);
}

class Watchdog {
 public:
  Watchdog(std::string_view row, int seconds) {
    std::snprintf(g_hard_abort_message, sizeof g_hard_abort_message,
                  "# %.*s: FAILED: stuck %us past --timeout=%ds; remaining rows not run\n",
                  static_cast<int>(row.size()), row.data(), kHardAbortGraceSeconds, seconds);
    g_deadline_passed = 0;
    struct sigaction action {};
    action.sa_handler = &on_alarm;
    sigemptyset(&action.sa_mask);
    action.sa_flags = 0;  // no SA_RESTART: blocking calls return EINTR
    sigaction(SIGALRM, &action, &previous_);
    alarm(static_cast<unsigned>(seconds));
  }
  ~Watchdog() {
    alarm(0);
    sigaction(SIGALRM, &previous_, nullptr);
    g_deadline_passed = 0;
  }
  Watchdog(const Watchdog&) = delete;
  Watchdog& operator=(const Watchdog&) = delete;

 private:
  struct sigaction previous_ {};
};

int g_timeout_seconds = 600;

// ---------------------------------------------------------------------------
// Command line
// ---------------------------------------------------------------------------

struct UsageError {
  std::string message;
};

struct CommandLine {
  Options options;
  bool list = false;
  std::vector<std::string> only;
};

constexpr const char* kUsage =
    "usage: mp-bench [--quick] [--only NAME[,NAME]] [--runs N] [--start-method M]\n"
    "                [--timeout SECONDS] [--list] [--version]\n";

void usage(std::FILE* out) {
  std::fputs(kUsage, out);
  std::fprintf(out,
               "\nmp benchmarks and limit probes, as JSON lines on stdout (the schema of\n"
               "bench/python/mp_bench.py; bench/compare.py prints them beside CPython's).\n"
               "\noptions:\n"
               "  --quick              smaller sizes\n"
               "  --only NAME[,NAME]   comma-separated rows to run (see --list)\n"
               "  --runs N             timed runs per row (default 3)\n"
               "  --start-method M     start method for all but process_start_* "
               "(default fork)\n"
               "  --timeout SECONDS    per-row time limit (default 600)\n"
               "  --list               list row names and exit\n"
               "  --version            show the mp version and how mp-bench was built\n"
               "  -h, --help           show this help\n");
}

std::vector<std::string> split_names(std::string_view text) {
  std::vector<std::string> names;
  while (!text.empty()) {
    const auto comma = text.find(',');
    std::string_view name = text.substr(0, comma);
    while (!name.empty() && name.front() == ' ') name.remove_prefix(1);
    while (!name.empty() && name.back() == ' ') name.remove_suffix(1);
    if (!name.empty()) names.emplace_back(name);
    if (comma == std::string_view::npos) break;
    text.remove_prefix(comma + 1);
  }
  return names;
}

int parse_int(std::string_view option, const std::string& text) {
  char* end = nullptr;
  errno = 0;
  const long value = std::strtol(text.c_str(), &end, 10);
  if (text.empty() || *end != '\0' || errno != 0 || value < -1'000'000'000 ||
      value > 1'000'000'000) {
    throw UsageError{std::string(option) + ": invalid int value: '" + text + "'"};
  }
  return static_cast<int>(value);
}

CommandLine parse_command_line(int argc, char** argv) {
  CommandLine command_line;
  std::vector<std::string> args(argv + 1, argv + argc);
  for (std::size_t i = 0; i < args.size(); ++i) {
    std::string arg = args[i];
    std::string value;
    bool has_value = false;
    if (const auto equals = arg.find('='); arg.rfind("--", 0) == 0 && equals != std::string::npos) {
      value = arg.substr(equals + 1);
      arg.resize(equals);
      has_value = true;
    }
    auto take_value = [&]() -> std::string {
      if (has_value) return value;
      if (i + 1 >= args.size()) throw UsageError{arg + ": expected one argument"};
      return args[++i];
    };
    if (arg == "-h" || arg == "--help") {
      usage(stdout);
      std::exit(0);
    } else if (arg == "--version") {
      std::printf("mp-bench (mp %s), built by %s, %s build\n", MP_BENCH_MP_VERSION, kCompiler,
                  MP_BENCH_BUILD_TYPE);
      std::exit(0);
    } else if (arg == "--quick") {
      command_line.options.quick = true;
    } else if (arg == "--list") {
      command_line.list = true;
    } else if (arg == "--only") {
      command_line.only = split_names(take_value());
    } else if (arg == "--runs") {
      command_line.options.runs = parse_int(arg, take_value());
    } else if (arg == "--timeout") {
      command_line.options.timeout_seconds = parse_int(arg, take_value());
    } else if (arg == "--start-method") {
      command_line.options.start_method = take_value();
      const auto methods = mp::get_all_start_methods();
      if (std::find(methods.begin(), methods.end(), command_line.options.start_method) ==
          methods.end()) {
        std::string choices;
        for (const auto& method : methods) choices += (choices.empty() ? "" : ", ") + method;
        throw UsageError{"--start-method: invalid choice: '" + command_line.options.start_method +
                         "' (choose from " + choices + ")"};
      }
    } else {
      throw UsageError{"unrecognized argument: " + args[i]};
    }
  }
  if (command_line.options.runs < 1) throw UsageError{"--runs must be >= 1"};
  if (command_line.options.timeout_seconds < 1) throw UsageError{"--timeout must be >= 1"};
  return command_line;
}

const RowSpec* find_row(std::string_view name) {
  for (const auto& row : kRows) {
    if (row.name == name) return &row;
  }
  return nullptr;
}

std::string exception_type_name(const std::exception& e) {
  const char* mangled = typeid(e).name();
  int status = 0;
  std::unique_ptr<char, decltype(&std::free)> demangled(
      abi::__cxa_demangle(mangled, nullptr, nullptr, &status), &std::free);
  return status == 0 && demangled ? demangled.get() : mangled;
}

int run(const CommandLine& command_line) {
  std::vector<const RowSpec*> selected;
  if (command_line.only.empty()) {
    for (const auto& row : kRows) selected.push_back(&row);
  } else {
    std::string unknown;
    for (const auto& name : command_line.only) {
      if (const RowSpec* row = find_row(name)) {
        selected.push_back(row);
      } else {
        unknown += (unknown.empty() ? "" : ", ") + name;
      }
    }
    if (!unknown.empty()) {
      std::string choices;
      for (const auto& row : kRows) {
        choices += (choices.empty() ? "" : ", ") + std::string(row.name);
      }
      throw UsageError{"unknown benchmark(s): " + unknown + "; choose from: " + choices};
    }
  }

  const Options& options = command_line.options;
  g_timeout_seconds = options.timeout_seconds;
  std::fprintf(stderr, "# %.*s: mp %s, %u CPUs, mode=%s, runs=%d, start_method=%s\n",
               static_cast<int>(kImpl.size()), kImpl.data(), MP_BENCH_MP_VERSION,
               std::thread::hardware_concurrency(), options.quick ? "quick" : "full", options.runs,
               options.start_method.c_str());
  std::vector<std::string_view> failures;
  const auto all_start = Clock::now();
  for (const RowSpec* spec : selected) {
    const auto row_start = Clock::now();
    try {
      Watchdog watchdog(spec->name, options.timeout_seconds);
      const Row row(spec->impl, spec->name, options.quick ? spec->quick_size : spec->full_size,
                    options);
      spec->function(row);
      std::fprintf(stderr, "# %.*s: done in %.1fs\n", static_cast<int>(spec->name.size()),
                   spec->name.data(), seconds_since(row_start));
    } catch (const std::exception& e) {
      failures.push_back(spec->name);
      std::fprintf(stderr, "# %.*s: FAILED: %s: %s\n", static_cast<int>(spec->name.size()),
                   spec->name.data(), exception_type_name(e).c_str(), e.what());
    }
  }
  std::fprintf(stderr, "# total %.1fs\n", seconds_since(all_start));
  if (!failures.empty()) {
    std::string names;
    for (auto name : failures) names += (names.empty() ? "" : ", ") + std::string(name);
    std::fprintf(stderr, "# FAILED (%zu): %s\n", failures.size(), names.c_str());
    return 1;
  }
  return 0;
}

}  // namespace

void check_deadline() {
  if (g_deadline_passed) {
    throw BenchTimeout("benchmark exceeded --timeout=" + std::to_string(g_timeout_seconds) + "s");
  }
}

}  // namespace mp_bench

int main(int argc, char** argv) {
  // probe_spawn re-executes this binary with this one argument to time a bare exec:
  // leave before anything else runs (not even freeze_support).
  if (argc == 2 && argv[1] == mp_bench::kProbeExitArgument) _exit(0);
  // A child started with the spawn method runs its target here and never returns.
  mp::freeze_support(argc, argv);

  using namespace mp_bench;
  try {
    const CommandLine command_line = parse_command_line(argc, argv);
    if (command_line.list) {
      for (const auto& row : kRows) {
        std::printf("%.*s\n", static_cast<int>(row.name.size()), row.name.data());
      }
      return 0;
    }
    return run(command_line);
  } catch (const UsageError& e) {
    std::fputs(kUsage, stderr);
    std::fprintf(stderr, "mp-bench: error: %s\n", e.message.c_str());
    return 2;
  }
}
