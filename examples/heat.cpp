// A real-world program beside the course ones: heat diffusion on a rod, solved by
// processes that share the temperature arrays and meet at a Barrier once per time step.
// The Python it replaces (workers on shared arrays, one barrier per step):
//
//   def worker(rank, workers, cells, steps, old, new, barrier):
//       lo, hi = rank * cells // workers, (rank + 1) * cells // workers
//       for step in range(steps):
//           src, dst = (old, new) if step % 2 == 0 else (new, old)
//           for i in range(lo, hi):
//               left = src[i - 1] if i > 0 else src[i]       # insulated ends
//               right = src[i + 1] if i < cells - 1 else src[i]
//               dst[i] = src[i] + 0.25 * (left - 2 * src[i] + right)
//           barrier.wait()                                   # everyone wrote step+1
//
//   old, new = RawArray('d', cells), RawArray('d', cells)
//   barrier = Barrier(workers)
//   procs = [Process(target=worker, args=(...)) for rank in range(workers)]
//
// It runs twice. First normally: the total heat is conserved (insulated ends) and the
// peak spreads out. Then with worker 1 crashing (std::abort) in its computation half way,
// between two waits. In Python the other workers would wait at the barrier forever; with
// mp the barrier knows its parties (the processes that waited on it), sees that one died
// without leaving, and breaks: the others get mp::BrokenBarrierError within about a
// second, stop, and main reports what happened. A worker that returns normally leaves the
// barrier, so a clean finish is never mistaken for a death.
//
// usage: example_heat [CELLS [STEPS [WORKERS]]]   (default 4000 cells, 400 steps, 3)
#include <cmath>
#include <cstdlib>
#include <string>
#include <vector>

#include <mp/mp.hpp>

#include "example.hpp"

namespace {

constexpr int kBrokenExit = 3;  // a worker stopped because the barrier broke

// Steps the cells [lo, hi) of the rod; crashes at `crash_step` if it is >= 0.
void worker(int rank, int workers, int steps, int crash_step, mp::RawArray<double> old_cells,
            mp::RawArray<double> new_cells, mp::Barrier barrier) {
  const int cells = static_cast<int>(old_cells.size());
  const int lo = rank * cells / workers, hi = (rank + 1) * cells / workers;
  try {
    for (int step = 0; step < steps; ++step) {
      if (step == crash_step) std::abort();  // a bug in the computation, say
      const double* src = (step % 2 == 0 ? old_cells : new_cells).begin();
      double* dst = (step % 2 == 0 ? new_cells : old_cells).begin();
      for (int i = lo; i < hi; ++i) {
        const double left = i > 0 ? src[i - 1] : src[i];
        const double right = i < cells - 1 ? src[i + 1] : src[i];
        dst[i] = src[i] + 0.25 * (left - 2 * src[i] + right);
      }
      barrier.wait(std::chrono::seconds(60));  // a generous bound; a death breaks it at once
    }
  } catch (const mp::BrokenBarrierError&) {
    std::exit(kBrokenExit);
  }
}

// Runs the solver; returns whether every worker finished.
bool solve(int cells, int steps, int workers, int crashing_rank) {
  mp::RawArray<double> old_cells(static_cast<std::size_t>(cells));
  mp::RawArray<double> new_cells(static_cast<std::size_t>(cells));
  old_cells[static_cast<std::size_t>(cells / 2)] = 1000.0;  // a hot spot in the middle
  mp::Barrier barrier(workers);
  std::vector<mp::Process> processes;
  for (int rank = 0; rank < workers; ++rank) {
    const int crash_step = rank == crashing_rank ? steps / 2 : -1;
    processes.emplace_back(mp::ProcessOptions{.name = "Heat-" + std::to_string(rank)}, &worker,
                           rank, workers, steps, crash_step, old_cells, new_cells, barrier);
    processes.back().start();
  }
  const auto start = std::chrono::steady_clock::now();
  bool all_finished = true;
  for (auto& process : processes) {
    process.join();
    if (process.exitcode() == kBrokenExit) {
      example::say("%s: stopped, the barrier broke (a party died)\n", process.name().c_str());
      all_finished = false;
    } else if (process.exitcode() != 0) {
      example::say("%s: died (%s)\n", process.name().c_str(),
                   mp::describe_exitcode(process.exitcode()).c_str());
      all_finished = false;
    }
  }
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  if (!all_finished) {
    example::say("the others stopped %s\n", seconds < 5 ? "promptly" : "late");
    return false;
  }
  const mp::RawArray<double>& result = steps % 2 == 0 ? old_cells : new_cells;
  double total = 0, peak = 0;
  for (double t : result) {
    total += t;
    peak = std::max(peak, t);
  }
  example::say("total heat %.3f (conserved), peak %.3f after %d steps\n", total, peak, steps);
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  mp::freeze_support(argc, argv);
  const auto args = example::parse_args(argc, argv, "[CELLS [STEPS [WORKERS]]]");
  const int cells = static_cast<int>(example::number_arg(args, 0, 4000));
  const int steps = static_cast<int>(example::number_arg(args, 1, 400));
  const int workers = static_cast<int>(example::number_arg(args, 2, 3));
  if (cells < workers || steps < 2 || workers < 2 || workers > 64) {
    std::fprintf(stderr, "need CELLS >= WORKERS, STEPS >= 2, 2 <= WORKERS <= 64\n");
    return 2;
  }
  example::say("heat: %d cells, %d steps, %d workers\n", cells, steps, workers);
  if (!solve(cells, steps, workers, -1)) return 1;
  example::say("again, with Heat-1 crashing at step %d\n", steps / 2);
  if (solve(cells, steps, workers, 1)) return 1;  // the crash must be noticed
  return 0;
}
