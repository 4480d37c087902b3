// pipe_roundtrip: a duplex mp::Pipe to a child that echoes what it receives.
// Python: bench_pipe_roundtrip() and pipe_echo() in bench/python/mp_bench.py. Timed:
// N x (send(i); recv() == i) after 100 untimed round trips; run value = mean in us.
#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <mp/connection.hpp>
#include <mp/context.hpp>
#include <mp/process.hpp>

#include "bench.hpp"

namespace mp_bench {
namespace {

constexpr int kWarmupRounds = 100;

// nullopt plays Python's None: the child leaves its loop.
using Message = std::optional<std::int64_t>;

// A free function taking Connection&: the target of a child with any start method.
void pipe_echo(mp::Connection& conn) {
  echo_until_none(conn);
  conn.close();
}

}  // namespace

void echo_until_none(mp::Connection& conn) {
  for (;;) {
    const auto message = conn.recv<Message>();
    if (!message) break;
    conn.send(message);
  }
}

double time_echo_roundtrips(const Row& row, mp::Connection& conn, mp::Process& child,
                            ReapOnError& reaper, const std::string& what) {
  auto round_trip = [&](std::int64_t i) {
    conn.send(Message(i));
    if (conn.recv<Message>() != i) throw BenchError(what + " mismatch");
  };
  for (int i = 0; i < kWarmupRounds; ++i) round_trip(i);
  const std::int64_t n = row.size();
  const auto start = Clock::now();
  for (std::int64_t i = 0; i < n; ++i) {
    if ((i & 1023) == 0) check_deadline();
    round_trip(i);
  }
  const double per_round_trip_us = seconds_since(start) / static_cast<double>(n) * 1e6;
  conn.send(Message());
  if (!child.join(std::chrono::seconds(60))) throw BenchError(what + " child did not end");
  reaper.release();
  if (child.exitcode() != 0) throw BenchError(what + " child: " + describe_exit(child.exitcode()));
  return per_round_trip_us;
}

MP_BENCH_ROW(pipe_roundtrip, 1000, 20'000, 5'000) {
  const std::int64_t n = row.size();
  const mp::Context context = mp::get_context(row.options().start_method);
  std::vector<double> runs;
  for (int run = 0; run < row.runs(); ++run) {
    auto [parent_conn, child_conn] = mp::Pipe();
    mp::Process child = context.process(&pipe_echo, std::move(child_conn));
    ReapOnError reaper(child);
    child.start();
    runs.push_back(time_echo_roundtrips(row, parent_conn, child, reaper, "pipe echo"));
  }
  row.emit({{"N", n}, {"start_method", row.options().start_method}}, "roundtrip_us", runs, "us");
}

}  // namespace mp_bench
