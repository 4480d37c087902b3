// A program that forgets mp::freeze_support(): spawn must fail with a clear error in
// start() (instead of re-running main() recursively or hanging); fork still works.
#include <cstdio>
#include <cstdlib>
#include <stdexcept>

#include <mp/mp.hpp>

static void exit_zero() { std::exit(0); }

int main() {
  mp::Process spawned({.start_method = "spawn"}, &exit_zero);
  try {
    spawned.start();
    std::printf("spawn started without freeze_support\n");
    return 1;
  } catch (const std::logic_error& e) {
    std::printf("%s\n", e.what());
  }
  mp::Process forked({.start_method = "fork"}, &exit_zero);
  forked.start();
  forked.join();
  std::printf(forked.exitcode() == 0 ? "fork ok\n" : "fork failed\n");
  return 0;
}
