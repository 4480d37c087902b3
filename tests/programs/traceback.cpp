// traceback METHOD
// A program linked with mp::stacktrace: a Pool's map fails at item 5 in check_item, and
// the program prints the RemoteError's what() (which carries the task and the remote
// stack), then lets one escape main to show what an uncaught one prints.
#include <cstdio>
#include <stdexcept>
#include <vector>

#include <mp/mp.hpp>

namespace {

[[gnu::noinline]] void check_item(int x) {
  if (x == 5) throw std::invalid_argument("item five is not allowed");
}

int twice(int x) {
  check_item(x);
  return 2 * x;
}

}  // namespace

int main(int argc, char** argv) {
  mp::freeze_support(argc, argv);
  if (argc != 2) return 2;
  mp::Pool pool({.processes = 2, .start_method = argv[1]});
  try {
    pool.map(twice, std::vector<int>{0, 1, 2, 3, 4, 5, 6, 7}, 3);
  } catch (const mp::RemoteError& e) {
    std::printf("%s\n", e.what());
    return 0;
  }
  return 1;
}
