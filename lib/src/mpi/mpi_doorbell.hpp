// Private to mp::mpi: the doorbell of a serving rank on rank 0's machine. MPI offers no
// fd to sleep on, so a serving rank polls it, with naps that grow while nothing comes
// (up to a millisecond); a task sent to a rank in such a nap would wait for its end. A
// serving rank therefore also sleeps on a datagram socket in the abstract namespace,
// named after the job and its rank, and rank 0 rings it (one byte) when it sends to a
// rank it has not heard from or written to for a while. A rank on another machine (or in
// another network namespace) has no bell rank 0 can reach: the first ring fails and
// rank 0 rings it no more, and that rank polls only, as before.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "../posix/fd.hpp"

namespace mp::detail::mpi {

// A new job id (random hex) for the bells' names; rank 0 makes it and tells the others.
std::string new_doorbell_job();

// Whether the doorbells are on: MP_MPI_DOORBELL=0 turns them off (every serving rank then
// only polls MPI).
bool doorbells_enabled();

// A serving rank's bell.
class DoorbellListener {
 public:
  // Binds the bell of `rank` in job `job`; without one (fd() is -1) if that fails or
  // doorbells are off.
  DoorbellListener(std::string_view job, int rank);
  // Readable when rung; -1 if there is no bell.
  int fd() const { return fd_.get(); }
  // Takes every ring waiting (after poll said readable). Never blocks.
  void drain();

 private:
  posix::unique_fd fd_;
};

// Rank 0's side: rings the bells of the serving ranks.
class DoorbellRinger {
 public:
  DoorbellRinger(std::string job, int ranks);
  // Rings `rank`'s bell, unless it has none that can be reached (then never again).
  // Never blocks.
  void ring(int rank);
  // Whether `rank` may still have a bell.
  bool may_ring(int rank) const { return reachable_[static_cast<std::size_t>(rank)]; }

 private:
  std::string job_;
  posix::unique_fd fd_;
  std::vector<bool> reachable_;
};

}  // namespace mp::detail::mpi
