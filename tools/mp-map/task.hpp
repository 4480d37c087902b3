// mp-map's tasks: what a worker runs for a chunk of items, and what it returns.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <mp/sharedctypes.hpp>

#include "exec.hpp"
#include "packed.hpp"

namespace mp_map {

// What every task carries besides its items: which function (or command) to run.
struct Job {
  std::string function;
  std::optional<Command> command;
  std::optional<double> timeout;

  template <class Archive>
  void serialize(Archive& ar) {
    ar(function, command, timeout);
  }
};

// What a task returns: every item's output ("" for a failed one), and which failed why.
struct ChunkResult {
  Packed outputs;
  std::vector<std::uint64_t> failed;  // indices, increasing
  std::vector<std::string> errors;    // one per failed index

  template <class Archive>
  void serialize(Archive& ar) {
    ar(outputs, failed, errors);
  }
};

// Which item of a chunk its worker is running (index + 1), in shared memory: when the
// worker is killed for overrunning the per-item timeout, the parent reads which item it
// was. Only with --timeout and a built-in function.
using ItemSlot = std::optional<mp::RawValue<std::uint64_t>>;

// The exit status of a worker that a Watchdog ended (timeout(1)'s).
constexpr int kTimedOutExit = 124;

// A task: runs the job over a chunk of items. Runs in a pool worker (a free function, so
// that it crosses into spawned workers too). Never throws for a bad item: the result
// says which items failed and why.
ChunkResult run_chunk(const Job& job, const Packed& items, const ItemSlot& slot);

}  // namespace mp_map
