// The spawn bootstrap: how a child that shares no memory with its parent learns what to
// run (Python's multiprocessing/spawn.py). popen_spawn.cpp starts such a child by
// re-executing this binary; any start method that hands a child its target over a
// socket (a fork server, say) sends it the same bootstrap and runs spawn_main() in it.
//
// The protocol, on one stream socket, the child's fd kBootstrapFd when it is
// re-executed: two length-prefixed frames (8-byte length, then the bytes), with the
// shared heap's memfd and the passed fds between them:
//   1. pickle(std::string): the parent's main module id (build id), checked first, so
//      a different binary is named as such even if the layout of what follows changed;
//   then one byte 'H' carrying the heap's memfd (SCM_RIGHTS): the child maps the arena
//   before it unpickles anything, since the target's arguments may be handles to
//   shared objects;
//   then the fds the target's arguments registered while they were pickled (a
//   Connection's, see mp/detail/fd_passing.hpp): a 4-byte count, then one byte 'F'
//   carrying each, in index order; the child hands them to set_inherited_fds() so that
//   unpickling the arguments finds them;
//   2. pickle(SpawnHeader{ChildSetup, body}),
//      body = pickle(tuple{trampoline (code reference), pickled target and arguments}).
// The child checks that it runs the parent's binary before it resolves the trampoline,
// then runs it with child_main() and exits.
#pragma once

#include <string>
#include <system_error>
#include <vector>

#include "process_state.hpp"

namespace mp::detail {

// The fd a re-executed child finds its bootstrap socket on, and the command-line flag
// that tells mp::freeze_support so: `<exe> --mp-spawn 3`.
inline constexpr int kBootstrapFd = 3;
inline constexpr const char* kSpawnFlag = "--mp-spawn";

// The parent's side: one child's bootstrap, pickled when constructed, so that a target
// that cannot be pickled fails start() before any child exists.
class SpawnBootstrap {
 public:
  // Throws std::logic_error if freeze_support was not called or there is no target (a
  // Process subclass overriding run()), std::invalid_argument if the target cannot be
  // pickled, and whatever the arguments' serialize() throws. The objects owning passed
  // fds (the target's arguments) must stay alive until send() returns.
  SpawnBootstrap(const ChildSetup& setup, const Target* target);

  // Writes the whole bootstrap to `fd`. An error (EPIPE: the child died before it read
  // everything) is returned, not thrown: the child's exit code tells that story.
  std::error_code send(int fd) const noexcept;

 private:
  std::string module_frame_;
  std::string header_frame_;
  std::vector<int> passed_fds_;
  int heap_fd_ = -1;
};

// The child's side: reads the bootstrap from `fd`, checks the binary, runs the target
// and exits with its exit code. On a corrupt or missing bootstrap, says why on stderr
// and exits with 1. Never returns. With `heap_inherited` (a child forked by the fork
// server) the shared heap is mapped already, and its fd in the bootstrap is only closed.
[[noreturn]] void spawn_main(int fd, bool heap_inherited = false) noexcept;

// Whether `argv` is `<exe> <flag> <fd>` with a plain non-negative int as fd (then in `fd`).
bool fd_argument(int argc, char** argv, const char* flag, int& fd) noexcept;

// Called by mp::freeze_support: if `argv` is `<exe> --mp-spawn <fd>`, this process is
// a re-executed child and becomes it (never returns); otherwise returns.
void spawn_main_if_requested(int argc, char** argv) noexcept;

}  // namespace mp::detail
