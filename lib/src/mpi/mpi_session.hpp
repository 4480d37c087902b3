// Private to mp::mpi: what the Session (session.cpp) starts on each rank. Rank 0 runs a
// hub whose rounds (one thread at a time, under a mutex) are the only MPI calls while
// the Session lives, and registers the "mpi" pool transport whose workers live on the
// serving ranks (mpi_transport.cpp); the serving ranks run serve() (mpi_serve.cpp).
#pragma once

#include <string>
#include <vector>

#include <mp/detail/export.hpp>

#include "mpi_doorbell.hpp"
#include "mpi_wire.hpp"

namespace mp::detail::mpi {

// The start method of the local pools of the serving ranks. Open MPI discourages fork()
// inside an MPI process, and a worker forked from it would share its MPI state.
inline constexpr const char* kServingStartMethod = "spawn";

// A transport's window: a remote worker holds at most this many tasks.
inline constexpr unsigned kRemoteWindow = 64;

// Rank 0: starts the hub over `comm` and registers the "mpi" transport. workers[r] is
// the local workers of serving rank r (workers[0] is unused); `job` names the serving
// ranks' doorbells.
void start_hub(mpi_wire::Comm& comm, std::vector<int> workers, const std::string& job);
// Rank 0: unregisters the transport, ends the serving ranks and stops the hub.
void stop_hub();
// Rank 0, for tests: whether the hub still rings the doorbell of serving rank `rank`
// (false once a ring found no bell: a rank on another machine, or none at all).
MP_API bool hub_rings(int rank);

// A serving rank: runs the workers rank 0 asks for until it says shutdown, sleeping on
// its doorbell `bell` too (bound before rank 0 could first ring it).
void serve(mpi_wire::Comm& comm, DoorbellListener bell);

// Sleeps between polls of MPI, which offers no fd to wait on: after the last activity
// it spins (yielding) for kSpinNs, then takes short naps until kShortNapsNs (a request
// that follows a reply closely is seen within microseconds even on a loaded machine,
// where a thread that yields may not run again for milliseconds), then naps that double
// up to kMaxNap, so an idle rank costs little CPU and never starves the workers.
// This thread's timers fire within a microsecond of their time (Linux's default slack,
// 50 us, would make every short nap of the pollers several times longer).
void precise_naps();

class Backoff {
 public:
  void active();
  // How long to sleep now; 0: just yield.
  long nap_ns();
  // The end of one round of polling: resets if the round was `active`, yields while
  // spinning. Returns how long to nap now; 0: poll again at once.
  long after_round(bool was_active);

  static constexpr long kShortNapsNs = 1'000'000;

 private:
  static constexpr long kSpinNs = 200'000;
  static constexpr long kShortNap = 20'000;
  static constexpr long kMaxNap = 1'000'000;
  long idle_since_ns_ = 0;
  long nap_ = 0;
};

}  // namespace mp::detail::mpi
