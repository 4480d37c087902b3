// Private: the state behind mp::Process, the child-side bootstrap shared by every
// start method, and the launch strategies (one file each, as CPython's popen_*.py).
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <sys/types.h>

#include <mp/process.hpp>

#include "posix/fd.hpp"

namespace mp::detail {

// A started child as its parent sees it. Every start method produces the same thing
// (a pid and a pidfd); they differ only in how the child comes to exist.
class Popen {
 public:
  Popen() = default;
  // Takes `pid`, a child this process has just created, by opening its pidfd (no one
  // else can reap the child, so this cannot race). If that fails, the child is killed
  // and reaped, and std::system_error is thrown. Allocate the Popen before the child
  // exists: after fork every page the parent writes is copied while the child lives.
  void adopt(pid_t pid);
  // Takes a child another process (the fork server) created and reaps: its pidfd, and
  // the channel on which that process sends 'S' and the exit code once it has reaped it.
  void adopt_served(pid_t pid, posix::unique_fd pidfd, posix::unique_fd status_channel) noexcept;
  pid_t pid() const noexcept { return pid_; }
  int sentinel() const noexcept { return pidfd_.get(); }
  // The exit code if the child has ended (reaping it); never blocks.
  std::optional<int> poll();
  // Waits at most `timeout` (nullopt: forever) and returns poll().
  std::optional<int> wait(std::optional<std::chrono::nanoseconds> timeout);
  // Sends `sig` unless the child has already been reaped.
  void send_signal(int sig);

 private:
  // Logs (at debug) that the child ended, with its returncode_.
  void log_ended() const;
  std::mutex mutex_;
  pid_t pid_ = 0;
  posix::unique_fd pidfd_;
  posix::unique_fd status_channel_;  // a served child's (see adopt_served)
  std::optional<int> returncode_;
};

// What a child needs to know about itself; sent to a spawned child, set directly
// in a forked one.
struct ChildSetup {
  std::string name;
  std::vector<int> identity;  // Python's _identity: {1, 2} is "Process-1:2"
  bool daemon = false;
  pid_t parent_pid = 0;
  std::string parent_name;
  // The method that started this child: the child's own default, as Python's
  // _bootstrap forces it (its children then start the same way unless told otherwise).
  std::string start_method;
  // Daemon children die with their parent. PR_SET_PDEATHSIG fires when the creating
  // *thread* ends, so it is used only when the main thread started the child; a
  // child started from another thread watches its parent's pidfd instead.
  bool parent_death_by_signal = true;

  template <class Archive>
  void serialize(Archive& ar) {
    ar(name, identity, daemon, parent_pid, parent_name, start_method, parent_death_by_signal);
  }
};

struct ProcessState {
  enum class Kind { child, self, parent };

  mutable std::mutex mutex;
  Kind kind = Kind::child;
  std::string name;
  std::optional<bool> daemon;  // nullopt until start(): inherit from the parent
  std::vector<int> identity;
  std::string start_method;  // requested; resolved at start()
  pid_t creator_pid = 0;     // the process that created (and may join) this child
  pid_t pid = 0;             // for self and parent
  std::unique_ptr<Popen> popen;
  ChildSetup setup;               // kept: freeing it right after fork would copy a page
  posix::unique_fd parent_pidfd;  // Kind::parent: readable once the parent has ended
  bool closed = false;
};

// Lets lib/src build Process handles around existing state.
struct ProcessAccess {
  static Process make(std::shared_ptr<ProcessState> state) { return Process(std::move(state)); }
  static Process make(ProcessOptions options, Target target) {
    return Process(std::move(options), std::move(target));
  }
  static const std::shared_ptr<Target>& target(const Process& p) { return p.target_; }
};

// Runs `body` as the child's target with Python's bootstrap semantics (identity,
// stdin from /dev/null, parent-death handling, uncaught exception printed and exit
// code 1, stdio flushed, own children joined) and returns the exit code.
int child_main(const ChildSetup& setup, const std::function<void()>& body) noexcept;

// Flushes stdout/stderr and the standard C++ streams (before fork and before a child
// exits); touches only streams holding output.
void flush_std_streams() noexcept;

// A launch strategy: creates the child that will run process.run() (fork) or the
// target (spawn). Throws on failure; the child does not exist then. One per line of
// start_methods.def: popen_NAME.cpp defines launch_NAME.
using Launcher = std::unique_ptr<Popen> (*)(Process& process, const ChildSetup& setup,
                                            const Target* target);
#define MP_START_METHOD(name, title)                                              \
  std::unique_ptr<Popen> launch_##name(Process& process, const ChildSetup& setup, \
                                       const Target* target);
#include "start_methods.def"
#undef MP_START_METHOD

// Resolves "" to the default and checks the name. Throws std::invalid_argument.
std::string resolve_start_method(const std::string& requested);
Launcher launcher_for(const std::string& method);

// The name of a pool's worker number `number` started with `method`, as Python names
// them: "ForkPoolWorker-3". Throws std::invalid_argument for an unknown method.
std::string pool_worker_name(std::string_view method, int number);

// Makes `method` (the one that started this child) the child's default start method.
// Called once in a new child, which has one thread: a forked child may have inherited
// the lock held by another thread of its parent, so it is made anew.
void set_default_method_in_child(const std::string& method) noexcept;

// Whether mp::freeze_support has been called in this process.
bool freeze_support_called() noexcept;

// Whether this process has a thread besides the caller (from /proc/self/stat).
bool other_threads_alive() noexcept;

// The method a pool worker is started with: `requested` (empty: the default), except
// that fork becomes forkserver when other threads are alive and freeze_support was
// called: a pool's replacement workers are started from its result thread, while the
// program's threads run on.
std::string pool_worker_start_method(const std::string& requested);

// Ends (SIGKILL) and reaps a child of this process that no Popen owns yet.
void kill_and_reap(pid_t pid) noexcept;

}  // namespace mp::detail
