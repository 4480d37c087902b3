// Pool rows, as bench/python/mp_bench.py times them, each on a running Pool(2):
//   pool_map_trivial[_chunk1]  pool.map(square, range(N)) with the default chunksize or
//                              chunksize=1, after a warm-up map of 1000 items;
//                              tasks_per_s = N / time; results checked (length, sum).
//   pool_apply_async_latency   N sequential apply_async(square, i).get(), after 100
//                              untimed calls; roundtrip_us = time / N.
//   pool_map_cpu               64 x count_primes_below(20000) serially, then through
//                              pool.map(chunksize=1); speedup = serial / parallel.
#include <cstdint>
#include <numeric>
#include <string>
#include <vector>

#include <mp/pool.hpp>

#include "bench.hpp"
#include "workloads.hpp"

namespace mp_bench {
namespace {

constexpr int kPrimeN = 20'000;
constexpr int kPrimesBelowN = 2262;

void pool_map_trivial_impl(const Row& row, std::size_t chunksize) {
  const std::int64_t n = row.size();
  std::int64_t expected = 0;
  for (std::int64_t i = 0; i < n; ++i) expected += i * i;
  std::vector<double> runs;
  mp::Pool pool({.processes = 2, .start_method = row.options().start_method});
  // Vectors, not std::views::iota, which clang++ 14 cannot instantiate from libstdc++ 12.
  std::vector<std::int64_t> warmup(1000);
  std::iota(warmup.begin(), warmup.end(), std::int64_t{0});
  std::vector<std::int64_t> items(static_cast<std::size_t>(n));
  std::iota(items.begin(), items.end(), std::int64_t{0});
  (void)pool.map(square, warmup);
  for (int run = 0; run < row.runs(); ++run) {
    check_deadline();
    const auto start = Clock::now();
    auto results = pool.map(square, items, chunksize ? std::optional(chunksize) : std::nullopt);
    const double elapsed = seconds_since(start);
    std::int64_t sum = 0;
    for (auto v : results) sum += v;
    if (static_cast<std::int64_t>(results.size()) != n || sum != expected)
      throw BenchError("pool.map returned wrong results");
    runs.push_back(static_cast<double>(n) / elapsed);
  }
  const std::int64_t effective =
      chunksize ? static_cast<std::int64_t>(chunksize) : (n + 4 * 2 - 1) / (4 * 2);
  row.emit({{"N", n},
            {"processes", std::int64_t{2}},
            {"chunksize",
             chunksize ? JsonValue(static_cast<std::int64_t>(chunksize)) : JsonValue(nullptr)},
            {"effective_chunksize", effective},
            {"start_method", row.options().start_method}},
           "tasks_per_s", runs, "tasks/s");
}

}  // namespace

MP_BENCH_ROW(pool_map_trivial, 300, 1'000'000, 200'000) { pool_map_trivial_impl(row, 0); }
MP_BENCH_ROW(pool_map_trivial_chunk1, 400, 50'000, 10'000) { pool_map_trivial_impl(row, 1); }

MP_BENCH_ROW(pool_apply_async_latency, 500, 5'000, 1'000) {
  const std::int64_t n = row.size();
  std::vector<double> runs;
  mp::Pool pool({.processes = 2, .start_method = row.options().start_method});
  for (std::int64_t i = 0; i < 100; ++i) (void)pool.apply_async(square, i).get();
  for (int run = 0; run < row.runs(); ++run) {
    check_deadline();
    const auto start = Clock::now();
    for (std::int64_t i = 0; i < n; ++i)
      if (pool.apply_async(square, i).get() != i * i)
        throw BenchError("apply_async returned a wrong result");
    runs.push_back(seconds_since(start) / static_cast<double>(n) * 1e6);
  }
  row.emit({{"N", n}, {"processes", std::int64_t{2}}, {"start_method", row.options().start_method}},
           "roundtrip_us", runs, "us");
}

MP_BENCH_ROW(pool_map_cpu, 600, 64, 16) {
  const std::int64_t chunks = row.size();
  const std::vector<int> tasks(static_cast<std::size_t>(chunks), kPrimeN);
  std::vector<double> serial_runs, parallel_runs, speedups;
  mp::Pool pool({.processes = 2, .start_method = row.options().start_method});
  (void)pool.map(count_primes_below, std::vector<int>{100, 100}, 1);
  for (int run = 0; run < row.runs(); ++run) {
    check_deadline();
    auto start = Clock::now();
    std::vector<int> serial;
    for (int x : tasks) serial.push_back(count_primes_below(x));
    const double t_serial = seconds_since(start);
    start = Clock::now();
    auto parallel = pool.map(count_primes_below, tasks, 1);
    const double t_parallel = seconds_since(start);
    if (serial != parallel || serial[0] != kPrimesBelowN)
      throw BenchError("prime counts wrong: " + std::to_string(serial[0]) + " / " +
                       std::to_string(parallel[0]));
    serial_runs.push_back(t_serial);
    parallel_runs.push_back(t_parallel);
    speedups.push_back(t_serial / t_parallel);
  }
  const JsonObject params{{"chunks", chunks},
                          {"n_per_chunk", std::int64_t{kPrimeN}},
                          {"processes", std::int64_t{2}},
                          {"chunksize", std::int64_t{1}},
                          {"start_method", row.options().start_method}};
  row.emit(params, "speedup", speedups, "x");
  row.emit(params, "parallel_s", parallel_runs, "s");
  row.emit(params, "serial_s", serial_runs, "s");
}

}  // namespace mp_bench
