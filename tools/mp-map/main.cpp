// mp-map: a process-pool map over command-line input, in the family of `xargs -P` and
// GNU parallel; the command-line face of mp::Pool.
//
//   mp-map [OPTIONS] FUNCTION [::: ITEM...]
//   mp-map [OPTIONS] --exec 'COMMAND {}' [::: ITEM...]
//
// Items come from the arguments after ::: or else from standard input, one per line;
// results go to standard output one per line, in input order (--unordered: as they
// complete). See usage() in options.cpp for the options and exit statuses.
//
// The parts: options.cpp (the command line), input.cpp (reading the items), packed.hpp
// (the format chunks travel in), task.cpp (what a worker runs), mapper.cpp (scheduling
// and printing), exec.cpp and launcher.cpp (--exec), output.cpp (records on stdout).
#include <fcntl.h>
#include <malloc.h>
#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <exception>
#include <stdexcept>

#include <mp/mp.hpp>
#ifdef MP_MAP_MPI
#include <optional>

#include <mp/mpi.hpp>
#endif

#include "../std_fds.hpp"
#include "exec.hpp"
#include "input.hpp"
#include "mapper.hpp"
#include "options.hpp"
#include "output.hpp"

namespace mp_map {
namespace {

using mp_tools::occupy_if_closed;

// Standard output written by stdio (--help, --version): a failed write is an error.
int check_stdout(int status) {
  if (std::fflush(stdout) != 0 || std::ferror(stdout)) {
    std::fprintf(stderr, "mp-map: write error: %s\n", std::strerror(errno));
    return 1;
  }
  return status;
}

}  // namespace
}  // namespace mp_map

#ifdef MP_MAP_MPI
// --mpi (before any :::): the job's ranks other than 0 serve the pool and exit here.
void start_mpi(std::optional<mp::mpi::Session>& session, int& argc, char**& argv) {
  for (int i = 1; i < argc && std::strcmp(argv[i], ":::") != 0; ++i)
    if (std::strcmp(argv[i], "--mpi") == 0) {
      session.emplace(argc, argv);
      return;
    }
}
#endif

int main(int argc, char** argv) {
  mp::freeze_support(argc, argv);
#ifdef MP_MAP_MPI
  std::optional<mp::mpi::Session> mpi;
  start_mpi(mpi, argc, argv);
#endif
  using namespace mp_map;
  const bool stdin_closed = occupy_if_closed(0);
  const bool stdout_closed = occupy_if_closed(1);
  (void)occupy_if_closed(2);
  // Chunks and their results are buffers of a few MiB, allocated and freed all the time:
  // keep them in the heap (glibc would map and unmap each, and fault in its pages anew).
  ::mallopt(M_MMAP_THRESHOLD, 32 << 20);
  ::mallopt(M_TRIM_THRESHOLD, 64 << 20);
  Options options;
  Job job;
  try {
    options = parse_options(argc, argv);
#ifdef MP_MAP_MPI
    if (mpi && options.jobs == 0) {  // default: every serving rank's workers
      int total = 0;
      for (int n : mpi->workers_per_rank()) total += n;
      if (total > 0) options.jobs = static_cast<unsigned>(total);
    }
#endif
    job.function = options.function;
    job.timeout = options.timeout;
    if (options.exec) job.command = prepare(*options.exec);
  } catch (const UsageError& e) {
    std::fprintf(stderr, "mp-map: %s\n(mp-map --help lists the options)\n", e.message.c_str());
    return 2;
  } catch (const std::invalid_argument& e) {
    std::fprintf(stderr, "mp-map: %s\n", e.what());
    return 2;
  } catch (const ExitNow& e) {
    if (stdout_closed && e.status == 0) {
      std::fprintf(stderr, "mp-map: write error: %s\n", std::strerror(EBADF));
      return 1;
    }
    return check_stdout(e.status);
  }
  struct sigaction pipe_action {};
  (void)::sigaction(SIGPIPE, nullptr, &pipe_action);
  try {
    Input input(options.arguments, stdin_closed);
    Output output(1, stdout_closed);
    return run_map(options, std::move(job), input, output, pipe_action.sa_handler == SIG_IGN);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "mp-map: %s\n", e.what());
    return 1;
  }
}
