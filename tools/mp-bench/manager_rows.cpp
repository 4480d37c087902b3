// The Manager rows. Python: manager_dict_set_get() / manager_dict_client() and
// manager_dict_concurrent() / manager_dict_writer() in bench/python/mp_bench.py.
//   manager_dict_set_get: one Manager (created untimed), a fresh dict per run; a child
//     reads len(d) (untimed), then times N x d[i] = i and N x d[i] itself and sends both
//     times back; the parent checks len(d) == N and the sum. set/get_ops_per_s = N / time.
//   manager_dict_concurrent: the same dict, two children each set N keys of their own
//     (d[w*N + i] = i); timed from go.set() until both report done; ops_per_s = 2N / time.
// Python's proxies do a socket round trip to the manager's server per operation; mp's
// dict lives in shared memory and each operation runs in the calling process.
#include <chrono>
#include <cstdint>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include <mp/connection.hpp>
#include <mp/context.hpp>
#include <mp/managers.hpp>
#include <mp/process.hpp>
#include <mp/synchronize.hpp>

#include "bench.hpp"
#include "set_get.hpp"

namespace mp_bench {
namespace {

using Dict = mp::SharedDict<std::int64_t, std::int64_t>;

// Connection&: a Connection moves into the child's arguments (as in pipe_roundtrip).
void manager_dict_client(Dict d, std::int64_t n, mp::Connection& result) {
  (void)d.size();  // Python: len(d), which connects the proxy before the clock starts
  const auto t0 = Clock::now();
  for (std::int64_t i = 0; i < n; ++i) d[i] = i;
  const auto t1 = Clock::now();
  std::int64_t total = 0;
  for (std::int64_t i = 0; i < n; ++i) total += d[i];
  const auto t2 = Clock::now();
  result.send(SetGetTimes(std::chrono::duration<double>(t1 - t0).count(),
                          std::chrono::duration<double>(t2 - t1).count(), total));
  result.close();
}

void manager_dict_writer(Dict d, std::int64_t n, std::int64_t writer, mp::Semaphore ready,
                         mp::Event go, mp::Semaphore done) {
  (void)d.size();
  ready.release();
  go.wait();
  const std::int64_t base = writer * n;
  for (std::int64_t i = 0; i < n; ++i) d[base + i] = i;
  done.release();
}

}  // namespace

MP_BENCH_ROW(manager_dict_set_get, 1300, 20'000, 5'000) {
  const mp::Context context = mp::get_context(row.options().start_method);
  mp::Manager manager;
  emit_set_get(row, [&](mp::Connection sender) {
    auto d = manager.dict<std::int64_t, std::int64_t>();
    mp::Process child = context.process(&manager_dict_client, d, row.size(), std::move(sender));
    return std::pair(std::move(child), [d] { return d.size(); });
  });
}

MP_BENCH_ROW(manager_dict_concurrent, 1400, 20'000, 5'000) {
  const std::int64_t n = row.size();
  const mp::Context context = mp::get_context(row.options().start_method);
  std::vector<double> runs;
  mp::Manager manager;
  for (int run = 0; run < row.runs(); ++run) {
    check_deadline();
    auto d = manager.dict<std::int64_t, std::int64_t>();
    mp::Semaphore ready(0), done(0);
    mp::Event go;
    std::vector<mp::Process> children;
    for (std::int64_t w = 0; w < 2; ++w)
      children.push_back(context.process(&manager_dict_writer, d, n, w, ready, go, done));
    runs.push_back(static_cast<double>(2 * n) / race_children(children, ready, go, done, "child"));
    if (d.size() != static_cast<std::size_t>(2 * n))
      throw BenchError("manager dict contents wrong");
  }
  row.emit({{"N", n},
            {"processes", std::int64_t{2}},
            {"key", std::string("int i")},
            {"start_method", row.options().start_method}},
           "ops_per_s", runs, "ops/s");
}

}  // namespace mp_bench
