// Limit probes: what the machine allows, measured with plain POSIX calls and no mp, so
// that each mp row can be read against its floor (bench/compare.py's second table).
// They print "impl": "limit". Timed sections mirror the mp row they bound:
//   probe_fork            fork(); child exit_group(0); waitpid() vs process_start_fork
//   probe_spawn           posix_spawn(this binary --probe-exit); waitpid()
//                                                                 vs process_start_spawn
//   probe_forkserver      a forked single-threaded helper, asked over an AF_UNIX socket
//                         pair, forks a child (exit_group(0)), waitpid()s it and answers
//                                                                 vs process_start_forkserver
//   probe_pipe_roundtrip  8-byte write/read echo over two pipes   vs pipe_roundtrip
//   probe_socket_roundtrip 8-byte write/read echo over an AF_UNIX stream socket pair
//                                                                 vs listener_roundtrip
//   probe_futex_roundtrip FUTEX_WAIT/WAKE ping-pong on one shared word; also with
//                         50 us of spinning before sleeping       vs event_pingpong
//   probe_memcpy          memcpy between two pre-faulted 256 MiB buffers
//   probe_shm_first_touch memcpy into a fresh 256 MiB memfd mapping (page allocation
//                         included)                               vs shared_memory_array_write
// Per-process and round-trip rows: run value = median (process) or mean (round trip)
// over N, as their mp rows; bandwidth rows: bytes / time, GB = 1e9 bytes. Ping-pong
// probes report same_cpu_roundtrip_us and cross_cpu_roundtrip_us (see Placement).
#include <atomic>
#include <cerrno>
#include <chrono>
#include <climits>
#include <cstdint>
#include <cstring>
#include <new>
#include <string>
#include <system_error>
#include <vector>

#include <fcntl.h>
#include <linux/futex.h>
#include <sched.h>
#include <signal.h>
#include <spawn.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench.hpp"

extern char** environ;

namespace mp_bench {
namespace {

constexpr int kWarmupRounds = 100;  // untimed round trips, as the Python rows

[[noreturn]] void throw_errno(const char* what) {
  throw std::system_error(errno, std::generic_category(), what);
}

// A child we forked: killed and reaped if the probe fails before waiting for it.
class Child {
 public:
  explicit Child(pid_t pid) : pid_(pid) {}
  ~Child() {
    if (pid_ <= 0) return;
    ::kill(pid_, SIGKILL);
    int status = 0;
    while (::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
    }
  }
  Child(const Child&) = delete;
  Child& operator=(const Child&) = delete;

  // Waits for the child to end; throws BenchError unless it exited with status 0.
  void wait_ok(const char* what) {
    int status = 0;
    while (::waitpid(pid_, &status, 0) < 0) {
      if (errno != EINTR) throw_errno("waitpid");
      check_deadline();
    }
    pid_ = 0;
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
      throw BenchError(std::string(what) + ": " + describe_wait_status(status));
    }
  }

 private:
  pid_t pid_;
};

// Forks a child that runs body() and exits; the child dies with mp-bench.
template <class Body>
pid_t fork_child(Body body) {
  const pid_t pid = ::fork();
  if (pid < 0) throw_errno("fork");
  if (pid == 0) {
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    int status = 3;
    try {
      status = body();
    } catch (...) {  // never unwind into the parent's code in the child
    }
    _exit(status);
  }
  return pid;
}

// An anonymous mapping, unmapped on scope exit.
class Mapping {
 public:
  Mapping(std::size_t size, int flags, int fd = -1) : size_(size) {
    void* address = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, flags, fd, 0);
    if (address == MAP_FAILED) throw_errno("mmap");
    data_ = static_cast<unsigned char*>(address);
  }
  ~Mapping() { ::munmap(data_, size_); }
  Mapping(const Mapping&) = delete;
  Mapping& operator=(const Mapping&) = delete;
  unsigned char* data() const { return data_; }

 private:
  unsigned char* data_;
  std::size_t size_;
};

class Fd {
 public:
  explicit Fd(int fd = -1) : fd_(fd) {}
  ~Fd() { reset(); }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  int get() const { return fd_; }
  void reset() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }

 private:
  int fd_;
};

// Full write/read of a small message; EINTR checks the deadline (parent side).
void write_all(int fd, const void* data, std::size_t size) {
  const auto* bytes = static_cast<const unsigned char*>(data);
  while (size > 0) {
    const ssize_t n = ::write(fd, bytes, size);
    if (n < 0) {
      if (errno != EINTR) throw_errno("write");
      check_deadline();
      continue;
    }
    bytes += n;
    size -= static_cast<std::size_t>(n);
  }
}

// False on end of file before the first byte.
bool read_all(int fd, void* data, std::size_t size) {
  auto* bytes = static_cast<unsigned char*>(data);
  std::size_t done = 0;
  while (done < size) {
    const ssize_t n = ::read(fd, bytes + done, size - done);
    if (n < 0) {
      if (errno != EINTR) throw_errno("read");
      check_deadline();
      continue;
    }
    if (n == 0) {
      if (done == 0) return false;
      throw BenchError("short read");
    }
    done += static_cast<std::size_t>(n);
  }
  return true;
}

// Per-process probes: run value = median over N single processes, microseconds; one
// untimed warm-up first (as process_start_*).
template <class OneProcess>
std::vector<double> per_process_runs(const Row& row, OneProcess one) {
  one();
  std::vector<double> runs;
  for (int run = 0; run < row.runs(); ++run) {
    std::vector<double> samples;
    for (std::int64_t i = 0; i < row.size(); ++i) {
      check_deadline();
      samples.push_back(one());
    }
    runs.push_back(median(samples) * 1e6);
  }
  return runs;
}

// ----- futex on a word shared between processes (not FUTEX_PRIVATE: the mapping is
// MAP_SHARED and the waiters live in different address spaces).

long futex(std::atomic<std::uint32_t>* word, int op, std::uint32_t value) {
  static_assert(sizeof(std::atomic<std::uint32_t>) == sizeof(std::uint32_t));
  return ::syscall(SYS_futex, reinterpret_cast<std::uint32_t*>(word), op, value, nullptr, nullptr,
                   0);
}

// Blocks until *word == wanted. Returns false if interrupted by a signal.
bool futex_wait_for(std::atomic<std::uint32_t>* word, std::uint32_t wanted) {
  for (std::uint32_t seen; (seen = word->load(std::memory_order_acquire)) != wanted;) {
    if (futex(word, FUTEX_WAIT, seen) < 0 && errno == EINTR) return false;
  }
  return true;
}

void futex_set_and_wake(std::atomic<std::uint32_t>* word, std::uint32_t value) {
  word->store(value, std::memory_order_release);
  futex(word, FUTEX_WAKE, 1);
}

// The adaptive variant: spin a while before sleeping, and wake only a sleeper. What a
// cross-process Event or Queue could reach when its partner answers quickly.
struct SpinFutexWord {
  std::atomic<std::uint32_t> value{0};
  std::atomic<std::uint32_t> sleepers{0};
};
constexpr auto kSpinBudget = std::chrono::microseconds(50);

void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield");
#endif
}

// Blocks until value == wanted. Returns false if interrupted by a signal.
bool spin_then_wait_for(SpinFutexWord* word, std::uint32_t wanted) {
  const auto give_up = Clock::now() + kSpinBudget;
  for (unsigned i = 1;; ++i) {
    if (word->value.load(std::memory_order_acquire) == wanted) return true;
    if (i % 64 == 0 && Clock::now() > give_up) break;
    cpu_relax();
  }
  // seq_cst pairs with set_and_wake_sleepers: either it sees this sleeper, or the
  // value read below is already the new one.
  word->sleepers.fetch_add(1, std::memory_order_seq_cst);
  bool interrupted = false;
  for (std::uint32_t seen; (seen = word->value.load(std::memory_order_seq_cst)) != wanted;) {
    if (futex(&word->value, FUTEX_WAIT, seen) < 0 && errno == EINTR) {
      interrupted = true;
      break;
    }
  }
  word->sleepers.fetch_sub(1, std::memory_order_seq_cst);
  return !interrupted;
}

void set_and_wake_sleepers(SpinFutexWord* word, std::uint32_t value) {
  word->value.store(value, std::memory_order_seq_cst);
  if (word->sleepers.load(std::memory_order_seq_cst) != 0) futex(&word->value, FUTEX_WAKE, 1);
}

// ----- where the two processes of a ping-pong run. A round trip costs very different
// amounts when both share one CPU (a context switch) and when each has its own (a
// cross-CPU wake-up, an inter-processor interrupt: costly in a VM), and the scheduler
// picks either for an unpinned pair. So each ping-pong probe measures both placements
// explicitly: the rows they bound land somewhere between the two.

struct Placement {
  const char* metric;
  int parent_cpu;
  int child_cpu;
  bool spin = false;  // probe_futex_roundtrip: spin before sleeping
};

std::vector<int> allowed_cpus() {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (::sched_getaffinity(0, sizeof set, &set) < 0) throw_errno("sched_getaffinity");
  std::vector<int> cpus;
  for (int cpu = 0; cpu < CPU_SETSIZE; ++cpu) {
    if (CPU_ISSET(cpu, &set)) cpus.push_back(cpu);
  }
  return cpus;
}

// Same CPU always; another CPU when this process may use two.
std::vector<Placement> ping_pong_placements() {
  const std::vector<int> cpus = allowed_cpus();
  if (cpus.empty()) throw BenchError("no CPU in the affinity mask");
  std::vector<Placement> placements = {{"same_cpu_roundtrip_us", cpus[0], cpus[0]}};
  if (cpus.size() > 1) placements.push_back({"cross_cpu_roundtrip_us", cpus[0], cpus[1]});
  return placements;
}

void pin_self(int cpu) {
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  if (::sched_setaffinity(0, sizeof set, &set) < 0) throw_errno("sched_setaffinity");
}

// Pins the calling process to one CPU for the scope; restores the previous mask.
class PinSelf {
 public:
  explicit PinSelf(int cpu) {
    CPU_ZERO(&previous_);
    if (::sched_getaffinity(0, sizeof previous_, &previous_) < 0) throw_errno("sched_getaffinity");
    pin_self(cpu);
  }
  ~PinSelf() { (void)::sched_setaffinity(0, sizeof previous_, &previous_); }
  PinSelf(const PinSelf&) = delete;
  PinSelf& operator=(const PinSelf&) = delete;

 private:
  cpu_set_t previous_;
};

}  // namespace

MP_BENCH_PROBE(probe_fork, 2100, 200, 50) {
  // The child leaves through syscall(), bound here in the parent: a libc function a
  // forked child calls first is bound lazily in every child (a symbol lookup and a
  // copied GOT page), which is not the machine's floor.
  (void)::syscall(SYS_getpid);
  const auto runs = per_process_runs(row, [] {
    const auto start = Clock::now();
    const pid_t pid = ::fork();
    if (pid == 0) {
      ::syscall(SYS_exit_group, 0);
      _exit(0);  // not reached
    }
    if (pid < 0) throw_errno("fork");
    Child child(pid);
    child.wait_ok("fork child");
    return seconds_since(start);
  });
  row.emit({{"N", row.size()}, {"probe", std::string("fork+exit_group+waitpid")}}, "per_process_us",
           runs, "us");
}

MP_BENCH_PROBE(probe_spawn, 2300, 20, 5) {
  // Setup, untimed: the resolved path of this binary (what a spawn start method execs).
  char path[PATH_MAX];
  const ssize_t length = ::readlink("/proc/self/exe", path, sizeof path - 1);
  if (length < 0) throw_errno("readlink /proc/self/exe");
  path[length] = '\0';
  std::string exit_argument(kProbeExitArgument);
  char* argv[] = {path, exit_argument.data(), nullptr};

  const auto runs = per_process_runs(row, [&] {
    const auto start = Clock::now();
    pid_t pid = 0;
    if (const int error = ::posix_spawn(&pid, path, nullptr, nullptr, argv, environ)) {
      throw std::system_error(error, std::generic_category(), "posix_spawn");
    }
    Child child(pid);
    child.wait_ok("spawned mp-bench --probe-exit");
    return seconds_since(start);
  });
  row.emit({{"N", row.size()}, {"probe", std::string("posix_spawn(self --probe-exit)+waitpid")}},
           "per_process_us", runs, "us");
}

MP_BENCH_PROBE(probe_forkserver, 2350, 200, 50) {
  // Setup, untimed: the helper, forked once (as the fork server is started once).
  int pair[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair) < 0) throw_errno("socketpair");
  (void)::syscall(SYS_getpid);
  const pid_t helper = ::fork();
  if (helper < 0) throw_errno("fork");
  if (helper == 0) {
    ::close(pair[0]);
    char byte = 0;
    while (::read(pair[1], &byte, 1) == 1) {
      const pid_t pid = ::fork();
      if (pid == 0) ::syscall(SYS_exit_group, 0);
      int status = 0;
      if (pid > 0) ::waitpid(pid, &status, 0);
      byte = (pid > 0 && WIFEXITED(status) && WEXITSTATUS(status) == 0) ? 0 : 1;
      if (::write(pair[1], &byte, 1) != 1) break;
    }
    ::_exit(0);
  }
  ::close(pair[1]);
  Child helper_child(helper);
  const int socket = pair[0];
  std::vector<double> runs;
  try {
    runs = per_process_runs(row, [socket] {
      const auto start = Clock::now();
      char byte = 0;
      if (::write(socket, &byte, 1) != 1) throw_errno("write to the helper");
      if (::read(socket, &byte, 1) != 1 || byte != 0) throw BenchError("helper: no child");
      return seconds_since(start);
    });
  } catch (...) {
    ::close(socket);
    throw;
  }
  ::close(socket);
  helper_child.wait_ok("forkserver probe helper");
  row.emit({{"N", row.size()}, {"probe", std::string("request+fork+exit_group+waitpid+answer")}},
           "per_process_us", runs, "us");
}

// One run of an 8-byte echo ping-pong: a forked child pinned to `child_cpu` echoes what
// it reads from child_in to child_out until end of file; this process times n round
// trips through parent_out and parent_in (after kWarmupRounds untimed ones) and returns
// the microseconds per round trip. A socket passes its one end as both. `what` names
// the channel in errors.
double echo_round_trip_us(const char* what, int child_cpu, Fd& parent_out, Fd& parent_in,
                          Fd& child_in, Fd& child_out, std::int64_t n) {
  Child child(fork_child([&] {
    pin_self(child_cpu);
    parent_out.reset();
    parent_in.reset();
    std::int64_t value = 0;
    while (read_all(child_in.get(), &value, sizeof value)) {
      write_all(child_out.get(), &value, sizeof value);
    }
    return 0;
  }));
  child_in.reset();
  child_out.reset();

  auto round_trip = [&](std::int64_t i) {
    write_all(parent_out.get(), &i, sizeof i);
    std::int64_t echo = -1;
    if (!read_all(parent_in.get(), &echo, sizeof echo) || echo != i) {
      throw BenchError(std::string(what) + " echo mismatch");
    }
  };
  for (int i = 0; i < kWarmupRounds; ++i) round_trip(i);
  const auto start = Clock::now();
  for (std::int64_t i = 0; i < n; ++i) round_trip(i);
  const double us = seconds_since(start) / static_cast<double>(n) * 1e6;
  parent_out.reset();  // end of file: the child leaves its loop
  child.wait_ok((std::string(what) + " echo child").c_str());
  return us;
}

// An echo probe's rows: per placement, row.runs() figures of one_run(child_cpu, n) (the
// mean round trip in microseconds), under the placement's metric.
template <class OneRun>
void emit_echo_rows(const Row& row, const std::string& probe, OneRun one_run) {
  const std::int64_t n = row.size();
  for (const Placement& placement : ping_pong_placements()) {
    const PinSelf pin_parent(placement.parent_cpu);
    std::vector<double> runs;
    for (int run = 0; run < row.runs(); ++run) runs.push_back(one_run(placement.child_cpu, n));
    row.emit({{"N", n}, {"probe", probe}}, placement.metric, runs, "us");
  }
}

MP_BENCH_PROBE(probe_pipe_roundtrip, 2400, 20'000, 5'000) {
  emit_echo_rows(row, "pipe write/read 8 bytes, echo", [](int child_cpu, std::int64_t n) {
    int to_child[2], to_parent[2];
    if (::pipe2(to_child, O_CLOEXEC) < 0) throw_errno("pipe2");
    Fd child_in(to_child[0]), parent_out(to_child[1]);
    if (::pipe2(to_parent, O_CLOEXEC) < 0) throw_errno("pipe2");
    Fd parent_in(to_parent[0]), child_out(to_parent[1]);
    return echo_round_trip_us("pipe", child_cpu, parent_out, parent_in, child_in, child_out, n);
  });
}

MP_BENCH_PROBE(probe_socket_roundtrip, 2700, 20'000, 5'000) {
  emit_echo_rows(row, "unix socket write/read 8 bytes, echo", [](int child_cpu, std::int64_t n) {
    int pair[2];
    if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair) < 0) throw_errno("socketpair");
    Fd parent_end(pair[0]), child_end(pair[1]);
    return echo_round_trip_us("socket", child_cpu, parent_end, parent_end, child_end, child_end, n);
  });
}

MP_BENCH_PROBE(probe_futex_roundtrip, 2500, 10'000, 2'000) {
  const std::int64_t n = row.size();
  const std::int64_t rounds = kWarmupRounds + n;
  std::vector<Placement> placements = ping_pong_placements();
  if (placements.size() > 1) {  // spinning only makes sense with a CPU each
    placements.push_back(
        {"cross_cpu_spin_roundtrip_us", placements[1].parent_cpu, placements[1].child_cpu, true});
  }
  for (const Placement& placement : placements) {
    const PinSelf pin_parent(placement.parent_cpu);
    // One word counts half round trips: the parent makes it odd (ping), the child even
    // (pong). Each side sleeps in FUTEX_WAIT (after spinning, if asked) until the value
    // it waits for comes.
    auto wait_for = [&placement](SpinFutexWord* word, std::uint32_t wanted) {
      return placement.spin ? spin_then_wait_for(word, wanted)
                            : futex_wait_for(&word->value, wanted);
    };
    auto set = [&placement](SpinFutexWord* word, std::uint32_t value) {
      placement.spin ? set_and_wake_sleepers(word, value) : futex_set_and_wake(&word->value, value);
    };
    std::vector<double> runs;
    for (int run = 0; run < row.runs(); ++run) {
      Mapping shared(4096, MAP_SHARED | MAP_ANONYMOUS);
      auto* word = new (shared.data()) SpinFutexWord;

      Child child(fork_child([&] {
        pin_self(placement.child_cpu);
        for (std::int64_t i = 0; i < rounds; ++i) {
          const auto ping = static_cast<std::uint32_t>(2 * i + 1);
          while (!wait_for(word, ping)) {
          }
          set(word, ping + 1);
        }
        return 0;
      }));

      auto round_trip = [&](std::int64_t i) {
        const auto ping = static_cast<std::uint32_t>(2 * i + 1);
        set(word, ping);
        while (!wait_for(word, ping + 1)) check_deadline();
      };
      for (std::int64_t i = 0; i < kWarmupRounds; ++i) round_trip(i);
      const auto start = Clock::now();
      for (std::int64_t i = kWarmupRounds; i < rounds; ++i) round_trip(i);
      runs.push_back(seconds_since(start) / static_cast<double>(n) * 1e6);
      child.wait_ok("futex pong child");
    }
    row.emit({{"N", n}, {"probe", std::string("FUTEX_WAIT/FUTEX_WAKE on a MAP_SHARED word")}},
             placement.metric, runs, "us");
  }
}

// The floor of any lock whose release must wake sleepers: one compare-and-swap to
// take a word in shared memory, one exchange to give it back (the old value tells the
// releaser whether anyone sleeps). No mp. Python: nothing to compare; lock_uncontended.
MP_BENCH_PROBE(probe_atomic_pair, 2200, 1'000'000, 200'000) {
  const std::int64_t n = row.size();
  Mapping shared(4096, MAP_SHARED | MAP_ANONYMOUS);
  auto* word = new (shared.data()) std::atomic<std::uint64_t>(0);
  std::vector<double> runs;
  for (int run = 0; run < row.runs(); ++run) {
    check_deadline();
    const auto start = Clock::now();
    for (std::int64_t i = 0; i < n; ++i) {
      std::uint64_t expected = 0;
      while (!word->compare_exchange_strong(expected, 1, std::memory_order_acquire,
                                            std::memory_order_relaxed))
        expected = 0;
      if (word->exchange(0, std::memory_order_release) != 1) throw BenchError("word changed");
    }
    runs.push_back(seconds_since(start) / static_cast<double>(n) * 1e9);
  }
  row.emit(
      {{"N", n}, {"probe", std::string("CAS acquire + exchange release on a MAP_SHARED word")}},
      "ns_per_pair", runs, "ns");
}

MP_BENCH_PROBE(probe_memcpy, 2800, kShmSize, kShmSize) {
  const auto size = static_cast<std::size_t>(row.size());
  // Setup, untimed: both buffers faulted in, so only the copy is measured.
  Mapping source(size, MAP_PRIVATE | MAP_ANONYMOUS);
  Mapping destination(size, MAP_PRIVATE | MAP_ANONYMOUS);
  std::memset(source.data(), 0xa5, size);
  std::memset(destination.data(), 0, size);
  std::memcpy(destination.data(), source.data(), size);  // warm-up
  std::vector<double> runs;
  for (int run = 0; run < row.runs(); ++run) {
    check_deadline();
    source.data()[0] = static_cast<unsigned char>(run);
    const auto start = Clock::now();
    std::memcpy(destination.data(), source.data(), size);
    const double elapsed = seconds_since(start);
    if (destination.data()[0] != source.data()[0] || destination.data()[size - 1] != 0xa5) {
      throw BenchError("memcpy copied wrong bytes");
    }
    runs.push_back(static_cast<double>(size) / 1e9 / elapsed);
  }
  row.emit({{"size_bytes", row.size()}, {"probe", std::string("memcpy, pre-faulted buffers")}},
           "GB_per_s", runs, "GB/s");
}

MP_BENCH_PROBE(probe_shm_first_touch, 2900, kShmSize, kShmSize) {
  const auto size = static_cast<std::size_t>(row.size());
  // The pattern of shared_memory_array_write, pre-faulted (built untimed, as there).
  Mapping pattern(size, MAP_PRIVATE | MAP_ANONYMOUS);
  std::vector<double> runs;
  for (int seed = 0; seed < row.runs(); ++seed) {
    check_deadline();
    for (std::size_t i = 0; i < size; ++i) {
      pattern.data()[i] = static_cast<unsigned char>((seed + i) & 0xff);
    }
    // Setup, untimed: a fresh memfd of `size` bytes, mapped shared, no page touched yet.
    Fd memory(::memfd_create("mp-bench-probe", MFD_CLOEXEC));
    if (memory.get() < 0) throw_errno("memfd_create");
    if (::ftruncate(memory.get(), static_cast<off_t>(size)) < 0) throw_errno("ftruncate");
    Mapping shared(size, MAP_SHARED, memory.get());

    const auto start = Clock::now();
    std::memcpy(shared.data(), pattern.data(), size);
    const double elapsed = seconds_since(start);
    if (std::memcmp(shared.data(), pattern.data(), size) != 0) {
      throw BenchError("shared mapping contents wrong");
    }
    runs.push_back(static_cast<double>(size) / 1e9 / elapsed);
  }
  row.emit(
      {{"size_bytes", row.size()}, {"probe", std::string("memcpy into a fresh memfd mapping")}},
      "GB_per_s", runs, "GB/s");
}

}  // namespace mp_bench
