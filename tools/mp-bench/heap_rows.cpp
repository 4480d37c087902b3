// heap_churn: shared objects of mixed sizes created and dropped in a window, as a
// program that keeps a changing set of shared arrays does. Python: heap_churn() in
// bench/python/mp_bench.py, with multiprocessing.sharedctypes.RawArray (whose memory
// comes from multiprocessing.heap). In the parent, no children.
//   Timed: N steps; step i drops the array in slot i % kWindow (if any) and puts a new
//   RawArray<char> of kSizes[i % size count] zeroed bytes there (both sides zero it).
//   ops_per_s = N / time. peak_rss_MB: the largest resident set (/proc/self/statm,
//   sampled every kSampleEvery steps) minus the one before the first run;
//   rss_after_free_MB: the resident set once every array is dropped, minus the one
//   before the first run (what the heap keeps).
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstdio>
#include <optional>
#include <vector>

#include <mp/sharedctypes.hpp>

#include "bench.hpp"

namespace mp_bench {
namespace {

constexpr std::size_t kWindow = 2000;
// Seven sizes: the window is no multiple of 7, so a slot sees every size in turn.
constexpr std::array<std::size_t, 7> kSizes = {16, 1000, 100, 40'000, 3000, 10'000, 120'000};
constexpr std::int64_t kSampleEvery = 1024;

// This process's resident set in MB (1e6 B).
double resident_mb() {
  std::FILE* file = std::fopen("/proc/self/statm", "r");
  if (file == nullptr) throw BenchError("cannot read /proc/self/statm");
  unsigned long long size = 0, resident = 0;
  const int read = std::fscanf(file, "%llu %llu", &size, &resident);
  std::fclose(file);
  if (read != 2) throw BenchError("cannot parse /proc/self/statm");
  return static_cast<double>(resident) * static_cast<double>(::sysconf(_SC_PAGESIZE)) / 1e6;
}

}  // namespace

MP_BENCH_ROW(heap_churn, 2000, 50'000, 10'000) {
  const std::int64_t n = row.size();
  std::vector<double> rates, peaks, afters;
  const double before = resident_mb();
  for (int run = 0; run < row.runs(); ++run) {
    std::vector<std::optional<mp::RawArray<char>>> window(kWindow);
    double peak = before;
    const auto start = Clock::now();
    for (std::int64_t i = 0; i < n; ++i) {
      auto& slot = window[static_cast<std::size_t>(i) % kWindow];
      slot.reset();
      slot.emplace(kSizes[static_cast<std::size_t>(i) % kSizes.size()]);
      if (i % kSampleEvery == 0) {
        peak = std::max(peak, resident_mb());
        check_deadline();
      }
    }
    rates.push_back(static_cast<double>(n) / seconds_since(start));
    peak = std::max(peak, resident_mb());
    window.clear();
    peaks.push_back(peak - before);
    afters.push_back(resident_mb() - before);
  }
  const JsonObject params = {{"N", n},
                             {"window", static_cast<std::int64_t>(kWindow)},
                             {"sizes", std::string("16,1000,100,40000,3000,10000,120000")},
                             {"start_method", row.options().start_method}};
  row.emit(params, "ops_per_s", rates, "ops/s");
  row.emit(params, "peak_rss_MB", peaks, "MB");
  row.emit(params, "rss_after_free_MB", afters, "MB");
}

}  // namespace mp_bench
