// Fault-injection participant: pools. Each worker process runs a Pool (every start
// method in turn) whose tasks record their worker's pid, loses a pool worker on purpose now
// and then, and checks every result; the driver SIGKILLs these pool parents at random.
// The promises checked: results are always right (a lost pool worker costs exactly
// its task), and no pool worker outlives its killed parent.
#include <signal.h>
#include <unistd.h>

#include <filesystem>
#include <ranges>
#include <string>

#include <mp/pool.hpp>

#include "../test_util.hpp"
#include "fault_injection.hpp"

namespace {

// Squares x; the first call in each pool worker records the worker's pid in `dir`.
struct SquareAndNote {
  std::string dir;
  int operator()(int x) const {
    static bool noted = false;
    if (!noted) {
      noted = true;
      mp_test::write_file(dir + "/" + std::to_string(::getpid()), "");
    }
    if (x < 0) ::kill(::getpid(), SIGKILL);  // a lost pool worker
    return x * x;
  }
  template <class Archive>
  void serialize(Archive& ar) {
    ar(dir);
  }
};

std::string setup(const std::string& dir) {
  std::filesystem::create_directories(dir + "/pool_workers");
  std::filesystem::create_directories(dir + "/problems");
  return dir;
}

void problem(const std::string& dir, const std::string& text) {
  mp_test::write_file(dir + "/problems/" + std::to_string(::getpid()), text);
}

[[noreturn]] void work(std::string dir, int worker_index) {
  const SquareAndNote square{dir + "/pool_workers"};
  for (unsigned round = 0;; ++round) {
    const std::string& method =
        mp_test::start_method_in_turn(round + static_cast<unsigned>(worker_index));
    mp::Pool pool({.processes = 2, .start_method = method});
    for (int i = 0; i < 4; ++i) {
      auto results = pool.map(square, mp_test::iota(0, 300), 7);
      for (int x = 0; x < 300; ++x)
        if (results[static_cast<std::size_t>(x)] != x * x) problem(dir, "wrong map result");
    }
    try {
      (void)pool.apply(square, -1);
      problem(dir, "a task that killed its worker returned");
    } catch (const mp::WorkerLostError&) {
    }
    if (pool.apply(square, 12) != 144) problem(dir, "wrong result after a lost worker");
  }
}

std::string verify(const std::string& dir, int /*workers_killed*/) {
  std::string problems;
  for (const auto& entry : std::filesystem::directory_iterator(dir + "/problems"))
    problems += entry.path().filename().string() + ": " +
                mp_test::read_file(entry.path().string()).value_or("") + "; ";
  return problems + mp_fault::survivors(dir + "/pool_workers", "pool worker");
}

}  // namespace

MP_FAULT_PARTICIPANT(pool, {.setup = &setup, .work = &work, .verify = &verify});
