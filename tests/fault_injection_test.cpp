// The fault-injection driver: for every participant registered in
// tests/fault_injection/ and every start method, starts kWorkers workers on the
// participant's shared state, SIGKILLs a random one kKills times (at random moments,
// starting a replacement each time), then kills the rest and has the participant verify
// its state. Also checked: each killed worker died of the SIGKILL (not of a crash of its
// own), and this process's fd table is as before. Figures go to README's Reliability.
#include <dirent.h>
#include <signal.h>

#include <gtest/gtest.h>

#include <chrono>
#include <random>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include <mp/process.hpp>

#include "fault_injection/fault_injection.hpp"
#include "figures.hpp"
#include "test_util.hpp"

using namespace std::chrono_literals;

namespace {

constexpr int kWorkers = 4;
constexpr int kKills = 24;

// The worker's entry point: a free function, so that it works with spawn too.
void run_worker(std::string participant, std::string state, int index) {
  const mp_fault::Participant* found = mp_fault::find_participant(participant);
  if (found == nullptr) std::exit(90);
  found->work(std::move(state), index);
  std::exit(91);  // work() must not return
}

using mp_test::open_fd_count;

std::vector<std::tuple<std::string, std::string>> cases() {
  std::vector<std::tuple<std::string, std::string>> out;
  for (const auto& entry : mp_fault::participants())
    for (const std::string& method : mp_test::start_methods()) out.emplace_back(entry.name, method);
  return out;
}

class FaultInjection : public ::testing::TestWithParam<std::tuple<std::string, std::string>> {};

TEST_P(FaultInjection, RandomSigkillsLeaveConsistentStateAndNoLeaks) {
  const auto& [name, method] = GetParam();
  const mp_fault::Participant& participant = *mp_fault::find_participant(name);
  {  // the first process creates what mp keeps for the process's life: baseline
    mp::Process warm({.start_method = method}, &run_worker, std::string("-"), std::string(), 0);
    warm.start();
    ASSERT_TRUE(warm.join(30s));
  }
  const std::chrono::microseconds lifetime = mp_test::child_lifetime(method);
  const int fds_before = open_fd_count();
  mp_test::TempDir dir;
  const std::string state = participant.setup(dir.file("state"));

  std::mt19937 random(std::random_device{}());
  std::vector<mp::Process> workers;
  // Init-captures: clang++ 14 cannot capture a structured binding.
  auto start_worker = [&, &method = method, &name = name](int index) {
    mp::Process worker({.start_method = method}, &run_worker, name, state, index);
    worker.start();
    return worker;
  };
  for (int i = 0; i < kWorkers; ++i) workers.push_back(start_worker(i));
  int started = kWorkers;
  int killed = 0;
  for (int kill = 0; kill < kKills; ++kill) {
    // A random moment: the point is to land anywhere in the workers' lives, their work
    // included however long they take to start.
    std::this_thread::sleep_for(
        std::chrono::microseconds(random() % (30'000 + static_cast<unsigned>(lifetime.count()))));
    const std::size_t victim = random() % workers.size();
    ASSERT_TRUE(workers[victim].is_alive())
        << "worker " << workers[victim].repr() << " died on its own";
    workers[victim].kill();
    ASSERT_TRUE(workers[victim].join(30s));
    EXPECT_EQ(workers[victim].exitcode(), -SIGKILL) << workers[victim].repr();
    ++killed;
    workers[victim] = start_worker(static_cast<int>(victim));
    ++started;
  }
  for (auto& worker : workers) {
    worker.kill();
    ASSERT_TRUE(worker.join(30s));
    ++killed;
  }
  workers.clear();
  EXPECT_EQ(participant.verify(state, killed), "");
  EXPECT_TRUE(mp::active_children().empty());
  EXPECT_EQ(open_fd_count(), fds_before);
  mp_test::record_figure("fault_workers_started", started);
  mp_test::record_figure("fault_workers_killed", killed);
}

INSTANTIATE_TEST_SUITE_P(
    Participants, FaultInjection, ::testing::ValuesIn(cases()),
    [](const ::testing::TestParamInfo<std::tuple<std::string, std::string>>& param_info) {
      return std::get<0>(param_info.param) + "_" + std::get<1>(param_info.param);
    });

}  // namespace
