// What every mp-bench row shares: options, timing, checks, the JSON result line.
// Mirrors the helpers of bench/python/mp_bench.py (emit, median, BenchError,
// watchdog) so that both sides time and report the same way.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include <mp/process.hpp>

namespace mp {
class Connection;
class Event;
class Semaphore;
}  // namespace mp

namespace mp_bench {

// Command-line settings shared by all rows.
struct Options {
  bool quick = false;
  int runs = 3;
  // For every row but process_start_* (which name their own method), as in Python.
  std::string start_method = "fork";
  int timeout_seconds = 600;
};

// A check failed or a child misbehaved. Python: BenchError.
class BenchError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// The benchmark ran past --timeout. Python: TimeoutError from the SIGALRM watchdog.
class BenchTimeout : public BenchError {
 public:
  using BenchError::BenchError;
};

// CLOCK_MONOTONIC, as Python's time.perf_counter on Linux.
using Clock = std::chrono::steady_clock;

inline double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

// Throws BenchTimeout once --timeout has passed for the current row. Rows call it in
// their loops and after a system call returned EINTR (SIGALRM interrupts them).
void check_deadline();

// The median; for an even count, the mean of the middle two (Python: median()).
double median(std::vector<double> values);

// A JSON scalar of "params" (null, bool, integer, number, string).
using JsonValue = std::variant<std::nullptr_t, bool, std::int64_t, double, std::string>;
// An ordered JSON object: keys print in this order, as Python's dicts do.
using JsonObject = std::vector<std::pair<std::string, JsonValue>>;

// How a child ended, from an exit code as mp::Process::exitcode() gives it:
// "exit code 3", "killed by SIGKILL", "still running". Python: _describe_exit().
std::string describe_exit(std::optional<int> exitcode);
// The same from a waitpid() status.
std::string describe_wait_status(int status);

// One row being measured: its name and size, and where its result lines go.
class Row {
 public:
  Row(std::string_view impl, std::string_view name, std::int64_t size, const Options& options)
      : impl_(impl), name_(name), size_(size), options_(options) {}

  std::string_view name() const { return name_; }
  // N (or bytes, chunks...) for the selected mode (full or --quick).
  std::int64_t size() const { return size_; }
  const Options& options() const { return options_; }
  int runs() const { return options_.runs; }

  // Prints one JSON line {"impl", "bench", "params", "metric", "value", "unit", "runs",
  // extra...} on stdout: value = median(runs); numbers rounded to 6 significant digits.
  void emit(const JsonObject& params, std::string_view metric, const std::vector<double>& runs,
            std::string_view unit, const JsonObject& extra = {}) const;

 private:
  std::string_view impl_;
  std::string_view name_;
  std::int64_t size_;
  const Options& options_;
};

// Ends a started child if a row fails half-way: waits briefly, then terminates and
// kills it, as the Python script's Children block does when it raised.
class ReapOnError {
 public:
  explicit ReapOnError(mp::Process& process) : process_(&process) {}
  ~ReapOnError() {
    if (process_ == nullptr) return;
    try {
      if (process_->pid() == 0 || process_->join(std::chrono::seconds(2))) return;
      process_->terminate();
      if (process_->join(std::chrono::seconds(5))) return;
      process_->kill();
      process_->join();
    } catch (...) {  // a destructor must not throw; the row already failed
    }
  }
  // The child was joined normally: nothing to do at the end of the scope.
  void release() { process_ = nullptr; }
  ReapOnError(const ReapOnError&) = delete;
  ReapOnError& operator=(const ReapOnError&) = delete;

 private:
  mp::Process* process_;
};

// The size of the 256 MiB rows (shared memory, memcpy).
inline constexpr std::int64_t kShmSize = std::int64_t{256} * 1024 * 1024;

// How long a child may take (Python: READY_TIMEOUT, RESULT_TIMEOUT, JOIN_TIMEOUT).
inline constexpr auto kReadyTimeout = std::chrono::seconds(60);    // to say it is ready/done
inline constexpr auto kResultTimeout = std::chrono::seconds(600);  // to send its result
inline constexpr auto kJoinTimeout = std::chrono::seconds(60);     // to exit once finished

// Joins a finished child (within kJoinTimeout) and checks that it exited with 0; throws
// BenchError naming it `what` otherwise. Python: Children.join_ok(). In children.cpp.
void join_ok(mp::Process& child, const std::string& what);
// Acquires `semaphore` `count` times, each within `limit`; throws BenchError ("children
// not " + what) otherwise. Python: wait_sem().
void wait_semaphore(mp::Semaphore& semaphore, int count, std::chrono::seconds limit,
                    const char* what);

// Starts `children`, each of which posts `ready`, waits for `go`, does its share and posts
// `done`; returns the seconds from go to the last done, then joins them with join_ok
// (naming each `what`). A child still running when anything throws is reaped.
// In children.cpp.
double race_children(std::vector<mp::Process>& children, mp::Semaphore& ready, mp::Event& go,
                     mp::Semaphore& done, const std::string& what);

// The function that measures one row and emits its lines; throws to fail the row.
using BenchFunction = void (*)(const Row&);

// What "impl" a row's lines carry: mp's rows, or the limit probes (plain POSIX, no mp,
// to show what the machine allows).
inline constexpr std::string_view kImplMp = "mp-cpp";
inline constexpr std::string_view kImplLimit = "limit";
// Another library doing the same work as an mp row (peer_rows.cpp).
inline constexpr std::string_view kImplPeer = "peer";

// One registered row: its name (mp_bench.py's, for mp rows), its place in --list and in
// a full run, and its sizes (mp_bench.py's SIZES: full, --quick).
struct RowSpec {
  std::string_view name;
  std::string_view impl;
  int order;
  std::int64_t full_size;
  std::int64_t quick_size;
  BenchFunction function;
};

// Adds a row to the registry; called by MP_BENCH_ROW/MP_BENCH_PROBE before main().
// A second row of the same name or order ends the program with a message.
bool register_row(const RowSpec& spec);
// Every registered row, by order.
const std::vector<RowSpec>& registered_rows();

// Adding a row is one block in one file (any tools/mp-bench/*.cpp: the build finds it):
//
//   MP_BENCH_ROW(queue_throughput_small, 700, 200'000, 50'000) {
//     ...measure, then row.emit(...)...
//   }
//
// defines `void queue_throughput_small(const Row& row)` in namespace mp_bench and
// registers it under that name. ORDER places it in --list and in a full run: mp rows
// (100 to 2000, in mp_bench.py's order), then the probes (2100 to 2900, cheap ones
// before the 256 MiB ones, so that fork and exec never copy page tables of big
// buffers); take a free number between two neighbours (mp-bench stops at start if two
// rows share a name or an order). FULL and QUICK are its sizes (N, bytes, chunks...),
// those of mp_bench.py's row of the same name: `mp-bench --sizes` lists them, and
// bench/compare.py refuses rows whose sizes or params differ from CPython's.
// MP_BENCH_PROBE is the same for a limit probe ("impl": "limit"), MP_BENCH_ROW_IMPL for
// a row of another implementation measured beside mp (IMPL: its "impl" string, a
// std::string_view constant). Use them inside namespace mp_bench.
#define MP_BENCH_ROW(NAME, ORDER, FULL, QUICK) \
  MP_BENCH_ROW_IMPL(NAME, ::mp_bench::kImplMp, ORDER, FULL, QUICK)
#define MP_BENCH_PROBE(NAME, ORDER, FULL, QUICK) \
  MP_BENCH_ROW_IMPL(NAME, ::mp_bench::kImplLimit, ORDER, FULL, QUICK)
#define MP_BENCH_ROW_IMPL(NAME, IMPL, ORDER, FULL, QUICK)                 \
  void NAME(const ::mp_bench::Row& row);                                  \
  [[maybe_unused]] static const bool mp_bench_registered_##NAME =         \
      ::mp_bench::register_row({#NAME, IMPL, ORDER, FULL, QUICK, &NAME}); \
  void NAME(const ::mp_bench::Row& row)

// The echo loop of pipe_roundtrip's and listener_roundtrip's children: sends back every
// message until None (nullopt) arrives. In connection_rows.cpp, as the next one.
void echo_until_none(mp::Connection& conn);
// Times row.size() round trips (send(i); recv() == i, after 100 untimed ones) with a
// started echo child, then stops and joins it (releasing `reaper`); the mean round trip
// in us. `what` names the echo in errors.
double time_echo_roundtrips(const Row& row, mp::Connection& conn, mp::Process& child,
                            ReapOnError& reaper, const std::string& what);

// The argument that makes mp-bench exit at once (probe_spawn re-executes itself with it).
inline constexpr std::string_view kProbeExitArgument = "--probe-exit";

}  // namespace mp_bench
