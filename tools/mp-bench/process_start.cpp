// process_start_fork / process_start_spawn / process_start_forkserver: start()+join() of
// a no-op mp::Process, one at a time (the fork server is started by the untimed warm-up,
// as CPython's is). Python: _process_start() in bench/python/mp_bench.py.
#include <chrono>
#include <optional>
#include <string>
#include <vector>

#include <mp/context.hpp>
#include <mp/process.hpp>

#include "bench.hpp"

namespace mp_bench {
namespace {

// A free function: every start method can run it (spawn pickles its address).
void noop() {}

// Seconds for one start()+join(); construction and the exit check are untimed.
double start_and_join_once(const mp::Context& context) {
  mp::Process process = context.process(&noop);
  ReapOnError reaper(process);
  const auto start = Clock::now();
  process.start();
  process.join();
  const double elapsed = seconds_since(start);
  reaper.release();
  const std::optional<int> exitcode = process.exitcode();
  process.close();
  if (exitcode != 0) throw BenchError("noop child: " + describe_exit(exitcode));
  return elapsed;
}

// Run value = median over N processes, in microseconds; one untimed warm-up first.
void process_start(const Row& row, const char* method) {
  const mp::Context context = mp::get_context(method);
  start_and_join_once(context);
  std::vector<double> runs;
  for (int run = 0; run < row.runs(); ++run) {
    std::vector<double> per_process;
    for (std::int64_t i = 0; i < row.size(); ++i) {
      check_deadline();
      per_process.push_back(start_and_join_once(context));
    }
    runs.push_back(median(per_process) * 1e6);
  }
  row.emit({{"N", row.size()}, {"start_method", std::string(method)}}, "per_process_us", runs,
           "us");
}

}  // namespace

MP_BENCH_ROW(process_start_fork, 100, 200, 50) { process_start(row, "fork"); }
MP_BENCH_ROW(process_start_spawn, 200, 20, 5) { process_start(row, "spawn"); }
MP_BENCH_ROW(process_start_forkserver, 210, 200, 50) { process_start(row, "forkserver"); }

}  // namespace mp_bench
