// mp::Process and the process-level module functions.
// Mirrors Python's `multiprocessing.process` (Process, current_process,
// parent_process, active_children).
//
// Differences from Python, on purpose:
//   - A target is any callable plus arguments: `mp::Process p(work, 1, "x");`. With the
//     fork start method anything goes (the child has a copy of the parent's memory).
//     With spawn the callable and its arguments are pickled: free functions,
//     captureless lambdas and function objects with `serialize` work; a capturing
//     lambda makes start() throw std::invalid_argument naming the reason.
//   - Children are watched through pidfds: no SIGCHLD handler is installed, and
//     sentinel() is a pidfd (readable once the child has ended).
//   - Daemon children are killed (SIGKILL) if the parent dies without cleaning up,
//     even by SIGKILL: Python leaves them running.
//   - join(timeout) returns whether the child has ended (Python returns None).
//   - Process is move-only; the handles that active_children() returns refer to the
//     same child.
//   - pid() is 0 before start() (Python: None).
#pragma once

#include <mp/detail/export.hpp>

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include <sys/types.h>

#include <mp/detail/chrono.hpp>
#include <mp/pickle.hpp>

namespace mp {

// Python's keyword arguments of Process(...).
struct ProcessOptions {
  // Empty: "Process-N" (N counts the processes this process created, as Python).
  std::string name{};
  // nullopt: inherit the flag of the current process (Python: daemon=None).
  std::optional<bool> daemon{};
  // A method of mp::get_all_start_methods() ("fork", "spawn", "forkserver"); empty: the
  // default (mp::get_start_method(), set by mp::set_start_method); in a child, the method
  // that started it.
  std::string start_method{};
};

namespace detail {

struct ProcessState;
struct ProcessAccess;

// What a child runs: the callable plus its arguments, erased.
struct Target {
  // Runs the target in this process (a forked child has the parent's memory).
  std::function<void()> call;
  // For spawn: pickles (callable, arguments) and names the typed trampoline that
  // unpickles and calls them in the child. Empty when they cannot be pickled.
  std::function<std::string()> pickle;
  void (*trampoline)(std::string_view) = nullptr;
  // Why the target cannot be pickled (for the error start() throws under spawn).
  const char* unpicklable_reason = nullptr;
  // Run in the parent once the child exists (see release_after_start).
  std::function<void()> after_start;
};

// What a started Process gives up in the parent, per argument, found by ADL:
//   void release_after_start(YourType&, mp::detail::after_start_tag);
// Arguments are otherwise kept until the child has been joined: a forked child's copies
// of shared-heap handles hold no reference of their own, and a spawned child may not
// have unpickled its own yet. A Connection, though, belongs to the child once it is
// started: the parent's copy is closed (<mp/connection.hpp>), as Python users close it
// by hand, so the parent sees EOF when the child's end closes.
struct after_start_tag {};
template <class T>
void release_after_start(T&, after_start_tag) noexcept {}

// The spawned child's entry point for a target of type F with arguments Args.
template <class F, class... Args>
void run_pickled_target(std::string_view payload) {
  auto bound = pickle::loads<std::tuple<F, Args...>>(payload);
  std::apply([](auto& f, auto&... args) { std::invoke(f, args...); }, bound);
}

template <class F, class... Args>
Target make_target(F&& f, Args&&... args) {
  using Bound = std::tuple<std::decay_t<F>, std::decay_t<Args>...>;
  static_assert(std::is_invocable_v<std::decay_t<F>&, std::decay_t<Args>&...>,
                "mp::Process: the target cannot be called with these arguments");
  auto bound = std::make_shared<Bound>(std::forward<F>(f), std::forward<Args>(args)...);
  Target target;
  target.call = [bound] {
    std::apply([](auto& fn, auto&... a) { std::invoke(fn, a...); }, *bound);
  };
  target.after_start = [bound] {
    std::apply([](auto&... parts) { (release_after_start(parts, after_start_tag{}), ...); },
               *bound);
  };
  if constexpr (pickle::picklable<Bound>) {
    target.pickle = [bound] { return pickle::dumps(*bound); };
    target.trampoline = &run_pickled_target<std::decay_t<F>, std::decay_t<Args>...>;
  } else if constexpr (!pickle::picklable<std::decay_t<F>>) {
    target.unpicklable_reason =
        "the target cannot be pickled (a capturing lambda or a callable without serialize()); "
        "pass the captured values as arguments, use a free function or captureless lambda, "
        "or give the function object a serialize() member";
  } else {
    target.unpicklable_reason =
        "an argument of the target cannot be pickled; give its type a serialize() member";
  }
  return target;
}

}  // namespace detail

// A child process: built with a target (or a run() override), started by start(),
// waited for by join(). Move-only; a moved-from Process throws std::logic_error from
// every method. Python: multiprocessing.Process.
class MP_API Process {
 public:
  // A process whose run() does nothing unless a subclass overrides it.
  Process();
  // The same with Python's keyword arguments (name, daemon, start_method).
  explicit Process(ProcessOptions options);

  // A process that calls target(args...) in the child. Arguments are copied
  // (decayed) now, as Python binds args at construction.
  template <class F, class... Args>
  requires(!std::is_same_v<std::decay_t<F>, ProcessOptions> &&
           !std::is_base_of_v<Process, std::decay_t<F>>) explicit Process(F&& target,
                                                                          Args&&... args)
      : Process(ProcessOptions{}, std::forward<F>(target), std::forward<Args>(args)...) {}

  // The same with Python's keyword arguments: Process(target=f, args=(...), name=...).
  template <class F, class... Args>
  Process(ProcessOptions options, F&& target, Args&&... args)
      : Process(std::move(options),
                detail::make_target(std::forward<F>(target), std::forward<Args>(args)...)) {}

  // Takes over the handle of the child; `other` is left moved-from.
  Process(Process&&) noexcept;
  // Takes over the handle of the child; the child this object had stays registered as
  // at destruction (joined, or terminated if daemon, at exit).
  Process& operator=(Process&&) noexcept;
  Process(const Process&) = delete;
  Process& operator=(const Process&) = delete;

  // Does not wait for or kill the child: a running child stays registered and is
  // joined (or, if daemon, terminated) at exit, as in Python.
  virtual ~Process();

  // What the child executes. Default: calls the target. Subclasses may override it
  // (fork start method only: a spawned child cannot rebuild a subclass).
  virtual void run();

  // Starts the child. Throws std::logic_error if already started or if the current
  // process is a daemon; std::invalid_argument if the target cannot be pickled for
  // spawn; std::system_error if the OS refuses. Python: Process.start().
  void start();

  // Waits until the child ends. Throws std::logic_error if not started or not our
  // child. Python: Process.join().
  void join();
  // Waits at most `timeout`; returns true if the child has ended. Python: join(timeout).
  template <class Rep, class Period>
  bool join(std::chrono::duration<Rep, Period> timeout) {
    return join_for(std::chrono::duration_cast<std::chrono::nanoseconds>(timeout));
  }

  // True from the return of start() until the child ends. Never blocks.
  bool is_alive() const;
  // SIGTERM / SIGKILL to the child; nothing if it already ended. Never blocks.
  void terminate();
  // SIGKILL to the child; nothing if it already ended. Never blocks. Python: kill().
  void kill();
  // SIGINT to the child (what Ctrl-C sends); nothing if it already ended. Never blocks.
  // By default the child ends with exitcode() -SIGINT (a Python child raises
  // KeyboardInterrupt, exit code 1); a child may install its own SIGINT handler to shut
  // down in order. A child started with SIGINT ignored (as a shell starts background
  // jobs) inherits that and ignores it. Python: Process.interrupt() (3.14).
  void interrupt();
  // Releases the pidfd. Throws std::invalid_argument while the child runs.
  // Afterwards every other method throws std::invalid_argument. Python: close().
  void close();

  // The child's pid (0 before start()); for current_process(), this process's pid.
  pid_t pid() const;
  // Empty while running or before start; 0 or N after exit(N); 1 after an uncaught
  // exception; -N after signal N. Never blocks (reaps the child if it ended).
  std::optional<int> exitcode() const;
  // The name given in ProcessOptions, else "Process-N" ("MainProcess" for the main
  // process's current_process()). Python: p.name.
  const std::string& name() const;
  // Renames the process; before start(), the child's current_process() gets the name too.
  // Python: p.name = name.
  void set_name(std::string name);
  // Whether the child is a daemon: the flag given, else the current process's.
  // Python: p.daemon.
  bool daemon() const;
  // Throws std::logic_error after start(). Python: p.daemon = flag.
  void set_daemon(bool daemon);
  // A file descriptor that becomes readable when the child ends (a pidfd), owned by
  // this object. Throws std::invalid_argument before start(). Python: sentinel.
  int sentinel() const;
  // The start method this process uses ("fork", "spawn"). For current_process() in a
  // child: the method that started it.
  std::string start_method() const;
  // "<Process name='Process-1' pid=123 parent=100 started daemon>", as Python's repr.
  std::string repr() const;

 private:
  friend Process& current_process();
  friend Process* parent_process();
  friend std::vector<Process> active_children();
  friend struct detail::ProcessAccess;
  Process(ProcessOptions options, detail::Target target);
  explicit Process(std::shared_ptr<detail::ProcessState> state);
  bool join_for(std::chrono::nanoseconds timeout);
  void join_impl(std::optional<std::chrono::nanoseconds> timeout);

  std::shared_ptr<detail::ProcessState> state_;
  std::shared_ptr<detail::Target> target_;
};

// The Process object of the calling process ("MainProcess" in the main process).
// Its name() and pid() are right inside children. Python: current_process().
MP_API Process& current_process();

// The process that started this one, or nullptr in the main process. Its is_alive()
// tells whether the parent still runs. Python: parent_process().
MP_API Process* parent_process();

// The children of this process that are still running (finished ones are reaped as
// a side effect). Python: active_children().
MP_API std::vector<Process> active_children();

// Process::start() with the fork start method in a process that has other threads
// alive says once on stderr that the child may deadlock (a lock another thread held at
// the fork stays locked in the child), as Python 3.12 warns about os.fork(). This turns
// that warning off (or on again); so does the environment variable MP_FORK_WARNING=0.
MP_API void set_fork_warning(bool enabled) noexcept;

}  // namespace mp
