// shared_memory_array_write: per run the parent creates a fresh 256 MiB SharedMemory; a
// child attaches by name, builds the pattern (untimed) and times the copy of the
// pattern into the segment (first touch, so the page allocation of /dev/shm is
// included); the parent checks the Adler-32 of the whole segment. GB_per_s = size /
// child write time. Python: bench_shared_memory_array_write() and shm_writer() in
// bench/python/mp_bench.py (`shm.buf[:size] = pattern` is the memcpy here).
//
// shared_memory_array_write_prefault (mp only): the same, but the child attaches with
// SharedMemoryOptions::prefault and the timed section is attach + copy: the same page
// allocation work, done in one MADV_POPULATE_WRITE instead of one fault per page.
#include <chrono>
#include <cstdint>
#include <cstring>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include <mp/connection.hpp>
#include <mp/context.hpp>
#include <mp/process.hpp>
#include <mp/shared_memory.hpp>

#include "bench.hpp"

namespace mp_bench {
namespace {

// Python: shm_pattern(): a repeating 256-byte block (seed, seed+1, ...) mod 256.
std::vector<unsigned char> shm_pattern(std::size_t size, int seed) {
  std::vector<unsigned char> pattern(size);
  for (std::size_t i = 0; i < size; ++i) pattern[i] = static_cast<unsigned char>((seed + i) & 0xff);
  return pattern;
}

// zlib's adler32(data, start).
std::uint32_t adler32(const unsigned char* data, std::size_t size, std::uint32_t start) {
  constexpr std::uint32_t kBase = 65521;
  constexpr std::size_t kMaxRun = 5552;  // zlib's NMAX: no overflow before the modulo
  std::uint32_t a = start & 0xffff, b = start >> 16;
  while (size > 0) {
    const std::size_t run = std::min(size, kMaxRun);
    for (std::size_t i = 0; i < run; ++i) {
      a += data[i];
      b += a;
    }
    a %= kBase;
    b %= kBase;
    data += run;
    size -= run;
  }
  return (b << 16) | a;
}

// Timed: (attach with prefault when asked +) the copy. Python: shm_writer().
void shm_writer(std::string name, std::int64_t size, int seed, bool prefault,
                mp::Connection& result_conn) {
  const auto pattern = shm_pattern(static_cast<std::size_t>(size), seed);
  double elapsed = 0;
  if (prefault) {
    const auto start = Clock::now();
    mp::SharedMemory shm(mp::open_only, name, {.prefault = true});
    std::memcpy(shm.buf().data(), pattern.data(), pattern.size());
    elapsed = seconds_since(start);
    shm.close();
  } else {
    mp::SharedMemory shm(mp::open_only, name);
    const auto start = Clock::now();
    std::memcpy(shm.buf().data(), pattern.data(), pattern.size());
    elapsed = seconds_since(start);
    shm.close();
  }
  result_conn.send(elapsed);
  result_conn.close();
}

void array_write(const Row& row, bool prefault) {
  const std::int64_t size = row.size();
  const mp::Context context = mp::get_context(row.options().start_method);
  std::vector<double> runs;
  for (int seed = 0; seed < row.runs(); ++seed) {
    check_deadline();
    mp::SharedMemory shm(mp::create_only, static_cast<std::size_t>(size));
    struct Unlink {
      mp::SharedMemory& shm;
      ~Unlink() {
        shm.close();
        try {
          shm.unlink();
        } catch (...) {  // already failing
        }
      }
    } unlink{shm};
    auto [recv_conn, send_conn] = mp::Pipe(false);
    mp::Process child =
        context.process(&shm_writer, shm.name(), size, seed, prefault, std::move(send_conn));
    ReapOnError reaper(child);
    child.start();
    if (!recv_conn.poll(kResultTimeout)) throw BenchError("child sent no result");
    const double elapsed = recv_conn.recv<double>();
    if (!child.join(std::chrono::seconds(60))) throw BenchError("writer did not end");
    reaper.release();
    if (child.exitcode() != 0) throw BenchError("writer: " + describe_exit(child.exitcode()));
    // The expected checksum, built 1 MiB at a time (untimed), as Python.
    const auto block = shm_pattern(1024 * 1024, seed);
    std::uint32_t expected = 1;
    for (std::int64_t i = 0; i < size / static_cast<std::int64_t>(block.size()); ++i)
      expected = adler32(block.data(), block.size(), expected);
    const auto actual =
        adler32(reinterpret_cast<const unsigned char*>(shm.buf().data()), shm.size(), 1);
    if (actual != expected) throw BenchError("shared memory contents wrong");
    runs.push_back(static_cast<double>(size) / 1e9 / elapsed);
  }
  JsonObject params = {{"size_bytes", size}, {"start_method", row.options().start_method}};
  if (prefault) params.emplace_back("prefault", true);
  row.emit(params, "GB_per_s", runs, "GB/s");
}

}  // namespace

MP_BENCH_ROW(shared_memory_array_write, 1700, kShmSize, kShmSize) { array_write(row, false); }
MP_BENCH_ROW(shared_memory_array_write_prefault, 1800, kShmSize, kShmSize) {
  array_write(row, true);
}

}  // namespace mp_bench
