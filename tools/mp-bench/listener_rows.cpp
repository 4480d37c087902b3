// listener_roundtrip: an mp::Listener on a Unix socket (with an authkey) and a child that
// connects with mp::Client and echoes what it receives. Python: listener_roundtrip() and
// listener_echo() in bench/python/mp_bench.py. Timed: N x (send(i); recv() == i) after
// 100 untimed round trips; run value = mean in us. Its floor: probe_socket_roundtrip.
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <mp/connection.hpp>
#include <mp/context.hpp>
#include <mp/listener.hpp>
#include <mp/process.hpp>

#include "bench.hpp"

namespace mp_bench {
namespace {

constexpr int kWarmupRounds = 100;
constexpr const char* kAuthkey = "mp-bench";

using Message = std::optional<std::int64_t>;  // nullopt plays Python's None

void listener_echo(std::string address) {
  mp::Connection conn = mp::Client(address, {.authkey = kAuthkey});
  for (;;) {
    const auto message = conn.recv<Message>();
    if (!message) break;
    conn.send(message);
  }
}

}  // namespace

void listener_roundtrip(const Row& row) {
  const std::int64_t n = row.size();
  const mp::Context context = mp::get_context(row.options().start_method);
  std::vector<double> runs;
  for (int run = 0; run < row.runs(); ++run) {
    // An abstract Unix address: the same socket as a path, nothing to clean up.
    mp::Listener listener("", {.authkey = kAuthkey});
    mp::Process child = context.process(&listener_echo, listener.address());
    ReapOnError reaper(child);
    child.start();
    mp::Connection conn = listener.accept();
    auto round_trip = [&](std::int64_t i) {
      conn.send(Message(i));
      if (conn.recv<Message>() != i) throw BenchError("listener echo mismatch");
    };
    for (int i = 0; i < kWarmupRounds; ++i) round_trip(i);
    const auto start = Clock::now();
    for (std::int64_t i = 0; i < n; ++i) {
      if ((i & 1023) == 0) check_deadline();
      round_trip(i);
    }
    runs.push_back(seconds_since(start) / static_cast<double>(n) * 1e6);
    conn.send(Message());
    if (!child.join(std::chrono::seconds(60))) throw BenchError("listener echo child did not end");
    reaper.release();
    if (child.exitcode() != 0)
      throw BenchError("listener echo child: " + describe_exit(child.exitcode()));
  }
  row.emit(
      {{"N", n}, {"family", std::string("AF_UNIX")}, {"start_method", row.options().start_method}},
      "roundtrip_us", runs, "us");
}

}  // namespace mp_bench
