// Fault-injection participant: a bounded Queue. Even workers put stamped items (their
// own random id, a sequence number, a payload and its checksum; every 8th payload large
// enough to go to an item block of its own), odd workers get them and check each one.
// Workers are SIGKILLed at random, inside put() and get() among other places. The
// promises checked: every item anyone gets is whole; each producer's items arrive in
// the order it put them; the queue still works for the survivors and drains cleanly.
#include <atomic>
#include <cstdint>
#include <map>
#include <optional>
#include <random>
#include <string>
#include <tuple>

#include <mp/errors.hpp>
#include <mp/pickle.hpp>
#include <mp/queues.hpp>
#include <mp/sharedctypes.hpp>

#include "../queue_drain.hpp"
#include "fault_injection.hpp"

namespace {

struct Stamped {
  std::uint64_t producer = 0;
  std::uint64_t seq = 0;
  std::uint64_t sum = 0;
  std::string payload;
  template <class Archive>
  void serialize(Archive& ar) {
    ar(producer, seq, sum, payload);
  }
};

using State = std::tuple<mp::Queue<Stamped>, mp::RawArray<int>>;  // queue, broken count

std::uint64_t checksum(const std::string& bytes, std::uint64_t seed) {
  std::uint64_t h = 1469598103934665603ull ^ seed;
  for (unsigned char c : bytes) h = (h ^ c) * 1099511628211ull;
  return h;
}

std::size_t payload_size(std::uint64_t seq) { return seq % 8 == 0 ? 5000 + seq % 300 : seq % 100; }

Stamped make_item(std::uint64_t producer, std::uint64_t seq) {
  Stamped item{producer, seq, 0, std::string(payload_size(seq), static_cast<char>(seq * 7))};
  item.sum = checksum(item.payload, producer ^ seq);
  return item;
}

bool whole(const Stamped& item) {
  return item.payload.size() == payload_size(item.seq) &&
         item.sum == checksum(item.payload, item.producer ^ item.seq) &&
         item.payload == std::string(payload_size(item.seq), static_cast<char>(item.seq * 7));
}

// In the driver, so that the queue outlives the workers' handles.
std::optional<State> driver_state;

std::string setup(const std::string& /*dir*/) {
  driver_state.emplace(mp::Queue<Stamped>(500), mp::RawArray<int>(1));
  return mp::pickle::dumps(*driver_state);
}

[[noreturn]] void work(std::string text, int worker_index) {
  auto [queue, broken] = mp::pickle::loads<State>(text);
  if (worker_index % 2 == 0) {
    const std::uint64_t producer = std::random_device{}() * 0x100000001ull + std::random_device{}();
    for (std::uint64_t seq = 0;; ++seq) queue.put(make_item(producer, seq));
  }
  std::map<std::uint64_t, std::uint64_t> next_seq;  // per producer: lowest acceptable
  for (;;) {
    const Stamped item = queue.get();
    auto [at, fresh] = next_seq.try_emplace(item.producer, 0);
    if (!whole(item) || item.seq < at->second) std::atomic_ref<int>(broken[0]).fetch_add(1);
    at->second = item.seq + 1;
  }
}

std::string verify(const std::string& text, int /*workers_killed*/) {
  auto [queue, broken] = mp::pickle::loads<State>(text);
  std::string problems;
  std::map<std::uint64_t, std::uint64_t> next_seq;
  for (const Stamped& item : mp_test::drain_nowait(queue)) {
    if (!whole(item)) problems += "a torn item in the queue; ";
    auto [at, fresh] = next_seq.try_emplace(item.producer, 0);
    if (item.seq < at->second) problems += "items of one producer out of order; ";
    at->second = item.seq + 1;
  }
  if (broken[0] != 0)
    problems += std::to_string(broken[0]) + " torn or out-of-order items got by consumers; ";
  if (!queue.empty() || queue.qsize() != 0) problems += "drained queue not empty; ";
  queue.put(make_item(1, 8), std::chrono::seconds(10));
  if (!whole(queue.get(std::chrono::seconds(10)))) problems += "the queue broke after the kills; ";
  driver_state.reset();
  return problems;
}

}  // namespace

MP_FAULT_PARTICIPANT(queue, {.setup = &setup, .work = &work, .verify = &verify});
