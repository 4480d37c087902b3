// mp::mpi: mp::Pool and mp::ProcessPoolExecutor across the ranks of an MPI job (the
// component mp::mpi: find_package(mp COMPONENTS mpi), target mp::mpi; it alone needs
// MPI). The model is mpi4py.futures' SPMD mode: every rank runs the same program; rank 0
// runs main() and the others serve the pools it creates.
//
//   int main(int argc, char** argv) {
//     mp::freeze_support(argc, argv);
//     mp::mpi::Session mpi(argc, argv);        // ranks other than 0 serve here, then exit
//     mp::Pool pool({.start_method = "mpi"});  // the one change to a local program
//     auto squares = pool.map(square, xs);
//   }
//   // mpirun -n 5 ./app     or     srun -N 4 ./app
//
// How it works. Each serving rank runs a local pool of worker processes (spawn); rank
// 0's pool reaches them over MPI. User code never runs inside an MPI process, so a task
// that crashes or runs past task_timeout fails with WorkerLostError or TimeoutError and
// the job goes on, as on one machine. Functions travel as code references (module build
// id plus offset), which is why every rank must run the same binary: Session checks the
// build ids of all ranks at start and refuses a job where any differs. MPI gives no fd
// to sleep on, so an idle serving rank polls it with naps of up to a millisecond; one on
// rank 0's machine also sleeps on a doorbell (an abstract UNIX socket) that rank 0 rings
// when it sends to a rank it has not exchanged messages with for a while, so that the
// first task after a pause does not wait for the nap to end (MP_MPI_DOORBELL=0: no
// doorbells).
//
// Failure. Open MPI 4.1 aborts the whole job when an MPI process dies (there is no
// fault tolerance before Open MPI 5): a rank or node that dies ends the job with a
// non-zero exit and mpirun's message naming the rank, never a hang.
//
// Workers per serving rank: the CPUs it may use divided among the serving ranks on its
// node (at least one), or MP_MPI_WORKERS_PER_RANK. A Pool's default `processes` is the
// sum over the serving ranks. With one rank (no serving rank) Pool{.start_method =
// "mpi"} is a local pool with the default start method.
//
// Differences from a local pool: a task handed to a serving rank cannot be taken back,
// so Future::cancel() and shutdown(cancel_futures) cancel only the tasks still waiting
// at rank 0 (each serving worker holds a few); heap objects (Value, Array, Queue...) and
// Connections cannot travel to another machine and fail to pickle.
#pragma once

#include <mp/detail/export.hpp>

#include <string>
#include <vector>

namespace mp::mpi {

// The MPI job, for the life of main(): create one right after freeze_support(), before
// any "mpi" pool, and let it end after them. Makes Pool{.start_method = "mpi"} and
// ProcessPoolExecutor{.start_method = "mpi"} reach the serving ranks. Not copyable. Python:
// mpi4py.futures' SPMD mode (`with MPICommExecutor() as executor:` on every rank).
class MP_API Session {
 public:
  // Initialises MPI (MPI_Init_thread, which may take its own arguments out of argc and
  // argv) and checks that every rank runs the same binary.
  // On a rank other than 0 it then serves pools until rank 0's Session ends, and exits
  // the process (status 0) without returning. On rank 0 it returns, and Pool{.start_method
  // = "mpi"} now reaches the serving ranks. If the ranks' binaries differ, rank 0 writes
  // which to stderr and ends the job (MPI_Abort, status 1): no rank returns. Throws
  // std::logic_error if a Session exists already.
  Session(int& argc, char**& argv);
  // Ends the serving ranks and finalises MPI. Destroy every "mpi" pool before.
  ~Session();
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

  // This process's rank in MPI_COMM_WORLD: 0 (a Session only returns on rank 0).
  // mpi4py: MPI.COMM_WORLD.Get_rank().
  int rank() const noexcept { return rank_; }
  // The number of ranks in the job, rank 0 included. mpi4py: MPI.COMM_WORLD.Get_size().
  int size() const noexcept { return size_; }
  // Local workers on each serving rank (index: rank; 0 for rank 0).
  const std::vector<int>& workers_per_rank() const noexcept { return workers_; }

 private:
  void start(int* argc, char*** argv);
  int rank_ = 0;
  int size_ = 1;
  std::vector<int> workers_;
};

}  // namespace mp::mpi
