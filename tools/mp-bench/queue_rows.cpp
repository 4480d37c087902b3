// queue_throughput_small / _1k / _1m: one producer child puts N items on a Queue, the
// parent gets all N. Python: _queue_throughput() and queue_producer() in
// bench/python/mp_bench.py: small ints 0..N-1 (checked in order) or the same prebuilt
// bytes payload N times (each checked for its size); timed from go.set() until the
// parent got item N; msgs_per_s = N / time, plus MB_per_s (MB = 1e6 bytes) for bytes.
// Python's bytes object is a std::string here, its int an int.
//
// probe_boost_message_queue: boost::interprocess::message_queue moving N 8-byte
// messages from a forked child to the parent (capacity 1024 messages), timed the same
// way: the bounded, fixed-size, untyped queue a C++ programmer would reach for. Not
// raw system calls like the other probes, but a "limit" row all the same: the bar the
// issue sets for queue_throughput_small.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <boost/interprocess/ipc/message_queue.hpp>

#include <chrono>
#include <cstdint>
#include <cstring>
#include <deque>
#include <optional>
#include <string>
#include <vector>

#include <mp/context.hpp>
#include <mp/process.hpp>
#include <mp/queues.hpp>
#include <mp/synchronize.hpp>

#include "bench.hpp"

namespace mp_bench {
namespace {

void small_producer(mp::Queue<int> queue, std::int64_t n, mp::Semaphore ready, mp::Event go) {
  ready.release();
  go.wait();
  for (std::int64_t i = 0; i < n; ++i) queue.put(static_cast<int>(i));
}

void bytes_producer(mp::Queue<std::string> queue, std::int64_t n, std::int64_t payload_bytes,
                    mp::Semaphore ready, mp::Event go) {
  const std::string payload(static_cast<std::size_t>(payload_bytes), '\xa5');
  ready.release();
  go.wait();
  for (std::int64_t i = 0; i < n; ++i) queue.put(payload);
}

void queue_throughput(const Row& row, std::int64_t payload_bytes) {
  const std::int64_t n = row.size();
  const mp::Context context = mp::get_context(row.options().start_method);
  std::vector<double> runs;
  for (int run = 0; run < row.runs(); ++run) {
    mp::Semaphore ready(0);
    mp::Event go;
    mp::Queue<int> ints;
    mp::Queue<std::string> bytes;
    mp::Process child = payload_bytes
                            ? context.process(&bytes_producer, bytes, n, payload_bytes, ready, go)
                            : context.process(&small_producer, ints, n, ready, go);
    ReapOnError reaper(child);
    child.start();
    if (!ready.acquire(true, kReadyTimeout)) throw BenchError("producer not ready");
    const auto start = Clock::now();
    go.set();
    if (payload_bytes) {
      for (std::int64_t i = 0; i < n; ++i) {
        if (bytes.get(kResultTimeout).size() != static_cast<std::size_t>(payload_bytes))
          throw BenchError("queue item has the wrong size");
        if (i % 64 == 0) check_deadline();
      }
    } else {
      for (std::int64_t i = 0; i < n; ++i) {
        if (ints.get(kResultTimeout) != i) throw BenchError("queue items out of order");
        if (i % 4096 == 0) check_deadline();
      }
    }
    runs.push_back(seconds_since(start));
    if (!child.join(std::chrono::seconds(60))) throw BenchError("producer did not end");
    if (child.exitcode() != 0) throw BenchError("producer: " + describe_exit(child.exitcode()));
    reaper.release();
  }
  const JsonObject params = {
      {"N", n},
      {"payload", std::string(payload_bytes ? "bytes" : "small_int")},
      {"payload_bytes", payload_bytes ? JsonValue(payload_bytes) : JsonValue(nullptr)},
      {"start_method", row.options().start_method}};
  std::vector<double> rates;
  for (double seconds : runs) rates.push_back(static_cast<double>(n) / seconds);
  row.emit(params, "msgs_per_s", rates, "msg/s");
  if (payload_bytes) {
    std::vector<double> megabytes;
    for (double seconds : runs)
      megabytes.push_back(static_cast<double>(n * payload_bytes) / 1e6 / seconds);
    row.emit(params, "MB_per_s", megabytes, "MB/s");
  }
}

}  // namespace

MP_BENCH_ROW(queue_throughput_small, 700, 200'000, 50'000) { queue_throughput(row, 0); }
MP_BENCH_ROW(queue_throughput_1k, 800, 100'000, 20'000) { queue_throughput(row, 1024); }
MP_BENCH_ROW(queue_throughput_1m, 900, 500, 100) { queue_throughput(row, 1024 * 1024); }

MP_BENCH_PROBE(probe_boost_message_queue, 2600, 200'000, 50'000) {
  namespace bip = boost::interprocess;
  const std::int64_t n = row.size();
  const std::string name = "mp-bench-probe-mq-" + std::to_string(::getpid());
  std::vector<double> runs;
  for (int run = 0; run < row.runs(); ++run) {
    bip::message_queue::remove(name.c_str());
    bip::message_queue queue(bip::create_only, name.c_str(), 1024, sizeof(std::int64_t));
    mp::Semaphore ready(0);
    mp::Event go;
    // A forked child (the probe is about the queue, not about mp's Process).
    const pid_t pid = ::fork();
    if (pid < 0) throw BenchError("fork failed");
    if (pid == 0) {
      try {
        bip::message_queue child_queue(bip::open_only, name.c_str());
        ready.release();
        go.wait();
        for (std::int64_t i = 0; i < n; ++i) child_queue.send(&i, sizeof i, 0);
      } catch (...) {
        ::_exit(1);
      }
      ::_exit(0);
    }
    struct Remove {
      const std::string& name;
      pid_t pid;
      ~Remove() {
        int status = 0;
        ::kill(pid, SIGKILL);
        ::waitpid(pid, &status, 0);
        bip::message_queue::remove(name.c_str());
      }
    } cleanup{name, pid};
    if (!ready.acquire(true, kReadyTimeout)) throw BenchError("probe child not ready");
    const auto start = Clock::now();
    go.set();
    for (std::int64_t i = 0; i < n; ++i) {
      std::int64_t value = -1;
      bip::message_queue::size_type received = 0;
      unsigned priority = 0;
      queue.receive(&value, sizeof value, received, priority);
      if (received != sizeof value || value != i) throw BenchError("message out of order");
    }
    runs.push_back(static_cast<double>(n) / seconds_since(start));
  }
  row.emit({{"N", n},
            {"message_bytes", std::int64_t{8}},
            {"capacity", std::int64_t{1024}},
            {"probe", std::string("boost::interprocess::message_queue, 8-byte messages")}},
           "msgs_per_s", runs, "msg/s");
}

}  // namespace mp_bench
