// Fault-injection participant: an mp::ManagedSharedMemory segment whose allocator every
// worker hammers. Each worker loops: allocate a block of varied size, fill it with its
// own stamp, and free its older blocks after checking that their stamps are intact;
// now and then it looks its counters up by name. Workers are SIGKILLed anywhere,
// inside the allocator's or the index's lock or not.
//
// The promises checked: a dead holder of either internal lock never blocks the others
// (afterwards the driver gets an answer, a block or mp::SegmentPoisoned, within 10 s);
// a poisoned allocator refuses instead of handing out memory twice (no stamp of a live
// block is ever overwritten); recovered() agrees with what the segment refuses.
#if __has_include(<boost/interprocess/managed_external_buffer.hpp>)

#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include <mp/interprocess.hpp>
#include <mp/pickle.hpp>

#include "fault_injection.hpp"

using namespace std::chrono_literals;

namespace {

using Cell = std::atomic<std::uint64_t>;
enum : std::size_t { kViolations, kRefusals, kAcked, kSlots = 16 };

using State = std::tuple<mp::ManagedSharedMemory, std::uint64_t>;

std::optional<mp::ManagedSharedMemory> driver_segment;

std::string setup(const std::string&) {
  if (driver_segment) {
    try {
      driver_segment->unlink();
    } catch (...) {
    }
  }
  driver_segment.emplace(mp::create_only, std::size_t{4} << 20);
  Cell* cells = driver_segment->construct<Cell>("cells")[kSlots](0);
  const auto offset = static_cast<std::uint64_t>(reinterpret_cast<std::byte*>(cells) -
                                                 driver_segment->shm().buf().data());
  return mp::pickle::dumps(State(*driver_segment, offset));
}

// The counters, found by offset (the index of names may be poisoned).
Cell* cells_of(const mp::ManagedSharedMemory& segment, std::uint64_t offset) {
  return reinterpret_cast<Cell*>(segment.shm().buf().data() + offset);
}

struct Block {
  std::uint64_t* words;
  std::size_t count;
  std::uint64_t stamp;
};

bool intact(const Block& block) {
  return block.words[0] == block.stamp && block.words[block.count - 1] == block.stamp;
}

[[noreturn]] void work(std::string state, int worker_index) {
  auto [segment, offset] = mp::pickle::loads<State>(state);
  Cell* cells = cells_of(segment, offset);
  const std::uint64_t me = static_cast<std::uint64_t>(::getpid()) << 32;
  std::vector<Block> held;
  for (std::uint64_t i = 1;; ++i) {
    try {
      const std::size_t count = 2 + (i * 7919 + static_cast<std::uint64_t>(worker_index)) % 120;
      auto* words = static_cast<std::uint64_t*>(segment.allocate(count * sizeof(std::uint64_t)));
      const Block block{words, count, me | (i & 0xffffffff)};
      for (std::size_t w = 0; w < count; ++w) words[w] = block.stamp;
      held.push_back(block);
    } catch (const mp::SegmentPoisoned&) {
      cells[kRefusals].fetch_add(1);
    } catch (const std::bad_alloc&) {
    }
    while (held.size() > 32) {
      if (!intact(held.front())) cells[kViolations].fetch_add(1);
      segment.deallocate(held.front().words);
      held.erase(held.begin());
    }
    if (i % 64 == 0) {
      try {
        if (segment.find<Cell>("cells") != cells) cells[kViolations].fetch_add(1);
      } catch (const mp::SegmentPoisoned&) {
        cells[kRefusals].fetch_add(1);
      }
    }
    cells[kAcked + static_cast<std::size_t>(worker_index) % (kSlots - kAcked)].fetch_add(1);
  }
}

// What one allocation in this process gives, or "" if it did not return within 10 s.
std::string allocate_with_deadline(mp::ManagedSharedMemory segment) {
  struct Outcome {
    std::atomic<int> done{0};  // 1: a block, 2: refused (poisoned), 3: other error
  };
  auto outcome = std::make_shared<Outcome>();
  std::thread([segment, outcome]() mutable {
    try {
      segment.deallocate(segment.allocate(64));
      outcome->done.store(1);
    } catch (const mp::SegmentPoisoned&) {
      outcome->done.store(2);
    } catch (...) {
      outcome->done.store(3);
    }
  }).detach();
  const auto deadline = std::chrono::steady_clock::now() + 10s;
  while (outcome->done.load() == 0 && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(1ms);
  switch (outcome->done.load()) {
    case 1:
      return "allocated";
    case 2:
      return "refused";
    case 3:
      return "failed";
    default:
      return "";
  }
}

std::string verify(const std::string& state, int) {
  auto [segment, offset] = mp::pickle::loads<State>(state);
  Cell* cells = cells_of(segment, offset);
  std::string problems;
  const std::string answer = allocate_with_deadline(segment);
  if (answer.empty()) return "an allocation did not return within 10 s after every worker died";
  if (answer == "failed") problems += "an allocation failed with an unexpected error; ";
  if (answer == "refused" && !segment.recovered())
    problems += "the allocator refused but recovered() is false; ";
  if (answer == "allocated") {
    // recovered() may still be true: the index of names alone may be poisoned.
  }
  try {
    if (segment.find<Cell>("cells") != cells) problems += "the counters' name is lost; ";
  } catch (const mp::SegmentPoisoned&) {
    if (!segment.recovered()) problems += "names refused but recovered() is false; ";
  }
  if (cells[kViolations].load() != 0)
    problems +=
        std::to_string(cells[kViolations].load()) + " live blocks were overwritten or names lost; ";
  std::uint64_t acked = 0;
  for (std::size_t i = kAcked; i < kSlots; ++i) acked += cells[i].load();
  if (acked == 0) problems += "no worker completed an operation; ";
  segment.unlink();
  driver_segment.reset();
  return problems;
}

}  // namespace

MP_FAULT_PARTICIPANT(interprocess, {.setup = &setup, .work = &work, .verify = &verify});

#endif
