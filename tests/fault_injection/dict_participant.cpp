// Fault-injection participant: a Manager's dict and list. Workers run every kind of
// operation on them, concurrently, and are SIGKILLed at random. The promises checked:
// every operation happened entirely or not at all (no torn value, no half-applied
// multi-key update, sizes agree with contents), and the survivors and the driver are
// never blocked (the dead holder's lock is taken over and its operation rolled back).
#include <cstdint>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <tuple>
#include <vector>

#include <mp/managers.hpp>
#include <mp/pickle.hpp>

#include "../manager_invariants.hpp"
#include "fault_injection.hpp"

namespace {

using Values = mp::SharedDict<int, std::vector<int>>;
using Pair = mp::SharedDict<std::string, std::int64_t>;
using Items = mp::SharedList<int>;
using Handles = std::tuple<Values, Pair, Items>;

// The driver keeps the containers alive while workers load their pickled handles.
std::optional<mp::Manager> manager;
std::optional<Handles> handles;

std::string setup(const std::string& /*dir*/) {
  manager.emplace(mp::ManagerOptions{.segment_size = std::size_t{1} << 24});
  handles.emplace(manager->dict<int, std::vector<int>>(),
                  manager->dict<std::string, std::int64_t>(), manager->list<int>());
  return mp::pickle::dumps(*handles);
}

// A value of `key` written at step `step`: key % 37 + 1 equal elements.
std::vector<int> value_for(int key, std::int64_t step) {
  return std::vector<int>(static_cast<std::size_t>(key % 37) + 1, static_cast<int>(step));
}

[[noreturn]] void work(std::string state, int worker_index) {
  auto [values, pair, items] = mp::pickle::loads<Handles>(state);
  for (std::int64_t i = worker_index;; ++i) {
    const int key = static_cast<int>((i * 7 + worker_index) % 500);
    values[key] = value_for(key, i);
    if (i % 7 == 0) values.erase(static_cast<int>((i * 13) % 500));
    if (i % 11 == 0) pair.update(std::map<std::string, std::int64_t>{{"a", i}, {"b", -i}});
    if (i % 17 == 0) pair.update("n", [](std::int64_t& n) { ++n; });
    if (i % 101 == 0) {
      std::map<int, std::vector<int>> bulk;
      for (int k = 0; k < 40; ++k) bulk[k * 3] = value_for(k * 3, -1);
      values.update(bulk);
    }
    if (i % 1499 == 0) values.clear();
    items.append(static_cast<int>(i));
    if (i % 5 == 0 && !items.empty()) {
      try {
        items.pop(0);
      } catch (const std::out_of_range&) {  // another worker emptied it first
      }
    }
    if (i % 13 == 0) items.insert(1, static_cast<int>(i));
    if (items.size() > 300) items.clear();
  }
}

std::string verify(const std::string& state, int /*workers_killed*/) {
  auto [values, pair, items] = mp::pickle::loads<Handles>(state);
  if (std::string problem = mp_test::check_manager_invariants(values, pair, items);
      !problem.empty())
    return problem;
  // Still usable.
  values[1000] = {1};
  if (values.at(1000) != std::vector<int>{1} || !values.erase(1000)) return "dict unusable";
  items.append(-1);
  if (items.pop() != -1) return "list unusable";
  handles.reset();
  manager.reset();
  return "";
}

}  // namespace

MP_FAULT_PARTICIPANT(dict, {.setup = &setup, .work = &work, .verify = &verify});
