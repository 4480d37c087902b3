// The parent's side of the set/get rows (manager_dict_set_get and the map rows beside
// it): per run a child times N sets then N gets of its map and sends back the two times
// and the sum of what it read; the parent checks the map and emits set/get_ops_per_s.
#pragma once

#include <cstddef>
#include <cstdint>
#include <tuple>
#include <vector>

#include <mp/connection.hpp>

#include "bench.hpp"

namespace mp_bench {

// What a set/get child sends back: seconds of the sets, of the gets, and the sum read.
using SetGetTimes = std::tuple<double, double, std::int64_t>;

// Runs the child `make_child(sender)` returns (with a function giving its map's size
// afterwards) once per run, checks the map and emits the row's two lines.
template <class MakeChild>
void emit_set_get(const Row& row, MakeChild make_child) {
  const std::int64_t n = row.size();
  std::vector<double> set_runs, get_runs;
  for (int run = 0; run < row.runs(); ++run) {
    check_deadline();
    auto [recv_conn, send_conn] = mp::Pipe(false);
    auto [child, size_of_map] = make_child(std::move(send_conn));
    ReapOnError reaper(child);
    child.start();
    if (!recv_conn.poll(kResultTimeout)) throw BenchError("child sent no result");
    const auto [t_set, t_get, total] = recv_conn.recv<SetGetTimes>();
    join_ok(child, "the map client");
    reaper.release();
    if (total != n * (n - 1) / 2 || size_of_map() != static_cast<std::size_t>(n))
      throw BenchError("map contents wrong");
    set_runs.push_back(static_cast<double>(n) / t_set);
    get_runs.push_back(static_cast<double>(n) / t_get);
  }
  const JsonObject params = {
      {"N", n}, {"key", std::string("int i")}, {"start_method", row.options().start_method}};
  row.emit(params, "set_ops_per_s", set_runs, "ops/s");
  row.emit(params, "get_ops_per_s", get_runs, "ops/s");
}

}  // namespace mp_bench
