// Parallel prime generation, from the course notes ("## GIL": "If we
// want to do parallel execution we should use multiprocessing"). The seed's program
// (its Python 2 compatibility lines left out):
//
//   #gen_prime.py
//   """
//   A simple python program to test CPU performance by
//   generating a series of prime numbers
//   """
//   NUM_PRIMES = 100000
//
//   def is_prime(number):
//       "Returns True if 'number' is prime"
//       limit = int(number ** 0.5) + 1
//       for i in range(2, limit):
//           if number % i == 0:
//               return False
//       return True
//
//   def gen_prime(num):
//       "Generates first 'num' series of prime numbers"
//       i = 2
//       while num:
//           if is_prime(i):
//               #print(i)
//               num -= 1
//           i += 1
//
//   from time import time
//
//   print("Generating %d prime numbers..." % NUM_PRIMES)
//   start = time()
//   gen_prime(NUM_PRIMES)
//   duration = time() - start
//   print("gen_prime(%d) took %f seconds" % (NUM_PRIMES, duration))
//
// prints
//   Generating 100000 prime numbers...
//   gen_prime(100000) took 8.600100 seconds
//
// This program prints those two lines, then times the same work split over processes,
// which the course's lesson calls for; the seeds have no code for it. In Python it would
// be (mp has no Pool yet, so this is Process and Pipe):
//
//   from math import log
//   from multiprocessing import Process, Pipe, cpu_count
//
//   BLOCK = 4096
//
//   def prime_bound(num):
//       "A number above the num-th prime (Rosser's bound)"
//       return 15 if num < 6 else int(num * (log(num) + log(log(num)))) + 1
//
//   def worker(conn, index, workers, bound):
//       "Sends the primes below bound in blocks index, index + workers, ..."
//       conn.send([n for start in range(index * BLOCK, bound, workers * BLOCK)
//                    for n in range(max(start, 2), min(start + BLOCK, bound))
//                    if is_prime(n)])
//
//   def gen_prime_parallel(num, workers):
//       "Generates first 'num' series of prime numbers with 'workers' processes"
//       bound = prime_bound(num)
//       pipes = [Pipe(duplex=False) for _ in range(workers)]
//       procs = [Process(target=worker, args=(send, i, workers, bound))
//                for i, (_, send) in enumerate(pipes)]
//       for p in procs:
//           p.start()
//       primes = sorted(n for recv, _ in pipes for n in recv.recv())
//       for p in procs:
//           p.join()
//       return primes[:num]
//
//   workers = cpu_count()
//   start = time()
//   gen_prime_parallel(NUM_PRIMES, workers)
//   duration = time() - start
//   print("gen_prime_parallel(%d) with %d processes took %f seconds"
//         % (NUM_PRIMES, workers, duration))
//
// Blocks are dealt round-robin because testing a larger number costs more: contiguous
// ranges would leave the last worker with the most work. The program checks that both
// ways find the same num-th prime and exits 1 if not.
//
// Usage: example_gen_prime [NUM_PRIMES [PROCESSES]]  (default 100000, as the seed, and
// mp::cpu_count()).
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <string>
#include <utility>
#include <vector>

#include <mp/mp.hpp>

#include "example.hpp"

namespace {

constexpr long kBlock = 4096;

// Returns True if 'number' is prime
bool is_prime(long number) {
  const long limit = static_cast<long>(std::sqrt(static_cast<double>(number))) + 1;
  for (long i = 2; i < limit; ++i)
    if (number % i == 0) return false;
  return true;
}

// Generates first 'num' series of prime numbers; returns the last (the num-th), which the
// Python does not, so that the work cannot be optimized away and can be checked.
long gen_prime(long num) {
  long i = 2;
  long last = 0;
  while (num) {
    if (is_prime(i)) {
      last = i;
      --num;
    }
    ++i;
  }
  return last;
}

// A number above the num-th prime (Rosser's bound).
long prime_bound(long num) {
  if (num < 6) return 15;
  const double n = static_cast<double>(num);
  return static_cast<long>(n * (std::log(n) + std::log(std::log(n)))) + 1;
}

// Sends the primes below bound in blocks index, index + workers, ...
void worker(mp::Connection& conn, long index, long workers, long bound) {
  std::vector<long> primes;
  for (long start = index * kBlock; start < bound; start += workers * kBlock)
    for (long n = std::max(start, 2L); n < std::min(start + kBlock, bound); ++n)
      if (is_prime(n)) primes.push_back(n);
  conn.send(primes);
}

// Generates first 'num' series of prime numbers with 'workers' processes; returns the
// last.
long gen_prime_parallel(long num, long workers) {
  const long bound = prime_bound(num);
  std::vector<mp::Connection> receivers;
  std::vector<mp::Process> processes;
  for (long i = 0; i < workers; ++i) {
    auto [receive, send] = mp::Pipe(/*duplex=*/false);
    receivers.push_back(std::move(receive));
    processes.emplace_back(&worker, std::move(send), i, workers, bound);
    processes.back().start();
  }
  std::vector<long> primes;
  for (auto& receiver : receivers) {
    const auto some = receiver.recv<std::vector<long>>();
    primes.insert(primes.end(), some.begin(), some.end());
  }
  if (example::join_all(processes) != 0) return 0;
  if (static_cast<long>(primes.size()) < num) return 0;
  std::nth_element(primes.begin(), primes.begin() + (num - 1), primes.end());
  return primes[num - 1];
}

long parse_count(const std::string& text, const char* what) {
  char* end = nullptr;
  const long value = std::strtol(text.c_str(), &end, 10);
  if (text.empty() || *end != '\0' || value < 1 || value > 10'000'000) {
    std::fprintf(stderr, "example_gen_prime: %s must be between 1 and 10000000, got '%s'\n", what,
                 text.c_str());
    std::exit(2);
  }
  return value;
}

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

}  // namespace

int main(int argc, char** argv) {
  mp::freeze_support(argc, argv);
  const auto args = example::parse_args(argc, argv, "[NUM_PRIMES [PROCESSES]]");
  if (args.size() > 2) {
    std::fprintf(stderr, "usage: %s [NUM_PRIMES [PROCESSES]]\n", argv[0]);
    return 2;
  }
  const long num_primes = args.size() > 0 ? parse_count(args[0], "NUM_PRIMES") : 100000;
  const long workers = args.size() > 1 ? parse_count(args[1], "PROCESSES") : mp::cpu_count();

  example::say("Generating %ld prime numbers...\n", num_primes);
  auto start = std::chrono::steady_clock::now();
  const long serial = gen_prime(num_primes);
  example::say("gen_prime(%ld) took %f seconds\n", num_primes, seconds_since(start));

  start = std::chrono::steady_clock::now();
  const long parallel = gen_prime_parallel(num_primes, workers);
  example::say("gen_prime_parallel(%ld) with %ld processes took %f seconds\n", num_primes, workers,
               seconds_since(start));

  if (parallel != serial) {
    std::fprintf(stderr,
                 "example_gen_prime: the %ld-th prime is %ld, but the processes found %ld\n",
                 num_primes, serial, parallel);
    return 1;
  }
  return 0;
}
