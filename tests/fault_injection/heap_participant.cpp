// Fault-injection participant: the shared heap itself. Workers allocate and free blocks
// of mixed sizes (small ones held for a while, large ones freed at once, so that both
// the lock-free warm lists and the locked buddy lists with their merging and splitting
// see constant traffic), writing a pattern into each block and checking it before the
// block goes back. The promises checked: no block is ever handed out twice (a worker
// finding its pattern overwritten aborts, and the driver sees a death other than
// SIGKILL), the free lists stay well formed (Arena::check, after taking over the lock
// of a worker killed holding it and undoing its half-done operation), and the heap
// still hands out distinct, working blocks afterwards.
#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <map>
#include <random>
#include <string>
#include <vector>

#include <unistd.h>

#include <mp/detail/heap.hpp>
#include <mp/errors.hpp>

#include "fault_injection.hpp"
#include "heap_arena.hpp"

namespace {

using mp::detail::shared_ref;

struct Held {
  shared_ref ref;
  std::size_t size;
  unsigned char pattern;
};

unsigned char* bytes_of(shared_ref ref) {
  return static_cast<unsigned char*>(mp::detail::heap_address(ref));
}

void fill(const Held& held) {
  unsigned char* bytes = bytes_of(held.ref);
  if (held.size <= 8192) {
    std::memset(bytes, held.pattern, held.size);
  } else {  // the first and last page, and one byte per page in between
    std::memset(bytes, held.pattern, 4096);
    std::memset(bytes + held.size - 4096, held.pattern, 4096);
    for (std::size_t i = 4096; i < held.size; i += 4096) bytes[i] = held.pattern;
  }
}

bool intact(const Held& held) {
  const unsigned char* bytes = bytes_of(held.ref);
  // The middle byte, or for a large block the first byte of its middle page.
  const std::size_t middle = held.size <= 8192 ? held.size / 2 : held.size / 2 / 4096 * 4096;
  for (std::size_t i : {std::size_t{0}, middle, held.size - 1})
    if (bytes[i] != held.pattern) return false;
  return true;
}

std::string setup(const std::string& /*dir*/) {
  const shared_ref rounds = mp::detail::heap_allocate(sizeof(std::atomic<std::uint64_t>));
  new (mp::detail::heap_address(rounds)) std::atomic<std::uint64_t>(0);
  return std::to_string(rounds.arena) + " " + std::to_string(rounds.offset);
}

shared_ref parse(const std::string& state) {
  const std::size_t space = state.find(' ');
  return {std::stoull(state.substr(0, space)), std::stoull(state.substr(space + 1))};
}

// A size: mostly small, sometimes medium, rarely large (up to 6 MiB).
std::size_t random_size(std::mt19937& random) {
  const unsigned kind = random() % 100;
  if (kind < 70) return 16 + random() % 4096;
  if (kind < 95) return 4096 + random() % (60 * 1024);
  return (64 << 10) + random() % (6 << 20);
}

[[noreturn]] void work(std::string state, int worker_index) {
  auto* rounds = reinterpret_cast<std::atomic<std::uint64_t>*>(bytes_of(parse(state)));
  std::mt19937 random(static_cast<unsigned>(worker_index * 7919 + ::getpid()));
  std::vector<Held> held;
  for (std::uint64_t round = 0;; ++round) {
    if (held.size() < 48 && random() % 2 == 0) {
      Held block{{}, random_size(random), static_cast<unsigned char>(random())};
      try {
        block.ref = mp::detail::heap_allocate(block.size);
      } catch (const mp::HeapExhausted&) {
        continue;
      }
      fill(block);
      if (block.size > (64 << 10)) {  // large blocks go back at once
        if (!intact(block)) std::abort();
        mp::detail::heap_free(block.ref);
      } else {
        held.push_back(block);
      }
    } else if (!held.empty()) {
      const std::size_t victim = random() % held.size();
      if (!intact(held[victim])) std::abort();  // handed out twice
      mp::detail::heap_free(held[victim].ref);
      held[victim] = held.back();
      held.pop_back();
    }
    rounds->fetch_add(1, std::memory_order_relaxed);
  }
}

std::string verify(const std::string& state, int /*workers_killed*/) {
  const shared_ref rounds_ref = parse(state);
  auto* rounds = reinterpret_cast<std::atomic<std::uint64_t>*>(bytes_of(rounds_ref));
  if (rounds->load() == 0) return "the workers did nothing";
  mp::detail::Arena& arena = mp::detail::heap_main_arena();
  if (std::string problems = arena.check(); !problems.empty()) return problems;
  // Every block handed out now is distinct and keeps what was written into it.
  std::mt19937 random(1);
  std::map<std::uint64_t, std::size_t> extents;
  std::vector<Held> all;
  for (int i = 0; i < 500; ++i) {
    const std::size_t size = random_size(random);
    all.push_back({mp::detail::heap_allocate(size), size, static_cast<unsigned char>(i)});
    if (!extents.emplace(all.back().ref.offset, size).second) return "block handed out twice";
    fill(all.back());
  }
  std::uint64_t end = 0;
  for (auto [offset, size] : extents) {
    if (offset < end) return "blocks overlap";
    end = offset + size;
  }
  for (const Held& block : all) {
    if (!intact(block)) return "a block lost what was written into it";
    mp::detail::heap_free(block.ref);
  }
  mp::detail::heap_free(rounds_ref);
  arena.release_warm();
  return arena.check();
}

}  // namespace

MP_FAULT_PARTICIPANT(heap, {.setup = &setup, .work = &work, .verify = &verify});
