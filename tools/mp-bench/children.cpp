// What rows with children share: joining them and waiting for their signals, as the
// Children and wait_sem helpers of bench/python/mp_bench.py.
#include <string>

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

}  // namespace mp_bench
