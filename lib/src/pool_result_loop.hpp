// Private to mp: mp::Pool's result loop, the pool's one thread (Python's
// _handle_results, with the task and worker handlers' periodic duties): collects the
// workers' replies, delivers outcomes to their jobs, keeps the workers going, and
// sleeps on the workers' reply and end descriptors when there is nothing to do. A
// thread waiting on a result may collect replies itself (help()).
#pragma once

#include <poll.h>

#include <atomic>
#include <vector>

#include "pool_scheduler.hpp"
#include "pool_state.hpp"
#include "pool_workers.hpp"
#include "posix/fd.hpp"

namespace mp::detail {

class ResultLoop {
 public:
  // Throws std::system_error if the wake-up socket cannot be made.
  ResultLoop(PoolState& state, Scheduler& scheduler, WorkerHandler& workers);

  // The thread's body: returns once the pool is closed or terminated and every worker
  // has ended. Never throws: an unexpected exception breaks the pool.
  void run() noexcept;
  // Collects and delivers finished replies in the caller's thread. Never blocks. While
  // the thread sleeps, the first call that finds nothing mutes the workers' wake-ups:
  // they would only wake it to collect what the caller collects. Call end_help() after.
  HelpResult help();
  // The caller stops helping: the sleeping thread is woken for replies again, now if
  // some are there. Takes the mutex.
  void end_help();
  // Hands outcomes to their jobs (mutex not held); empties `done`.
  static void deliver(Completions& done);
  // Wakes the thread from its sleep (any thread, mutex held or not).
  void wake();
  // Whether the thread sleeps (then only wake() reaches it).
  bool sleeping() const { return sleeping_.load(); }

 private:
  void run_loop();
  // Spins briefly for a reply while results are flowing; true if one came.
  bool spin_for_replies() const;
  void sleep(Completions& done);

  PoolState& state_;
  Scheduler& scheduler_;
  WorkerHandler& workers_;
  posix::unique_fd wake_read_, wake_write_;
  std::atomic<bool> sleeping_{false};
  bool muted_ = false;  // the sleeping thread's links are muted (mutex held)
  std::vector<pollfd> fds_;
  std::vector<WorkerSlot*> polled_;
};

}  // namespace mp::detail
