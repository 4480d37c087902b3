// Private to mp: the spin of a thread that waits on a pool's result (AsyncResult::get,
// Future::result). Before it sleeps, it drains the pool's results itself for a while
// (PoolCore::helper()): a short task's result is then in hand microseconds after the
// worker wrote it, without a wake-up of the pool's result thread and then of the waiter.
#pragma once

#include <sched.h>

#include <algorithm>
#include <chrono>
#include <functional>
#include <optional>

#include <mp/detail/pool_core.hpp>

#include "posix/futex.hpp"

namespace mp::detail {

// How long a waiter on local workers helps.
inline constexpr std::chrono::microseconds kHelpSpin{100};

// Helps until ready(), for kHelpSpin at most, or kRemoteHelpSpin when the workers are on
// other machines (their round trip is longer, and the helper polls the network), and
// never past `timeout`; then ends the helping (helper(true)). Clock: steady_clock's
// kind, for tests.
template <class Clock = std::chrono::steady_clock, class Ready>
void help_within(const std::function<HelpResult(bool done)>& helper,
                 std::optional<std::chrono::nanoseconds> timeout, Ready ready) {
  if (!helper) return;
  const auto start = Clock::now();
  const auto spin_end = [&](std::chrono::nanoseconds spin) {
    return start + (timeout ? std::min(*timeout, spin) : spin);
  };
  auto spin_until = spin_end(kHelpSpin);
  while (!ready()) {
    const HelpResult helped = helper(false);
    if (helped == HelpResult::not_worth_spinning) break;
    if (helped == HelpResult::nothing_yet_remote) {
      spin_until = spin_end(kRemoteHelpSpin);
      // The serving rank and the worker that answer may wait for this CPU (ranks and
      // their workers often outnumber the CPUs): a spin that kept it would delay the
      // very reply it waits for.
      sched_yield();
    } else if (helped == HelpResult::nothing_yet) {
      for (int i = 0; i < 32; ++i) posix::cpu_relax();
    }
    if (Clock::now() >= spin_until) break;
  }
  (void)helper(true);
}

}  // namespace mp::detail
