// A histogram in shared memory, filled in place by a Pool's workers: C++ data structures
// (a Boost.Interprocess vector and map) in an mp::ManagedSharedMemory segment, which
// every worker finds by name and updates at memory speed. Python's nearest is an Array
// of counters; a map of labels to counts has no shared-memory form there at all.
//
// Each worker draws `samples` pseudo-random numbers from a seed of its task, counts them
// into 10 bins (atomically, without any lock), and records under an mp::Lock how many
// samples each task added to a map keyed by task. The main process checks the totals.
//
// prints
//   bins: 10, samples: 80000
//   tasks recorded: 8
//   every sample counted once
#include <atomic>
#include <cstdint>
#include <mutex>
#include <numeric>
#include <optional>

#include <mp/interprocess.hpp>
#include <mp/mp.hpp>

#include "example.hpp"

namespace {

constexpr int kBins = 10;
constexpr int kTasks = 8;
constexpr long kSamplesPerTask = 10000;

using Bins = mp::ipc::vector<std::atomic<long>>;
using PerTask = mp::ipc::map<int, long>;

// Each worker's handles, set once by the pool's initializer.
std::optional<mp::ManagedSharedMemory> segment;
std::optional<mp::Lock> per_task_lock;

void attach(mp::ManagedSharedMemory shared, mp::Lock lock) {
  segment = shared;
  per_task_lock = lock;
}

long fill(int task) {
  auto* bins = segment->find<Bins>("bins");
  auto* per_task = segment->find<PerTask>("per_task");
  std::uint64_t state = 0x9e3779b97f4a7c15ULL * static_cast<std::uint64_t>(task + 1);
  for (long i = 0; i < kSamplesPerTask; ++i) {
    state ^= state << 13;
    state ^= state >> 7;
    state ^= state << 17;
    (*bins)[state % kBins].fetch_add(1, std::memory_order_relaxed);
  }
  std::scoped_lock guard(*per_task_lock);
  (*per_task)[task] += kSamplesPerTask;
  return kSamplesPerTask;
}

}  // namespace

int main(int argc, char** argv) {
  mp::freeze_support(argc, argv);
  example::parse_args(argc, argv);

  mp::ManagedSharedMemory shared(mp::create_only, 1 << 20);
  auto* manager = shared.get_segment_manager();
  auto* bins = shared.construct<Bins>("bins")(std::size_t{kBins}, manager);
  auto* per_task = shared.construct<PerTask>("per_task")(manager);
  mp::Lock lock;

  std::vector<int> tasks(kTasks);
  std::iota(tasks.begin(), tasks.end(), 0);
  {
    mp::Pool pool({.processes = 2, .initializer = mp::initializer(&attach, shared, lock)});
    const std::vector<long> added = pool.map(&fill, tasks);
    pool.close();
    pool.join();
    if (std::accumulate(added.begin(), added.end(), 0L) != kTasks * kSamplesPerTask) return 1;
  }
  long total = 0;
  for (const auto& bin : *bins) total += bin.load();
  example::say("bins: %zu, samples: %ld\n", bins->size(), total);
  example::say("tasks recorded: %zu\n", per_task->size());
  long recorded = 0;
  for (const auto& [task, count] : *per_task) recorded += count;
  if (total == kTasks * kSamplesPerTask && recorded == total)
    example::say("every sample counted once\n");
  shared.unlink();
  return 0;
}
