// lock_uncontended, barrier_cycle, event_pingpong: the rows of mp::synchronize.
// Python: bench_lock_uncontended(), bench_barrier_cycle(), bench_event_pingpong() in
// bench/python/mp_bench.py, with the same timed sections, warm-ups and metrics.
#include <chrono>
#include <cstdint>
#include <vector>

#include <mp/context.hpp>
#include <mp/process.hpp>
#include <mp/synchronize.hpp>

#include "bench.hpp"

namespace mp_bench {
namespace {

constexpr int kWarmup = 100;

// Children: free functions taking handles, so every start method can run them.
void barrier_worker(mp::Barrier barrier, std::int64_t cycles) {
  for (std::int64_t i = 0; i < cycles; ++i) barrier.wait();
}

void event_ponger(mp::Event ping, mp::Event pong, std::int64_t rounds) {
  for (std::int64_t i = 0; i < rounds; ++i) {
    ping.wait();
    ping.clear();
    pong.set();
  }
}

}  // namespace

// Timed, in the parent: N x (acquire(); release()) on one mp::Lock.
MP_BENCH_ROW(lock_uncontended, 1200, 1'000'000, 200'000) {
  const std::int64_t n = row.size();
  mp::Lock lock;
  std::vector<double> runs;
  for (int run = 0; run < row.runs(); ++run) {
    check_deadline();
    const auto start = Clock::now();
    for (std::int64_t i = 0; i < n; ++i) {
      lock.acquire();
      lock.release();
    }
    runs.push_back(seconds_since(start) / static_cast<double>(n) * 1e9);
  }
  row.emit({{"N", n}, {"start_method", row.options().start_method}}, "ns_per_pair", runs, "ns");
}

// Barrier(2) shared by the parent and one child: 100 untimed cycles, then N timed.
MP_BENCH_ROW(barrier_cycle, 1500, 10'000, 2'000) {
  const std::int64_t n = row.size();
  const mp::Context context = mp::get_context(row.options().start_method);
  std::vector<double> runs;
  for (int run = 0; run < row.runs(); ++run) {
    mp::Barrier barrier(2);
    mp::Process child = context.process(&barrier_worker, barrier, kWarmup + n);
    ReapOnError reaper(child);
    child.start();
    barrier.wait(kReadyTimeout);
    for (int i = 0; i < kWarmup - 1; ++i) barrier.wait();
    const auto start = Clock::now();
    for (std::int64_t i = 0; i < n; ++i) barrier.wait();
    runs.push_back(seconds_since(start) / static_cast<double>(n) * 1e6);
    join_ok(child, "barrier child");
    reaper.release();
  }
  row.emit({{"N", n}, {"parties", std::int64_t{2}}, {"start_method", row.options().start_method}},
           "us_per_cycle", runs, "us");
}

// Two Events ping-pong: parent set(ping), wait(pong), clear(pong); the child mirrors.
MP_BENCH_ROW(event_pingpong, 1600, 10'000, 2'000) {
  const std::int64_t n = row.size();
  const mp::Context context = mp::get_context(row.options().start_method);
  std::vector<double> runs;
  for (int run = 0; run < row.runs(); ++run) {
    mp::Event ping, pong;
    mp::Process child = context.process(&event_ponger, ping, pong, kWarmup + n);
    ReapOnError reaper(child);
    child.start();
    auto round_trip = [&] {
      ping.set();
      pong.wait();
      pong.clear();
    };
    for (int i = 0; i < kWarmup; ++i) round_trip();
    const auto start = Clock::now();
    for (std::int64_t i = 0; i < n; ++i) round_trip();
    runs.push_back(seconds_since(start) / static_cast<double>(n) * 1e6);
    join_ok(child, "event child");
    reaper.release();
  }
  row.emit({{"N", n}, {"start_method", row.options().start_method}}, "roundtrip_us", runs, "us");
}

}  // namespace mp_bench
