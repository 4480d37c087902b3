// What rows with children share: joining them and waiting for their signals, as the
// Children and wait_sem helpers of bench/python/mp_bench.py.
#include <deque>
#include <string>
#include <vector>

#include <mp/process.hpp>
#include <mp/synchronize.hpp>

#include "bench.hpp"

namespace mp_bench {

void join_ok(mp::Process& child, const std::string& what) {
  if (!child.join(kJoinTimeout)) throw BenchError(what + " did not end");
  if (child.exitcode() != 0) throw BenchError(what + ": " + describe_exit(child.exitcode()));
}

void wait_semaphore(mp::Semaphore& semaphore, int count, std::chrono::seconds limit,
                    const char* what) {
  for (int i = 0; i < count; ++i)
    if (!semaphore.acquire(true, limit)) throw BenchError(std::string("children not ") + what);
}

double race_children(std::vector<mp::Process>& children, mp::Semaphore& ready, mp::Event& go,
                     mp::Semaphore& done, const std::string& what) {
  std::deque<ReapOnError> reapers;  // immovable: a deque never relocates them
  for (auto& child : children) {
    reapers.emplace_back(child);
    child.start();
  }
  const int count = static_cast<int>(children.size());
  wait_semaphore(ready, count, kReadyTimeout, "ready");
  const auto start = Clock::now();
  go.set();
  wait_semaphore(done, count, kResultTimeout, "done");
  const double seconds = seconds_since(start);
  for (auto& child : children) join_ok(child, what);
  for (auto& reaper : reapers) reaper.release();
  return seconds;
}

}  // namespace mp_bench
