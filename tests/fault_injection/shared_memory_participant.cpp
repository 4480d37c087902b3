// Fault-injection participant: shared memory. Workers assign to one ShareableList
// (several at once, so that a killed writer may hold its lock) and create, fill and
// unlink SharedMemory segments (so that kills land in the tree's segment registry).
// The promises checked: every slot holds a whole value one worker wrote, the list stays
// writable (a dead writer's lock is taken over), and the registry stays usable.
#include <cstring>
#include <string>
#include <variant>

#include <mp/shared_memory.hpp>

#include "fault_injection.hpp"

namespace {

constexpr std::size_t kSlots = 16;
constexpr std::size_t kTextLength = 100;

// What worker `index` writes into slot `slot`, round `round`: an int or a text that
// names its slot in every byte.
mp::ShareableItem value_for(std::size_t slot, std::int64_t round) {
  if (round % 2 == 0) return round;
  return std::string(kTextLength, static_cast<char>('A' + slot));
}

std::string setup(const std::string& /*dir*/) {
  mp::ShareableList list(mp::create_only, std::vector<mp::ShareableItem>(kSlots, std::int64_t{0}),
                         {.capacities = std::vector<std::size_t>(kSlots, kTextLength)});
  return list.shm().name();
}

[[noreturn]] void work(std::string name, int worker_index) {
  mp::ShareableList list(mp::open_only, name);
  for (std::int64_t round = worker_index;; ++round) {
    for (std::size_t slot = 0; slot < kSlots; ++slot) list.set(slot, value_for(slot, round));
    if (round % 8 == 0) {
      mp::SharedMemory scratch(mp::create_only, 1 << 16);
      std::memset(scratch.buf().data(), 0x11, scratch.size());
      scratch.unlink();
    }
  }
}

std::string verify(const std::string& name, int /*workers_killed*/) {
  std::string problems;
  try {
    mp::ShareableList list(mp::open_only, name);
    for (std::size_t slot = 0; slot < kSlots; ++slot) {
      const auto item = list[slot];
      const auto* text = std::get_if<std::string>(&item);
      if (text ? *text != std::get<std::string>(value_for(slot, 1))
               : !std::holds_alternative<std::int64_t>(item))
        problems += "slot " + std::to_string(slot) + " holds a torn value; ";
    }
    list.set(0, std::int64_t{-1});  // blocks forever if a dead writer's lock stuck
    if (list[0] != mp::ShareableItem(std::int64_t{-1})) problems += "assignment lost; ";
    mp::SharedMemory after(mp::create_only, 4096);  // the registry still works
    after.unlink();
    list.shm().unlink();
  } catch (const std::exception& e) {
    problems += e.what();
  }
  return problems;
}

}  // namespace

MP_FAULT_PARTICIPANT(shared_memory, {.setup = &setup, .work = &work, .verify = &verify});
