// The fork start method: Python's multiprocessing/popen_fork.py. The child is a copy
// of the parent, so it runs Process::run() directly: any callable works.
#include <pthread.h>
#include <stdio_ext.h>
#include <unistd.h>

#include <csignal>
#include <cstdlib>
#include <system_error>

#include "posix/pidfd.hpp"
#include "process_state.hpp"

namespace mp::detail {
namespace {

// A forked child ends as in Python 3.12+: what its target registered with std::atexit
// (or on_exit) runs, the parent's registrations and static destructors do not, since
// they belong to the parent. exit() runs the handlers last registered first; this one,
// registered by the child before its target runs, comes after all of the child's and
// before all of the parent's, and ends the process there.
void end_forked_child(int status, void*) noexcept {
  flush_std_streams();
  posix::exit_now(status);
}

int g_forked_child_exitcode = 0;

void* call_exit(void*) { std::exit(g_forked_child_exitcode); }

// exit() runs the calling thread's thread_local destructors first. In the forking
// thread those are the parent's objects, so exit() is called from a fresh thread, which
// has none.
[[noreturn]] void exit_forked_child(int exitcode) noexcept {
  g_forked_child_exitcode = exitcode;
  pthread_t exiting;
  if (::pthread_create(&exiting, nullptr, &call_exit, nullptr) == 0) {
    (void)::pthread_join(exiting, nullptr);  // never returns: the process ends in it
  }
  // No thread: the child's handlers are skipped, as everything was before.
  flush_std_streams();
  posix::exit_now(exitcode);
}

}  // namespace

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
    // Before the target, so that exit() in the target ends there too, with its code.
    const bool ends_in_handler = ::on_exit(&end_forked_child, nullptr) == 0;
    const int exitcode = child_main(setup, [&process] { process.run(); });
    if (ends_in_handler) exit_forked_child(exitcode);
    posix::exit_now(exitcode);  // the parent's handlers must not run
  }
  popen->adopt(pid);
  return popen;
}

}  // namespace mp::detail
