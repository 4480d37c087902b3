// The fork start method: Python's multiprocessing/popen_fork.py. The child is a copy
// of the parent, so it runs Process::run() directly: any callable works.
#include <stdio_ext.h>
#include <sys/wait.h>
#include <unistd.h>

#include <csignal>
#include <system_error>

#include "posix/pidfd.hpp"
#include "process_state.hpp"

namespace mp::detail {

std::unique_ptr<Popen> launch_fork(Process& process, const ChildSetup& setup, const Target*) {
  // Opened once, here: the child inherits the fd and only duplicates it onto stdin.
  (void)posix::devnull();
  // Allocated now: after fork the parent's writes copy pages while the child lives.
  auto popen = std::make_unique<Popen>();
  // Whatever sits in stdio buffers now would otherwise be printed twice.
  flush_std_streams();
  const pid_t pid = ::fork();
  if (pid < 0) throw std::system_error(posix::last_error(), "mp: fork");
  if (pid == 0) {
    // What the parent still had buffered belongs to the parent: another of its threads
    // may have written it after the flush above, and the child flushes at its end.
    __fpurge(stdout);
    __fpurge(stderr);
    // _exit, not exit: the parent's atexit handlers and static destructors belong to
    // the parent (Python's popen_fork does os._exit too).
    posix::exit_now(child_main(setup, [&process] { process.run(); }));
  }
  // No one else can reap our child, so opening its pidfd now cannot race.
  posix::unique_fd pidfd;
  if (auto ec = posix::pidfd_open(pid, pidfd)) {
    ::kill(pid, SIGKILL);
    ::waitpid(pid, nullptr, 0);
    throw std::system_error(ec, "mp: pidfd_open");
  }
  popen->set_child(pid, std::move(pidfd));
  return popen;
}

}  // namespace mp::detail
