// mp-bench-mpi: the rows of mp's pools over MPI, run under mpirun (bench/mpi.sh runs it
// beside mpi4py.futures). One JSON line per row, as mp-bench prints:
//   mpi_pool_map_cpu              64 x count_primes_below(20000) serially, then through
//                                 the MPI pool (chunksize 1), then through a local
//                                 Pool(2) in the same run; speedup = serial / parallel.
//   mpi_pool_apply_async_latency  N sequential apply_async(square, i).get(), after 100
//                                 untimed calls; roundtrip_us = time / N.
//   mpi_pool_map_trivial          pool.map(square, range(N)) with chunksize N / 64
//                                 (mpi4py's side uses the same); tasks_per_s.
//   mpi_ping_pong                 (--ping-pong, without a Session) 1-byte MPI_Send/Recv
//                                 round trips between ranks 0 and 1: the floor.
#include <mpi.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <numeric>
#include <stdexcept>
#include <string>
#include <vector>

#include <mp/context.hpp>
#include <mp/mpi.hpp>
#include <mp/pool.hpp>

#include "../workloads.hpp"

namespace {

using mp_bench::count_primes_below;
using mp_bench::square;

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const std::size_t n = v.size();
  return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

void emit(const char* bench, const std::string& params, const char* metric,
          const std::vector<double>& runs, const char* unit) {
  std::printf(
      "{\"impl\": \"mp\", \"bench\": \"%s\", \"params\": {%s}, \"metric\": \"%s\", "
      "\"value\": %.6g, \"unit\": \"%s\", \"runs\": %zu}\n",
      bench, params.c_str(), metric, median(runs), unit, runs.size());
  std::fflush(stdout);
}

constexpr int kRuns = 3;

void map_cpu(int processes) {
  const std::vector<int> tasks(64, 20'000);
  mp::Pool remote({.start_method = "mpi"});
  mp::Pool local({.processes = 2});
  (void)remote.map(count_primes_below, std::vector<int>{100, 100}, 1);
  (void)local.map(count_primes_below, std::vector<int>{100, 100}, 1);
  std::vector<double> speedups, local_speedups;
  for (int run = 0; run < kRuns; ++run) {
    auto start = Clock::now();
    std::vector<int> serial;
    for (int x : tasks) serial.push_back(count_primes_below(x));
    const double t_serial = seconds_since(start);
    start = Clock::now();
    if (remote.map(count_primes_below, tasks, 1) != serial) throw std::runtime_error("wrong");
    speedups.push_back(t_serial / seconds_since(start));
    start = Clock::now();
    if (local.map(count_primes_below, tasks, 1) != serial) throw std::runtime_error("wrong");
    local_speedups.push_back(t_serial / seconds_since(start));
  }
  const std::string params =
      "\"chunks\": 64, \"n_per_chunk\": 20000, \"processes\": " + std::to_string(processes);
  emit("mpi_pool_map_cpu", params, "speedup", speedups, "x");
  emit("mpi_pool_map_cpu", params + ", \"baseline\": \"local Pool(2)\"", "local_speedup",
       local_speedups, "x");
}

void apply_latency(std::int64_t n) {
  mp::Pool pool({.start_method = "mpi"});
  for (std::int64_t i = 0; i < 100; ++i) (void)pool.apply_async(square, i).get();
  std::vector<double> runs;
  for (int run = 0; run < kRuns; ++run) {
    const auto start = Clock::now();
    for (std::int64_t i = 0; i < n; ++i)
      if (pool.apply_async(square, i).get() != i * i) throw std::runtime_error("wrong");
    runs.push_back(seconds_since(start) / static_cast<double>(n) * 1e6);
  }
  emit("mpi_pool_apply_async_latency", "\"N\": " + std::to_string(n), "roundtrip_us", runs, "us");
}

void map_trivial(std::int64_t n) {
  mp::Pool pool({.start_method = "mpi"});
  std::vector<std::int64_t> items(static_cast<std::size_t>(n));
  std::iota(items.begin(), items.end(), std::int64_t{0});
  const std::size_t chunksize = static_cast<std::size_t>(n / 64);
  (void)pool.map(square, std::vector<std::int64_t>(1000, 1));
  std::vector<double> runs;
  for (int run = 0; run < kRuns; ++run) {
    const auto start = Clock::now();
    const auto results = pool.map(square, items, chunksize);
    const double elapsed = seconds_since(start);
    if (static_cast<std::int64_t>(results.size()) != n || results.back() != (n - 1) * (n - 1))
      throw std::runtime_error("wrong");
    runs.push_back(static_cast<double>(n) / elapsed);
  }
  emit("mpi_pool_map_trivial",
       "\"N\": " + std::to_string(n) + ", \"chunksize\": " + std::to_string(chunksize),
       "tasks_per_s", runs, "tasks/s");
}

int ping_pong(int& argc, char**& argv, int n) {
  MPI_Init(&argc, &argv);
  int rank = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  char byte = 0;
  std::vector<double> runs;
  for (int run = 0; run < kRuns + 1; ++run) {
    MPI_Barrier(MPI_COMM_WORLD);
    const auto start = Clock::now();
    for (int i = 0; i < n; ++i) {
      if (rank == 0) {
        MPI_Send(&byte, 1, MPI_BYTE, 1, 0, MPI_COMM_WORLD);
        MPI_Recv(&byte, 1, MPI_BYTE, 1, 0, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
      } else if (rank == 1) {
        MPI_Recv(&byte, 1, MPI_BYTE, 0, 0, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
        MPI_Send(&byte, 1, MPI_BYTE, 0, 0, MPI_COMM_WORLD);
      }
    }
    if (run > 0) runs.push_back(seconds_since(start) / n * 1e6);  // the first warms up
  }
  if (rank == 0) emit("mpi_ping_pong", "\"N\": " + std::to_string(n), "roundtrip_us", runs, "us");
  MPI_Finalize();
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  mp::freeze_support(argc, argv);
  const bool quick = argc > 1 && std::strcmp(argv[argc - 1], "--quick") == 0;
  if (argc > 1 && std::strcmp(argv[1], "--ping-pong") == 0)
    return ping_pong(argc, argv, quick ? 2000 : 20000);
  mp::mpi::Session mpi(argc, argv);
  int processes = 0;
  for (int w : mpi.workers_per_rank()) processes += w;
  try {
    map_cpu(processes);
    apply_latency(quick ? 1000 : 5000);
    map_trivial(quick ? 200'000 : 1'000'000);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "mp-bench-mpi: %s\n", e.what());
    return 1;
  }
  return 0;
}
