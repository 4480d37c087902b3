// The forkserver start method: Python's multiprocessing/popen_forkserver.py. The child
// is forked by the fork server (forkserver.hpp), a single-threaded copy of this
// program, and learns its target from the spawn bootstrap, as a spawned child does.
#include "forkserver.hpp"
#include "process_state.hpp"
#include "spawn_bootstrap.hpp"

namespace mp::detail {

std::unique_ptr<Popen> launch_forkserver(Process&, const ChildSetup& setup, const Target* target) {
  // Pickled first: a throwing serialize() fails start() before any child exists.
  const SpawnBootstrap bootstrap(setup, target);
  return forkserver_launch(bootstrap, setup.daemon);
}

}  // namespace mp::detail
