// The task functions that mp-bench's pool rows and mp-bench-mpi's rows time, shared so
// that both measure the same work as bench/python/mp_bench.py.
#pragma once

#include <cstdint>

namespace mp_bench {

// The trivial task: x * x.
inline std::int64_t square(std::int64_t x) { return x * x; }

// Primes < n by naive trial division, exactly as mp_bench.py's count_primes_below.
inline int count_primes_below(int n) {
  int count = 0;
  for (int k = 2; k < n; ++k) {
    bool prime = true;
    for (int d = 2; d * d <= k; ++d) {
      if (k % d == 0) {
        prime = false;
        break;
      }
    }
    count += prime;
  }
  return count;
}

}  // namespace mp_bench
