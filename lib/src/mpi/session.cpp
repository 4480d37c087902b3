// mp::mpi::Session: MPI's start and end, the build-id check, and each rank's role.
#include <mp/mpi.hpp>

#include <mpi.h>

#include <algorithm>
#include <charconv>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>

#include <mp/context.hpp>
#include <mp/detail/code_ref.hpp>

#include "mpi_doorbell.hpp"
#include "mpi_session.hpp"

namespace mp::mpi {
namespace {

using detail::mpi_wire::check;

bool session_active = false;
MPI_Comm session_comm = MPI_COMM_NULL;
std::unique_ptr<detail::mpi_wire::Comm> session_wire;

// The largest MPI message: 1 GiB, or MP_MPI_MAX_PART bytes (at least 64; for tests of
// messages in several parts).
std::size_t max_part() {
  std::size_t part = std::size_t{1} << 30;
  if (const char* env = std::getenv("MP_MPI_MAX_PART")) {
    std::size_t value = 0;
    const std::string_view text(env);
    const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
    if (ec == std::errc() && end == text.data() + text.size())
      part = std::clamp<std::size_t>(value, 64, part);
  }
  return part;
}

// This rank's local workers: its CPUs shared among the serving ranks of its node, or
// MP_MPI_WORKERS_PER_RANK (1 to 1024).
int local_workers(MPI_Comm comm, int rank) {
  MPI_Comm node;
  check(MPI_Comm_split_type(comm, MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL, &node),
        "MPI_Comm_split_type");
  int node_size = 1;
  MPI_Comm_size(node, &node_size);
  int is_rank0 = rank == 0 ? 1 : 0, has_rank0 = 0;
  check(MPI_Allreduce(&is_rank0, &has_rank0, 1, MPI_INT, MPI_MAX, node), "MPI_Allreduce");
  MPI_Comm_free(&node);
  if (const char* env = std::getenv("MP_MPI_WORKERS_PER_RANK")) {
    int value = 0;
    const std::string_view text(env);
    const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
    if (ec == std::errc() && end == text.data() + text.size() && value >= 1 && value <= 1024)
      return value;
  }
  const int serving = std::max(1, node_size - has_rank0);
  return std::max(1, cpu_count() / serving);
}

// Every rank's main module id at rank 0; there, an empty string if all equal rank 0's,
// else a message naming the ranks that differ.
std::string compare_build_ids(MPI_Comm comm, int rank, int size) {
  const std::string& id = detail::main_module_id();
  int length = static_cast<int>(id.size());
  std::vector<int> lengths(rank == 0 ? size : 0);
  check(MPI_Gather(&length, 1, MPI_INT, lengths.data(), 1, MPI_INT, 0, comm), "MPI_Gather");
  std::vector<int> displacements;
  std::string all;
  if (rank == 0) {
    int total = 0;
    for (int n : lengths) {
      displacements.push_back(total);
      total += n;
    }
    all.resize(static_cast<std::size_t>(total));
  }
  check(MPI_Gatherv(id.data(), length, MPI_CHAR, all.data(), lengths.data(), displacements.data(),
                    MPI_CHAR, 0, comm),
        "MPI_Gatherv");
  if (rank != 0) return {};
  std::string differ;
  for (int r = 1; r < size; ++r) {
    const std::string_view other(all.data() + displacements[r],
                                 static_cast<std::size_t>(lengths[r]));
    if (other == id) continue;
    differ += "\n  rank " + std::to_string(r) + " runs " + std::string(other);
  }
  if (differ.empty()) return {};
  return "mp::mpi::Session: every rank must run the same binary; rank 0 runs " + id + differ;
}

}  // namespace

Session::Session(int& argc, char**& argv) { start(&argc, &argv); }

void Session::start(int* argc, char*** argv) {
  if (session_active) throw std::logic_error("mp::mpi::Session: a Session exists already");
  int provided = 0;
  check(MPI_Init_thread(argc, argv, MPI_THREAD_MULTIPLE, &provided), "MPI_Init_thread");
  session_active = true;
  if (provided < MPI_THREAD_SERIALIZED) {
    MPI_Finalize();
    throw std::runtime_error("mp::mpi::Session: this MPI library supports no threads");
  }
  check(MPI_Comm_dup(MPI_COMM_WORLD, &session_comm), "MPI_Comm_dup");
  MPI_Comm_rank(session_comm, &rank_);
  MPI_Comm_size(session_comm, &size_);

  std::string refusal = compare_build_ids(session_comm, rank_, size_);
  int refusal_length = static_cast<int>(refusal.size());
  check(MPI_Bcast(&refusal_length, 1, MPI_INT, 0, session_comm), "MPI_Bcast");
  if (refusal_length != 0) {
    // Rank 0 alone ends the job, after it has written why; the others wait for that in a
    // barrier rank 0 never enters (a rank that exited first could make mpirun end the
    // job before rank 0's message reached it).
    if (rank_ == 0) {
      std::fprintf(stderr, "%s\n", refusal.c_str());
      std::fflush(stderr);
      MPI_Abort(session_comm, 1);
    } else {
      MPI_Barrier(session_comm);
    }
    std::_Exit(1);  // not reached: MPI_Abort ends every rank
  }

  int mine = local_workers(session_comm, rank_);  // a collective: every rank calls it
  if (rank_ == 0) mine = 0;
  workers_.assign(static_cast<std::size_t>(size_), 0);
  check(MPI_Gather(&mine, 1, MPI_INT, workers_.data(), 1, MPI_INT, 0, session_comm), "MPI_Gather");

  // The serving ranks' doorbells are named after this job (mpi_doorbell.hpp).
  std::string job = rank_ == 0 ? detail::mpi::new_doorbell_job() : std::string(16, ' ');
  check(MPI_Bcast(job.data(), static_cast<int>(job.size()), MPI_CHAR, 0, session_comm),
        "MPI_Bcast");

  // Every serving rank binds its bell before rank 0 goes on: a ring that found no bell
  // yet would make rank 0 take the rank for one on another machine and never ring it.
  std::optional<detail::mpi::DoorbellListener> bell;
  if (rank_ != 0) bell.emplace(job, rank_);
  check(MPI_Barrier(session_comm), "MPI_Barrier");

  session_wire = std::make_unique<detail::mpi_wire::Comm>(session_comm, max_part());
  if (rank_ != 0) {
    int status = 0;
    try {
      detail::mpi::serve(*session_wire, std::move(*bell));
    } catch (const std::exception& e) {
      std::fprintf(stderr, "mp::mpi: serving rank %d failed: %s\n", rank_, e.what());
      status = 1;
    }
    session_wire.reset();
    MPI_Comm_free(&session_comm);
    MPI_Finalize();
    std::exit(status);
  }
  detail::mpi::start_hub(*session_wire, workers_, job);
}

Session::~Session() {
  detail::mpi::stop_hub();
  session_wire.reset();
  MPI_Comm_free(&session_comm);
  MPI_Finalize();
  session_active = false;
}

}  // namespace mp::mpi
