// Tasks that the pool tests share (the local pool's and the pool over MPI's, whose
// results are compared with a local pool's).
#pragma once

#include <signal.h>
#include <unistd.h>

#include <stdexcept>

namespace pool_tasks {

inline int square(int x) { return x * x; }
inline int add(int a, int b) { return a + b; }
// Throws std::invalid_argument("three is not allowed") for 3.
inline int fail_on_three(int x) {
  if (x == 3) throw std::invalid_argument("three is not allowed");
  return x;
}
// SIGKILLs its own worker at x == `victim` (the middle of a map).
inline int kill_self_at(int x, int victim) {
  if (x == victim) ::kill(::getpid(), SIGKILL);
  return x;
}

}  // namespace pool_tasks
