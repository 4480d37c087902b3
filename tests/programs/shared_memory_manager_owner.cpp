// shared_memory_manager_owner START_METHOD
// A process that starts a SharedMemoryManager, makes a SharedMemory and a ShareableList
// with it, lets a child (START_METHOD) write into both, prints
// "<segment> <list segment> <watchdog pid>" and kills itself (SIGKILL) without shutting
// the manager down. Afterwards both segments must be gone once the watchdog has ended.
#include <signal.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>

#include <mp/mp.hpp>
#include <mp/shared_memory_manager.hpp>

#include "method_main.hpp"

namespace {

void use(mp::SharedMemory block, mp::ShareableList list) {
  std::memcpy(block.buf().data(), "child", 5);
  list.set(0, std::int64_t{7});
}

int run(const std::string& method) {
  mp::SharedMemoryManager smm;
  smm.start();
  mp::SharedMemory block = smm.SharedMemory(4096);
  mp::ShareableList list = smm.ShareableList({std::int64_t{0}, std::string("x")});
  mp::Process child({.start_method = method}, &use, block, list);
  child.start();
  if (!child.join(std::chrono::seconds(60)) || child.exitcode() != 0) return 5;
  if (std::memcmp(block.buf().data(), "child", 5) != 0 ||
      list[0] != mp::ShareableItem(std::int64_t{7}))
    return 6;
  std::printf("%s %s %d\n", block.name().c_str(), list.shm().name().c_str(),
              static_cast<int>(mp::detail::shared_memory_watchdog_pid()));
  std::fflush(stdout);
  ::raise(SIGKILL);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  return method_main("shared_memory_manager_owner", argc, argv, &run);
}
