// value_lock_increment: two children each add 1 to a shared Value<int> N times under
// its lock. Python: bench_value_lock_increment() and value_incrementer() in
// bench/python/mp_bench.py: timed from go.set() until both children report done;
// increments_per_s = 2N / time; "ok" = the final value is 2N in every run. Python's
// `with v.get_lock(): v.value += 1` is mp's v.update().
#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <mp/context.hpp>
#include <mp/process.hpp>
#include <mp/sharedctypes.hpp>
#include <mp/synchronize.hpp>

#include "bench.hpp"

namespace mp_bench {
namespace {

void value_incrementer(mp::Value<int> value, std::int64_t n, mp::Semaphore ready, mp::Event go,
                       mp::Semaphore done) {
  ready.release();
  go.wait();
  for (std::int64_t i = 0; i < n; ++i) value.update([](int& v) { ++v; });
  done.release();
}

}  // namespace

MP_BENCH_ROW(value_lock_increment, 1100, 200'000, 50'000) {
  const std::int64_t n = row.size();
  const mp::Context context = mp::get_context(row.options().start_method);
  std::vector<double> runs;
  bool ok = true;
  std::vector<std::int64_t> finals;
  for (int run = 0; run < row.runs(); ++run) {
    mp::Value<int> value(0);
    mp::Semaphore ready(0), done(0);
    mp::Event go;
    std::vector<mp::Process> children;
    for (int i = 0; i < 2; ++i)
      children.push_back(context.process(&value_incrementer, value, n, ready, go, done));
    runs.push_back(static_cast<double>(2 * n) /
                   race_children(children, ready, go, done, "incrementer"));
    finals.push_back(value.value());
    ok = ok && finals.back() == 2 * n;
  }
  row.emit({{"N", n}, {"processes", std::int64_t{2}}, {"start_method", row.options().start_method}},
           "increments_per_s", runs, "incr/s", {{"ok", ok}});
  if (!ok) throw BenchError("final counts != 2N = " + std::to_string(2 * n));
}

}  // namespace mp_bench
