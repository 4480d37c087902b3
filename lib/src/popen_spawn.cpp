// The spawn start method: Python's multiprocessing/popen_spawn_posix.py.
//
// The parent re-executes its own binary with posix_spawn (every other fd closed in the
// child) as `<exe> --mp-spawn 3`, with fd 3 one end of a socket pair, and sends the
// bootstrap (spawn_bootstrap.hpp) over it. mp::freeze_support() in the child's main()
// sees the flag and becomes the child.
#include <string>
#include <system_error>

#include "posix/socket.hpp"
#include "posix/spawn.hpp"
#include "process_state.hpp"
#include "spawn_bootstrap.hpp"

namespace mp::detail {

std::unique_ptr<Popen> launch_spawn(Process&, const ChildSetup& setup, const Target* target) {
  // Pickled first: a throwing serialize() fails start() before any child exists.
  const SpawnBootstrap bootstrap(setup, target);

  posix::unique_fd parent_end, child_end;
  if (auto ec = posix::socket_pair(parent_end, child_end))
    throw std::system_error(ec, "mp: socketpair");

  std::string exe;
  if (auto ec = posix::self_executable(exe))
    throw std::system_error(ec, "mp: readlink /proc/self/exe");
  flush_std_streams();
  pid_t pid = 0;
  if (auto ec = posix::spawn_with_fd(exe, {kSpawnFlag, std::to_string(kBootstrapFd)},
                                     child_end.get(), kBootstrapFd, pid))
    throw std::system_error(ec, "mp: posix_spawn " + exe);
  child_end.reset();

  auto popen = std::make_unique<Popen>();
  popen->adopt(pid);
  // If the child died before reading (it could not start), writing fails with EPIPE;
  // its exit code tells the story, so the error is not thrown here.
  (void)bootstrap.send(parent_end.get());
  return popen;
}

}  // namespace mp::detail
