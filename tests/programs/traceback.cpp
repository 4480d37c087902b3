// traceback METHOD
// A program linked with mp::stacktrace: a Pool's map fails at item 5 in check_item, and
// the program prints the RemoteError's what() (which carries the task and the remote
// stack); then a Process's target throws from check_item, and the child prints its
// traceback on stderr (as Python's Process does); then a pool worker crashes (SIGSEGV)
// and prints the stack of the crash point.
#include <csignal>
#include <cstdio>
#include <stdexcept>
#include <string>
#include <vector>

#include <mp/mp.hpp>

#include "method_main.hpp"

namespace {

[[gnu::noinline]] void check_item(int x) {
  if (x == 5) throw std::invalid_argument("item five is not allowed");
}

int twice(int x) {
  check_item(x);
  return 2 * x;
}

void fail_in_child() { check_item(5); }

[[gnu::noinline]] int crash_here(int x) {
  std::raise(SIGSEGV);
  return x;
}

int run(const std::string& method) {
  mp::Pool pool({.processes = 2, .start_method = method});
  try {
    pool.map(twice, std::vector<int>{0, 1, 2, 3, 4, 5, 6, 7}, 3);
    return 1;
  } catch (const mp::RemoteError& e) {
    std::printf("%s\n", e.what());
  }
  std::fflush(stdout);
  mp::Process child({.start_method = method}, &fail_in_child);
  child.start();
  child.join();
  if (child.exitcode() != 1) return 1;
  // A worker that crashes prints the stack of the crash point before it dies.
  try {
    pool.apply(crash_here, 1);
    return 1;
  } catch (const mp::WorkerLostError& e) {
    std::printf("%s\n", e.what());
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) { return method_main("traceback", argc, argv, &run); }
