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

// The function that measures one row and emits its lines; throws to fail the row.
using BenchFunction = void (*)(const Row&);

// Rows, one function each (process_start.cpp, probes.cpp; later issues add theirs).
void process_start_fork(const Row& row);
void process_start_spawn(const Row& row);
void pipe_roundtrip(const Row& row);          // connection_rows.cpp
void value_lock_increment(const Row& row);    // sharedctypes_rows.cpp
void queue_throughput_small(const Row& row);  // queue_rows.cpp
void queue_throughput_1k(const Row& row);
void queue_throughput_1m(const Row& row);
void lock_uncontended(const Row& row);      // sync_rows.cpp
void manager_dict_set_get(const Row& row);  // manager_rows.cpp
void manager_dict_concurrent(const Row& row);
void barrier_cycle(const Row& row);
void event_pingpong(const Row& row);
void shared_memory_array_write(const Row& row);  // shared_memory_rows.cpp
void shared_memory_array_write_prefault(const Row& row);
void pool_map_trivial(const Row& row);  // pool_rows.cpp
void pool_map_trivial_chunk1(const Row& row);
void pool_apply_async_latency(const Row& row);
void pool_map_cpu(const Row& row);
void heap_churn(const Row& row);  // heap_rows.cpp

// Limit probes: plain POSIX, no mp, to show what the machine allows (probes.cpp).
void probe_fork(const Row& row);
void probe_atomic_pair(const Row& row);
void probe_spawn(const Row& row);
void probe_pipe_roundtrip(const Row& row);
void probe_futex_roundtrip(const Row& row);
void probe_memcpy(const Row& row);
void probe_shm_first_touch(const Row& row);
void probe_boost_message_queue(const Row& row);  // queue_rows.cpp
void listener_roundtrip(const Row& row);         // listener_rows.cpp
void peer_boost_ipc_map(const Row& row);         // peer_rows.cpp
void interprocess_map_set_get(const Row& row);
void peer_boost_process_spawn(const Row& row);
void process_start_spawn_rss(const Row& row);
void interprocess_vector_update(const Row& row);

// The echo loop of pipe_roundtrip's and listener_roundtrip's children: sends back every
// message until None (nullopt) arrives. In connection_rows.cpp, as the next one.
void echo_until_none(mp::Connection& conn);
// Times row.size() round trips (send(i); recv() == i, after 100 untimed ones) with a
// started echo child, then stops and joins it (releasing `reaper`); the mean round trip
// in us. `what` names the echo in errors.
double time_echo_roundtrips(const Row& row, mp::Connection& conn, mp::Process& child,
                            ReapOnError& reaper, const std::string& what);
void probe_socket_roundtrip(const Row& row);  // probes.cpp

// The argument that makes mp-bench exit at once (probe_spawn re-executes itself with it).
inline constexpr std::string_view kProbeExitArgument = "--probe-exit";

}  // namespace mp_bench
