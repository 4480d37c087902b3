// The participant registry of fault_injection.hpp, and the helpers participants share.
#include <signal.h>

#include <algorithm>
#include <chrono>
#include <filesystem>

#include "../test_util.hpp"
#include "fault_injection.hpp"

namespace mp_fault {
namespace {
std::vector<Registered>& registry() {
  static std::vector<Registered> all;
  return all;
}
}  // namespace

Registration::Registration(const char* name, Participant participant) {
  auto& all = registry();
  all.push_back({name, participant});
  std::sort(all.begin(), all.end(),
            [](const Registered& a, const Registered& b) { return a.name < b.name; });
}

const std::vector<Registered>& participants() { return registry(); }

const Participant* find_participant(const std::string& name) {
  for (const Registered& entry : registry())
    if (entry.name == name) return &entry.participant;
  return nullptr;
}

std::string survivors(const std::string& pid_dir, const std::string& what) {
  std::string problems;
  for (const auto& entry : std::filesystem::directory_iterator(pid_dir)) {
    const pid_t pid = std::stoi(entry.path().filename().string());
    if (!mp_test::wait_gone(pid, std::chrono::seconds(10))) {
      problems += what + " " + std::to_string(pid) + " outlived its killed parent; ";
      ::kill(pid, SIGKILL);
    }
  }
  return problems;
}

}  // namespace mp_fault
