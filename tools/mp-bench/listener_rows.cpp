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

constexpr const char* kAuthkey = "mp-bench";

void listener_echo(std::string address) {
  mp::Connection conn = mp::Client(address, {.authkey = kAuthkey});
  echo_until_none(conn);
}

}  // namespace

MP_BENCH_ROW(listener_roundtrip, 1900, 20'000, 5'000) {
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
    runs.push_back(time_echo_roundtrips(row, conn, child, reaper, "listener echo"));
  }
  row.emit(
      {{"N", n}, {"family", std::string("AF_UNIX")}, {"start_method", row.options().start_method}},
      "roundtrip_us", runs, "us");
}

}  // namespace mp_bench
