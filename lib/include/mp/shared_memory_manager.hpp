// A manager of shared memory segments. Mirrors Python's
// `multiprocessing.managers.SharedMemoryManager` (3.8): SharedMemory(size) and
// ShareableList(sequence) factories whose segments are unlinked when the manager shuts
// down, by shutdown() or at the end of its scope (Python: the end of a `with` block).
//
//   mp::SharedMemoryManager smm;
//   smm.start();
//   mp::SharedMemory block = smm.SharedMemory(1 << 20);
//   mp::ShareableList list = smm.ShareableList({std::int64_t{1}, std::string("two")});
//   ...  // pass block and list to children as usual
//   smm.shutdown();  // or leave the scope: both names are gone from /dev/shm
//
// Differences from Python, on purpose:
//   - No server process: the manager is an object of the process that made it, and its
//     segments are mp::SharedMemory segments with mp's lifetime rule. So even if that
//     process is killed (SIGKILL included) before shutdown, its segments are removed
//     when its process tree has ended (<mp/shared_memory.hpp>); Python's server and its
//     segments outlive a killed owner.
//   - Shutdown unlinks: handles still open in any process keep their mapping (as in
//     Python, where the server only unlinks); the memory goes with the last of them.
//   - The manager is not copyable: the process that made it shuts it down. A forked
//     child's copy never unlinks anything (its destructor and shutdown() do nothing).
#pragma once

#include <mp/detail/export.hpp>

#include <mutex>
#include <string>
#include <vector>

#include <sys/types.h>

#include <mp/shared_memory.hpp>

namespace mp {

// Makes SharedMemory segments and ShareableLists, and unlinks them all at shutdown() or
// destruction. Not copyable. Python: multiprocessing.managers.SharedMemoryManager.
class MP_API SharedMemoryManager {
 public:
  // A manager that is not started yet. Python: SharedMemoryManager().
  SharedMemoryManager() = default;
  SharedMemoryManager(const SharedMemoryManager&) = delete;
  SharedMemoryManager& operator=(const SharedMemoryManager&) = delete;
  // Shuts down (unlinks the segments), in the process that made the manager.
  ~SharedMemoryManager();

  // Starts the manager. Throws mp::ProcessError if it was started or shut down already
  // (Python: ProcessError). Python: start().
  void start();
  // Unlinks every segment the factories made (skipping those already unlinked); the
  // factories then throw. Idempotent; does nothing in another process than the manager's
  // (a forked copy). Python: shutdown().
  void shutdown() noexcept;

  // A new segment of `size` bytes, unlinked at shutdown. Throws std::logic_error if the
  // manager is not running, otherwise as mp::SharedMemory(create_only, size).
  // Python: smm.SharedMemory(size).
  mp::SharedMemory SharedMemory(std::size_t size);
  // A new ShareableList holding `values`, unlinked at shutdown. Throws std::logic_error
  // if the manager is not running, otherwise as mp::ShareableList(create_only, values).
  // options.memory.persist is ignored: the manager's segments never persist.
  // Python: smm.ShareableList(sequence).
  mp::ShareableList ShareableList(std::vector<ShareableItem> values,
                                  ShareableListOptions options = {});

  // Whether start() was called and shutdown() not yet.
  bool running() const;
  // Names of the segments the factories made that shutdown will unlink.
  std::vector<std::string> segment_names() const;

 private:
  enum class State { initial, started, shutdown };
  void check_running(const char* what) const;

  mutable std::mutex mutex_;
  State state_ = State::initial;
  pid_t owner_ = 0;
  std::vector<mp::SharedMemory> segments_;
};

}  // namespace mp
