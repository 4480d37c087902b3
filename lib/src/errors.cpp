#include <mp/errors.hpp>

#include <csignal>
#include <cstring>

namespace mp {

std::string describe_exitcode(std::optional<int> exitcode) {
  if (!exitcode) return "still running";
  if (*exitcode >= 0) return "exit code " + std::to_string(*exitcode);
  const int sig = -*exitcode;
  const char* abbrev = sigabbrev_np(sig);
  return abbrev ? "killed by SIG" + std::string(abbrev) : "killed by signal " + std::to_string(sig);
}

WorkerLostError::WorkerLostError(pid_t pid, std::optional<int> exitcode)
    : BrokenProcessPool("worker process " + std::to_string(pid) +
                        " died before finishing its task (" + describe_exitcode(exitcode) + ")"),
      pid_(pid),
      exitcode_(exitcode) {}

}  // namespace mp
