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
  for (;;) {
    const auto message = conn.recv<Message>();
    if (!message) break;
    conn.send(message);
  }
  conn.close();
}

}  // namespace

void pipe_roundtrip(const Row& row) {
  const std::int64_t n = row.size();
  const mp::Context context = mp::get_context(row.options().start_method);
  std::vector<double> runs;
  for (int run = 0; run < row.runs(); ++run) {
    auto [parent_end, child_conn] = mp::Pipe();
    auto& parent_conn = parent_end;  // clang++ 14 cannot capture a structured binding
    mp::Process child = context.process(&pipe_echo, std::move(child_conn));
    ReapOnError reaper(child);
    child.start();
    auto round_trip = [&](std::int64_t i) {
      parent_conn.send(Message(i));
      if (parent_conn.recv<Message>() != i) throw BenchError("pipe echo mismatch");
    };
    for (int i = 0; i < kWarmupRounds; ++i) round_trip(i);
    const auto start = Clock::now();
    for (std::int64_t i = 0; i < n; ++i) {
      if ((i & 1023) == 0) check_deadline();
      round_trip(i);
    }
    runs.push_back(seconds_since(start) / static_cast<double>(n) * 1e6);
    parent_conn.send(Message());
    if (!child.join(std::chrono::seconds(60))) throw BenchError("pipe echo child did not end");
    reaper.release();
    if (child.exitcode() != 0)
      throw BenchError("pipe echo child: " + describe_exit(child.exitcode()));
  }
  row.emit({{"N", n}, {"start_method", row.options().start_method}}, "roundtrip_us", runs, "us");
}

}  // namespace mp_bench
