// The participant registry of fault_injection.hpp.
#include <algorithm>

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

}  // namespace mp_fault
