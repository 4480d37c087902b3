// The fork server: Python's multiprocessing/forkserver.py.
//
// On first use the program starts a copy of itself, `<exe> --mp-forkserver 3`
// (mp::freeze_support diverts it here). The server stays single-threaded, maps the
// parent's shared heap, runs the preload functions once, and then forks one child per
// request. A fork from a single-threaded process copies no lock another thread holds,
// which is the point: the parent may have any number of threads.
//
// The parent and the server share an unnamed SOCK_SEQPACKET socket pair (the server's
// fd 3): no address, so nothing to authenticate, and its end of file tells the server
// that its parent has gone. Records on it:
//   parent -> server, once: 'H', pickle(tuple{module id, pickle(preload functions),
//                           parent pid}), carrying the heap's memfd (SCM_RIGHTS);
//   server -> parent, once: 'R' (ready), or 'E' and a message;
//   parent -> server, per child: 'Q', daemon flag (one byte), carrying one end of a new
//                           stream socket pair: the child's channel.
// On the child's channel the parent sends the spawn bootstrap (spawn_bootstrap.hpp),
// which the forked child reads as a spawned child does, and the server answers: 'P'
// carrying a pidfd it opened, then the pid (4 bytes); or 'E' and an errno (4 bytes) if
// it could not fork; later 'S' and the exit code (4 bytes, Python's convention) once
// it has reaped the child. Big bootstraps never pass through the server.
//
// Parent death: the server watches its parent's pidfd and the control socket; when
// either says the parent is gone it kills its daemon children and exits. Daemon
// children set PR_SET_PDEATHSIG on the server (whose only thread forked them), so they
// follow their logical parent through the server, and die too if the server is killed.
#pragma once

#include <sys/types.h>

#include <memory>
#include <vector>

#include "process_state.hpp"
#include "spawn_bootstrap.hpp"

namespace mp::detail {

inline constexpr const char* kForkServerFlag = "--mp-forkserver";

// The parent's side: asks the server (started on first use, restarted if it died) for
// a child, sends it `bootstrap`, and returns the child's Popen. Throws
// std::system_error if the server cannot be started or cannot fork.
std::unique_ptr<Popen> forkserver_launch(const SpawnBootstrap& bootstrap, bool daemon);

// The functions the next server started runs once before it forks any child.
void forkserver_set_preload(std::vector<void (*)()> functions);

// The pid of this process's fork server, 0 if none runs (for tests).
pid_t forkserver_pid() noexcept;

// In a new child: the parent's fork server is not the child's (it inherited the fd of
// its control socket, and maybe the lock of a thread that held it). Forgets both, and
// forkserver_real_parent(), which a child forked from this one must not inherit.
void forkserver_forget_in_child() noexcept;

// In a child forked by a fork server: the server's pid, which is the child's real
// parent; 0 in every other process.
pid_t forkserver_real_parent() noexcept;

// Called by mp::freeze_support: if `argv` is `<exe> --mp-forkserver <fd>`, this process
// is a fork server and serves until its parent has gone (never returns).
void forkserver_main_if_requested(int argc, char** argv) noexcept;

}  // namespace mp::detail
