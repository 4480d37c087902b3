// Fault-injection participant: process trees. Each worker keeps starting children
// (daemon and not, every start method in turn) and is SIGKILLed at random while it has
// some. The promise checked: a daemon child never outlives its killed parent.
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <deque>
#include <filesystem>
#include <string>

#include <mp/process.hpp>

#include "../test_util.hpp"
#include "fault_injection.hpp"

namespace {

void daemon_sleeper(std::string pid_dir) {
  mp_test::write_file(pid_dir + "/" + std::to_string(::getpid()), "");
  for (;;) ::pause();
}

void quick_child() {}

std::string setup(const std::string& dir) {
  std::filesystem::create_directories(dir + "/daemons");
  return dir + "/daemons";
}

[[noreturn]] void work(std::string pid_dir, int worker_index) {
  std::deque<mp::Process> daemons;  // at most 4 alive at once
  for (unsigned round = 0;; ++round) {
    const std::string& method =
        mp_test::start_method_in_turn(round + static_cast<unsigned>(worker_index));
    // Daemon children that stay until this worker dies (or four newer ones exist)...
    daemons.emplace_back(mp::ProcessOptions{.daemon = true, .start_method = method},
                         &daemon_sleeper, pid_dir);
    daemons.back().start();
    if (daemons.size() > 4) {
      daemons.front().kill();
      (void)daemons.front().join(std::chrono::seconds(30));
      daemons.pop_front();
    }
    // ...and a non-daemon one, started and joined (the child registry under churn).
    mp::Process child({.daemon = false, .start_method = method}, &quick_child);
    child.start();
    (void)child.join(std::chrono::seconds(30));
  }
}

std::string verify(const std::string& pid_dir, int /*workers_killed*/) {
  return mp_fault::survivors(pid_dir, "daemon child");
}

}  // namespace

MP_FAULT_PARTICIPANT(process_tree, {.setup = &setup, .work = &work, .verify = &verify});
