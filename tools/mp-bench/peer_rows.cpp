// Boost's peers of mp, measured beside mp's rows ("impl": "peer"), and mp's containers
// in shared memory (<mp/interprocess.hpp>, "impl": "mp-cpp").
//
//   peer_boost_ipc_map: boost::interprocess::map<int64, int64> in a managed_shared_memory,
//     each operation under an interprocess_mutex: the work of manager_dict_set_get (a
//     child times N x m[i] = i, then N x reads of m[i], and sends both times back).
//   interprocess_map_set_get: the same with mp::ManagedSharedMemory and an mp::Lock.
//   peer_boost_process_spawn: Boost.Process v2 (its default launcher) runs this binary
//     with --probe-exit and waits for it; per-process time at a parent resident set of
//     about 10 MB and 1 GB (ballast touched, untimed): metrics per_process_us_at_10MB
//     and per_process_us_at_1GB.
//   process_start_spawn_rss: mp::Process (spawn) of a no-op, at the same two sizes.
//   interprocess_vector_update: an mp::ipc::vector<double> of 256 MiB in a managed
//     segment, updated in place (x = x * a + b) by two processes, each half of it; timed
//     from go until both are done; GB_per_s = vector bytes / time (each byte read and
//     written once), the figure to hold against probe_memcpy's.
#define BOOST_PROCESS_USE_STD_FS 1

#include <sys/mman.h>
#include <unistd.h>

#include <boost/asio/io_context.hpp>
#include <boost/interprocess/allocators/allocator.hpp>
#include <boost/interprocess/containers/map.hpp>
#include <boost/interprocess/managed_shared_memory.hpp>
#include <boost/interprocess/sync/interprocess_mutex.hpp>
#include <boost/interprocess/sync/scoped_lock.hpp>
#include <boost/optional.hpp>  // Boost.Process 1.81 names it without including it
#include <boost/process/v2/process.hpp>

#include <chrono>
#include <cstdint>
#include <cstring>
#include <mutex>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include <mp/connection.hpp>
#include <mp/context.hpp>
#include <mp/interprocess.hpp>
#include <mp/process.hpp>
#include <mp/synchronize.hpp>

#include "bench.hpp"
#include "set_get.hpp"

namespace mp_bench {
namespace {

namespace bip = boost::interprocess;

// ---- maps ----

using BoostMap = bip::map<std::int64_t, std::int64_t, std::less<std::int64_t>,
                          bip::allocator<std::pair<const std::int64_t, std::int64_t>,
                                         bip::managed_shared_memory::segment_manager>>;
using MpMap = mp::ipc::map<std::int64_t, std::int64_t>;

// Times n sets then n gets, each under `lock`.
template <class Map, class Lock>
SetGetTimes time_set_get(Map& map, Lock& lock, std::int64_t n) {
  const auto t0 = Clock::now();
  for (std::int64_t i = 0; i < n; ++i) {
    std::scoped_lock guard(lock);
    map[i] = i;
  }
  const auto t1 = Clock::now();
  std::int64_t total = 0;
  for (std::int64_t i = 0; i < n; ++i) {
    std::scoped_lock guard(lock);
    total += map.find(i)->second;
  }
  const auto t2 = Clock::now();
  return {std::chrono::duration<double>(t1 - t0).count(),
          std::chrono::duration<double>(t2 - t1).count(), total};
}

void boost_map_client(std::string name, std::int64_t n, mp::Connection& result) {
  bip::managed_shared_memory segment(bip::open_only, name.c_str());
  auto* map = segment.find<BoostMap>("map").first;
  auto* mutex = segment.find<bip::interprocess_mutex>("mutex").first;
  result.send(time_set_get(*map, *mutex, n));
  result.close();
}

void mp_map_client(mp::ManagedSharedMemory segment, mp::Lock lock, std::int64_t n,
                   mp::Connection& result) {
  auto* map = segment.find<MpMap>("map");
  result.send(time_set_get(*map, lock, n));
  result.close();
}

// ---- spawning at a given parent resident set ----

// About `megabytes` MB of touched anonymous memory, for the life of the object.
class Ballast {
 public:
  explicit Ballast(std::size_t megabytes) : size_(megabytes << 20) {
    if (size_ == 0) return;
    data_ = ::mmap(nullptr, size_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (data_ == MAP_FAILED) throw BenchError("mmap of the ballast failed");
    std::memset(data_, 0x5a, size_);
  }
  ~Ballast() {
    if (size_ != 0) ::munmap(data_, size_);
  }
  Ballast(const Ballast&) = delete;
  Ballast& operator=(const Ballast&) = delete;

 private:
  std::size_t size_;
  void* data_ = nullptr;
};

// The resident set in MB (/proc/self/statm).
double resident_mb() {
  long pages = 0, resident = 0;
  if (FILE* f = std::fopen("/proc/self/statm", "r")) {
    if (std::fscanf(f, "%ld %ld", &pages, &resident) != 2) resident = 0;
    std::fclose(f);
  }
  return static_cast<double>(resident) * static_cast<double>(::sysconf(_SC_PAGESIZE)) / 1e6;
}

// The parent resident sets measured, in MB, and the metric of each (one metric per size,
// so that tables keyed by (bench, metric) keep both).
struct RssTarget {
  double megabytes;
  const char* metric;
};
constexpr RssTarget kRssTargets[] = {{10, "per_process_us_at_10MB"},
                                     {1000, "per_process_us_at_1GB"}};

template <class StartOnce>
void emit_spawn_rows(const Row& row, StartOnce start_once) {
  for (const RssTarget& target : kRssTargets) {
    const double missing = target.megabytes - resident_mb();
    Ballast ballast(missing > 0 ? static_cast<std::size_t>(missing * 1e6) >> 20 : 0);
    const double rss = resident_mb();
    start_once();  // warm-up
    std::vector<double> runs;
    for (int run = 0; run < row.runs(); ++run) {
      std::vector<double> per_process;
      for (std::int64_t i = 0; i < row.size(); ++i) {
        check_deadline();
        const auto start = Clock::now();
        start_once();
        per_process.push_back(seconds_since(start));
      }
      runs.push_back(median(per_process) * 1e6);
    }
    row.emit({{"N", row.size()}, {"parent_rss_MB", static_cast<std::int64_t>(rss + 0.5)}},
             target.metric, runs, "us");
  }
}

void noop() {}

// ---- in-place update ----

using Doubles = mp::ipc::vector<double>;
constexpr double kScale = 1.0000001, kOffset = 0.5;

void update_half(mp::ManagedSharedMemory segment, int half, mp::Semaphore ready, mp::Event go,
                 mp::Semaphore done) {
  auto* numbers = segment.find<Doubles>("numbers");
  const std::size_t begin = half == 0 ? 0 : numbers->size() / 2;
  const std::size_t end = half == 0 ? numbers->size() / 2 : numbers->size();
  double* data = numbers->data();
  volatile double sink = 0;
  for (std::size_t i = begin; i < end; i += 512) sink = sink + data[i];  // map the pages
  ready.release();
  go.wait();
  for (std::size_t i = begin; i < end; ++i) data[i] = data[i] * kScale + kOffset;
  done.release();
}

}  // namespace

MP_BENCH_ROW_IMPL(peer_boost_ipc_map, kImplPeer, 2010, 20'000, 5'000) {
  const std::string name = "mp-bench-peer-map-" + std::to_string(::getpid());
  const mp::Context context = mp::get_context(row.options().start_method);
  struct Remove {
    const std::string& name;
    ~Remove() { bip::shared_memory_object::remove(name.c_str()); }
  } remove{name};
  std::optional<bip::managed_shared_memory> segment;
  emit_set_get(row, [&](mp::Connection sender) {
    segment.reset();
    bip::shared_memory_object::remove(name.c_str());
    segment.emplace(bip::create_only, name.c_str(), std::size_t{256} << 20);
    auto* map = segment->construct<BoostMap>("map")(segment->get_segment_manager());
    segment->construct<bip::interprocess_mutex>("mutex")();
    mp::Process child = context.process(&boost_map_client, name, row.size(), std::move(sender));
    return std::pair(std::move(child), [map] { return map->size(); });
  });
}

MP_BENCH_ROW_IMPL(interprocess_map_set_get, kImplMp, 2020, 20'000, 5'000) {
  const mp::Context context = mp::get_context(row.options().start_method);
  mp::Lock lock;
  std::optional<mp::ManagedSharedMemory> segment;
  emit_set_get(row, [&](mp::Connection sender) {
    if (segment) segment->unlink();
    segment.emplace(mp::create_only, std::size_t{256} << 20);
    auto* map = segment->construct<MpMap>("map")(segment->get_segment_manager());
    mp::Process child =
        context.process(&mp_map_client, *segment, lock, row.size(), std::move(sender));
    return std::pair(std::move(child), [map] { return map->size(); });
  });
  segment->unlink();
}

MP_BENCH_ROW_IMPL(peer_boost_process_spawn, kImplPeer, 2030, 20, 5) {
  const std::string self = "/proc/self/exe";
  // std::strings (null-terminated): Boost 1.81's path for string_views does not compile.
  const std::vector<std::string> args = {std::string(kProbeExitArgument)};
  boost::asio::io_context io;
  emit_spawn_rows(row, [&] {
    boost::process::v2::process child(io, self, args);
    if (child.wait() != 0) throw BenchError("Boost.Process child failed");
  });
}

MP_BENCH_ROW_IMPL(process_start_spawn_rss, kImplMp, 2040, 20, 5) {
  const mp::Context context = mp::get_context("spawn");
  emit_spawn_rows(row, [&] {
    mp::Process process = context.process(&noop);
    ReapOnError reaper(process);
    process.start();
    process.join();
    reaper.release();
    if (process.exitcode() != 0)
      throw BenchError("noop child: " + describe_exit(process.exitcode()));
  });
}

MP_BENCH_ROW_IMPL(interprocess_vector_update, kImplMp, 2050, kShmSize, kShmSize) {
  const auto bytes = static_cast<std::size_t>(row.size());
  const std::size_t count = bytes / sizeof(double);
  const mp::Context context = mp::get_context(row.options().start_method);
  mp::ManagedSharedMemory segment(mp::create_only, bytes + (std::size_t{4} << 20));
  struct Unlink {
    mp::ManagedSharedMemory& segment;
    ~Unlink() {
      try {
        segment.unlink();
      } catch (...) {
      }
    }
  } unlink{segment};
  auto* numbers = segment.construct<Doubles>("numbers")(count, 1.0, segment.get_segment_manager());
  std::vector<double> runs;
  double expected = 1.0;
  for (int run = 0; run < row.runs(); ++run) {
    check_deadline();
    mp::Semaphore ready(0), done(0);
    mp::Event go;
    std::vector<mp::Process> children;
    for (int half = 0; half < 2; ++half)
      children.push_back(context.process(&update_half, segment, half, ready, go, done));
    std::vector<std::unique_ptr<ReapOnError>> reapers;
    for (auto& child : children) {
      reapers.push_back(std::make_unique<ReapOnError>(child));
      child.start();
    }
    wait_semaphore(ready, 2, kReadyTimeout, "ready from a child");
    const auto start = Clock::now();
    go.set();
    wait_semaphore(done, 2, kResultTimeout, "done from a child");
    const double elapsed = seconds_since(start);
    for (std::size_t i = 0; i < children.size(); ++i) {
      join_ok(children[i], "an updater");
      reapers[i]->release();
    }
    expected = expected * kScale + kOffset;
    if ((*numbers)[0] != expected || (*numbers)[count - 1] != expected)
      throw BenchError("vector not updated in place");
    runs.push_back(static_cast<double>(bytes) / 1e9 / elapsed);
  }
  row.emit({{"size_bytes", static_cast<std::int64_t>(bytes)},
            {"processes", std::int64_t{2}},
            {"start_method", row.options().start_method}},
           "GB_per_s", runs, "GB/s");
}

}  // namespace mp_bench
