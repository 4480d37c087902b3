// pool_parent START_METHOD
// Starts a Pool(2), prints its workers' pids on one line, then waits forever in map()
// on tasks that never end. The test kills this program (SIGKILL, or SIGINT to its
// process group as Ctrl-C does) and checks that no worker outlives it and that Ctrl-C
// makes no noise on stderr.
#include <unistd.h>

#include <cstdio>
#include <string>
#include <vector>

#include <mp/mp.hpp>

#include "method_main.hpp"

namespace {

int block_forever(int x) {
  for (;;) ::pause();
  return x;
}

int run(const std::string& method) {
  mp::Pool pool({.processes = 2, .start_method = method});
  auto pids = pool.worker_pids();
  auto result = pool.map_async(block_forever, std::vector<int>{1, 2}, 1);
  std::printf("%d %d\n", pids.at(0), pids.at(1));
  std::fflush(stdout);
  result.get();
  return 0;
}

}  // namespace

int main(int argc, char** argv) { return method_main("pool_parent", argc, argv, &run); }
