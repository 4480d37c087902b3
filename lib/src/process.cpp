// mp::Process: the part of Python's multiprocessing/process.py that does not know
// how a child is launched (that is popen_fork.cpp / popen_spawn.cpp).
#include <mp/process.hpp>

#include <fcntl.h>
#include <stdio_ext.h>
#include <sys/wait.h>
#include <unistd.h>
#include <ext/stdio_sync_filebuf.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <iostream>
#include <new>
#include <stdexcept>
#include <system_error>
#include <thread>

#include <mp/detail/heap.hpp>
#include <mp/logging.hpp>

#include "exception_text.hpp"
#include "forkserver.hpp"
#include "logging_internal.hpp"
#include "posix/pidfd.hpp"
#include "posix/proc.hpp"
#include "process_state.hpp"

namespace mp {
namespace detail {

namespace {

// The children of the processes this one was forked from: copies that are not ours to
// release (see child_main).
struct InheritedChildren {
  std::vector<std::shared_ptr<ProcessState>> children;
  InheritedChildren* next;
};

// Process-wide bookkeeping. Leaked on purpose: the atexit handler and children that
// outlive static destruction still need it.
struct Globals {
  std::mutex mutex;
  std::shared_ptr<ProcessState> current;
  Process* current_process = nullptr;
  Process* parent_process = nullptr;  // made on first use (see parent_process())
  pid_t parent_pid = 0;               // 0 in the main process
  pid_t real_parent_pid = 0;          // who forked this child: parent_pid, or a fork server
  std::string parent_name;
  std::vector<std::shared_ptr<ProcessState>> children;
  // start() reaps finished children once `children` has grown to this size: twice what
  // the last pass left (at least kCleanupMin), so N starts cost O(N) polls, not O(N^2).
  std::size_t cleanup_at = 0;
  InheritedChildren* inherited = nullptr;
  int counter = 0;
  bool atexit_registered = false;
  bool is_child = false;
};

Globals& globals() {
  static Globals* g = new Globals;
  return *g;
}

std::shared_ptr<ProcessState> make_current_state() {
  auto state = std::make_shared<ProcessState>();
  state->kind = ProcessState::Kind::self;
  state->name = "MainProcess";
  state->daemon = false;
  state->pid = ::getpid();
  return state;
}

ProcessState& current_state() {
  auto& g = globals();
  std::lock_guard lock(g.mutex);
  if (!g.current) g.current = make_current_state();
  return *g.current;
}

std::string identity_name(const std::vector<int>& identity) {
  std::string name = "Process-";
  for (std::size_t i = 0; i < identity.size(); ++i) {
    if (i) name += ':';
    name += std::to_string(identity[i]);
  }
  return name;
}

constexpr std::size_t kCleanupMin = 16;

// Reaps finished children and forgets them. Python: process._cleanup(). With `when_grown`,
// only when the list has grown enough since the last pass (see Globals::cleanup_at).
void cleanup_children(bool when_grown) {
  auto& g = globals();
  std::vector<std::shared_ptr<ProcessState>> finished;
  {
    std::lock_guard lock(g.mutex);
    if (when_grown && g.children.size() < g.cleanup_at) return;
    auto keep = std::stable_partition(g.children.begin(), g.children.end(), [](auto& state) {
      return state->popen && !state->popen->poll().has_value();
    });
    finished.assign(std::make_move_iterator(keep), std::make_move_iterator(g.children.end()));
    g.children.erase(keep, g.children.end());
    g.cleanup_at = std::max(kCleanupMin, 2 * g.children.size());
  }
}

// At normal exit: terminate daemon children, then join every child, as Python's
// util._exit_function does. A non-daemon child that never ends keeps us waiting, as in
// Python; that is the contract of non-daemon processes.
void exit_function() {
  auto& g = globals();
  std::vector<std::shared_ptr<ProcessState>> children;
  {
    std::lock_guard lock(g.mutex);
    children.swap(g.children);
  }
  for (auto& child : children) {
    if (child->popen && child->daemon.value_or(false)) child->popen->send_signal(SIGTERM);
  }
  for (auto& child : children) {
    if (child->popen) child->popen->wait(std::nullopt);
  }
}

// Watches the parent's pidfd from a thread and kills this process when it ends. Used
// for daemon children whose creating thread was not the main thread (see ChildSetup).
void watch_parent(int parent_pidfd) {
  std::thread([parent_pidfd] {
    bool ready = false;
    while (!ready) {
      if (posix::wait_readable(parent_pidfd, std::nullopt, ready)) break;
    }
    ::kill(::getpid(), SIGKILL);
  }).detach();
}

std::atomic<int> g_fork_warning{-1};  // -1: not yet read from MP_FORK_WARNING
std::atomic<bool> g_fork_warned{false};

bool fork_warning_enabled() noexcept {
  int enabled = g_fork_warning.load(std::memory_order_relaxed);
  if (enabled < 0) {
    const char* env = std::getenv("MP_FORK_WARNING");
    enabled = !(env && std::strcmp(env, "0") == 0);
    int expected = -1;
    if (!g_fork_warning.compare_exchange_strong(expected, enabled)) enabled = expected;
  }
  return enabled != 0;
}

// Python 3.12's DeprecationWarning for os.fork() with threads alive, once per process.
void warn_fork_with_threads() {
  if (g_fork_warned.load(std::memory_order_relaxed) || !fork_warning_enabled() ||
      !other_threads_alive() || g_fork_warned.exchange(true))
    return;
  const std::string text =
      "mp: warning: this process (pid=" + std::to_string(::getpid()) +
      ") is multi-threaded; a child started with the fork start method may deadlock on a lock "
      "another thread held at the fork. Use forkserver or spawn, or silence this with "
      "MP_FORK_WARNING=0 or mp::set_fork_warning(false).\n";
  flush_std_streams();
  (void)!::write(STDERR_FILENO, text.data(), text.size());
}

}  // namespace

bool other_threads_alive() noexcept {
  // /proc/self/stat: "pid (comm) state ..." with num_threads the 18th field after comm
  // (field 20 of proc(5)); `at` moves to the blank before it.
  std::string stat;
  if (posix::read_small_file("/proc/self/stat", stat)) return false;
  const auto close = stat.rfind(')');
  if (close == std::string::npos) return false;
  std::size_t at = close + 1;
  for (int field = 0; field < 17 && at != std::string::npos; ++field) at = stat.find(' ', at + 1);
  if (at == std::string::npos) return false;
  return std::atoi(stat.c_str() + at + 1) > 1;
}

void kill_and_reap(pid_t pid) noexcept {
  ::kill(pid, SIGKILL);
  while (::waitpid(pid, nullptr, 0) < 0 && errno == EINTR) {
  }
}

void Popen::adopt(pid_t pid) {
  posix::unique_fd pidfd;
  if (auto ec = posix::pidfd_open(pid, pidfd)) {
    kill_and_reap(pid);
    throw std::system_error(ec, "mp: pidfd_open");
  }
  pid_ = pid;
  pidfd_ = std::move(pidfd);
}

void Popen::adopt_served(pid_t pid, posix::unique_fd pidfd,
                         posix::unique_fd status_channel) noexcept {
  pid_ = pid;
  pidfd_ = std::move(pidfd);
  status_channel_ = std::move(status_channel);
}

std::optional<int> Popen::poll() {
  std::lock_guard lock(mutex_);
  if (!returncode_ && status_channel_) {
    // Not ours to reap: once the pidfd says it ended, its reaper sends the exit code
    // right away. No code (the reaper died) is 255, as an unknown status below.
    bool ended = false;
    if (auto ec = posix::wait_readable(pidfd_.get(), std::chrono::nanoseconds(0), ended))
      throw std::system_error(ec, "mp: poll(pidfd)");
    if (ended) {
      char record[1 + sizeof(std::int32_t)] = {};
      std::int32_t code = 255;
      if (!posix::read_exact(status_channel_.get(), record, sizeof record) && record[0] == 'S')
        std::memcpy(&code, record + 1, sizeof code);
      returncode_ = code;
      status_channel_.reset();
      log_ended();
    }
  } else if (!returncode_) {
    std::optional<int> status;
    if (auto ec = posix::try_reap(pid_, status)) {
      // ECHILD: someone else reaped it (SIGCHLD set to SIG_IGN). The pidfd still says
      // whether it ended; its status is lost.
      if (ec != std::errc::no_child_process) throw std::system_error(ec, "mp: waitpid");
      bool ended = false;
      if (auto wait_ec = posix::wait_readable(pidfd_.get(), std::chrono::nanoseconds(0), ended))
        throw std::system_error(wait_ec, "mp: poll(pidfd)");
      if (ended) status = 255;
    }
    returncode_ = status;
    if (status) log_ended();
  }
  return returncode_;
}

void Popen::log_ended() const {
  if (get_logger().is_enabled_for(LogLevel::debug))
    get_logger().debug("child process " + std::to_string(pid_) +
                       " ended: " + describe_exitcode(returncode_));
}

std::optional<int> Popen::wait(std::optional<std::chrono::nanoseconds> timeout) {
  if (auto code = poll()) return code;
  bool ended = false;
  if (auto ec = posix::wait_readable(pidfd_.get(), timeout, ended))
    throw std::system_error(ec, "mp: waiting for a child");
  if (!ended) return std::nullopt;
  // The pidfd is readable once the child has exited, so this reaps it.
  for (;;) {
    if (auto code = poll()) return code;
    std::this_thread::yield();
  }
}

void Popen::send_signal(int sig) {
  std::lock_guard lock(mutex_);
  if (returncode_) return;  // reaped: never signal what may be another process now
  if (auto ec = posix::pidfd_send_signal(pidfd_.get(), sig))
    throw std::system_error(ec, "mp: sending a signal to a child");
}

namespace {
// Whether std::cout writes straight into stdout's FILE buffer (sync_with_stdio, the
// default). Found in the parent, so a forked child never binds __dynamic_cast.
bool cout_synced_with_stdio() noexcept {
  static const bool synced =
      dynamic_cast<__gnu_cxx::stdio_sync_filebuf<char>*>(std::cout.rdbuf()) != nullptr;
  return synced;
}
}  // namespace

// Flushes stdout and stderr (and the C++ streams when they keep their own buffers), as
// Python's util._flush_std_streams. Only streams that hold output are touched: writing
// a FILE's lock in a forked child copies the page it lives on.
void flush_std_streams() noexcept {
  if (!cout_synced_with_stdio()) {
    try {
      std::cout.flush();
      std::cerr.flush();
      std::clog.flush();
    } catch (...) {
    }
  }
  if (__fpending(stdout) > 0) std::fflush(stdout);
  if (__fpending(stderr) > 0) std::fflush(stderr);
}

// Shows the process's mp name in `ps` and `top`, as Python users get from setproctitle:
// "prog: Process-2" replaces the argument strings (ps -f, /proc/PID/cmdline), and
// becomes the process's comm (top, ps -e) when it fits comm's 15 characters; the name
// alone otherwise ("ForkPoolWorker-3"), so that a producer can be told from a worker.
// Every start method's child goes through here (child_main).
void set_process_title(const std::string& name) noexcept {
  // The program's name from the first argument, taken before any title replaced it;
  // forked children inherit it with the rest of memory.
  static char program[64];
  char* area = nullptr;
  std::size_t size = 0;
  if (posix::argv_area(area, size)) return;
  if (program[0] == '\0') {
    const char* base = std::strrchr(area, '/');
    std::snprintf(program, sizeof program, "%s", base ? base + 1 : area);
  }
  char title[256];
  const int length = std::snprintf(title, sizeof title, "%s: %s", program, name.c_str());
  if (length <= 0) return;
  std::memset(area, 0, size);
  std::memcpy(area, title, std::min(static_cast<std::size_t>(length), size - 1));
  posix::set_thread_name(length <= 15 ? title : name.c_str());
}

int child_main(const ChildSetup& setup, const std::function<void()>& body) noexcept {
  auto& g = globals();
  // A forked child may have inherited this mutex locked by another thread of the
  // parent; the child has one thread, so a fresh mutex is safe.
  new (&g.mutex) std::mutex;
  g.is_child = true;
  // The parent's children are not ours. They are set aside without being destroyed:
  // releasing each shared_ptr would write to, and so copy, a page of the parent's per
  // child, which made starting N processes cost O(N^2) copied pages. (Moving the vector
  // touches none of its elements; the list keeps them reachable for leak checkers.)
  if (!g.children.empty()) {
    try {
      g.inherited = new InheritedChildren{std::move(g.children), g.inherited};
    } catch (const std::bad_alloc&) {
      new (&g.children) std::vector<std::shared_ptr<ProcessState>>;  // forgotten, then
    }
    g.children.clear();
  }
  g.cleanup_at = 0;
  g.counter = 0;
  // The parent's registration of exit_function is the parent's: a child that starts
  // children registers its own (see launch_fork for which handlers a forked child runs).
  g.atexit_registered = false;
  set_default_method_in_child(setup.start_method);
  // A child of the fork server has the server as its real parent: it dies with the
  // server's only thread, and the server ends (killing its daemon children) when the
  // logical parent has gone. Read before forgetting: a child forked from this one later
  // must not believe it too.
  const pid_t real_parent = forkserver_real_parent() ? forkserver_real_parent() : setup.parent_pid;
  g.real_parent_pid = real_parent;
  forkserver_forget_in_child();
  if (!g.current) g.current = make_current_state();
  {
    auto& self = *g.current;
    new (&self.mutex) std::mutex;
    self.kind = ProcessState::Kind::self;
    self.name = setup.name;
    self.identity = setup.identity;
    self.daemon = setup.daemon;
    self.start_method = setup.start_method;
    self.pid = ::getpid();
    self.popen.reset();
  }
  set_process_title(setup.name);
  set_log_process_name(setup.name);
  // parent_process() builds its handle on first use: a forked child that never asks
  // touches (and so copies) fewer of its parent's pages.
  g.parent_process = nullptr;
  g.parent_pid = setup.parent_pid;
  g.parent_name = setup.parent_name;

  // Raw system calls from here to the target: a libc function a forked child calls
  // first would be bound lazily in every child (a symbol lookup and a copied page).
  if (setup.daemon) {
    if (setup.parent_death_by_signal || real_parent != setup.parent_pid) {
      (void)posix::set_parent_death_signal(SIGKILL);
    } else {
      posix::unique_fd parent_pidfd;
      if (!posix::pidfd_open(setup.parent_pid, parent_pidfd) &&
          posix::parent_pid() == setup.parent_pid)
        watch_parent(parent_pidfd.release());
    }
    // The parent may have died before the line above took effect.
    if (posix::parent_pid() != real_parent) posix::exit_now(1);
  }
  // Python gives children /dev/null as stdin so they never steal the parent's input.
  posix::stdin_from_devnull(posix::devnull());

  int exitcode = 0;
  Logger& logger = get_logger();
  logger.info("child process calling run()");
  try {
    body();
  } catch (...) {
    // Python prints "Process Process-1:" and the traceback, and exits with 1.
    const ExceptionText error = describe_current_exception();
    flush_std_streams();
    std::string text = "Process " + setup.name + ":\n" + error.line() + "\n";
    if (const std::string traceback = current_throw_traceback(); !traceback.empty())
      text += "Traceback (most recent call first):\n" + traceback;
    (void)!::write(STDERR_FILENO, text.data(), text.size());
    exitcode = 1;
  }
  flush_std_streams();
  try {
    exit_function();
  } catch (...) {
  }
  if (logger.is_enabled_for(LogLevel::info))
    logger.info("process exiting with exitcode " + std::to_string(exitcode));
  return exitcode;
}

}  // namespace detail

using detail::globals;
using detail::ProcessState;

Process::Process() : Process(ProcessOptions{}) {}

Process::Process(ProcessOptions options) : Process(std::move(options), detail::Target{}) {
  target_.reset();
}

Process::Process(ProcessOptions options, detail::Target target)
    : state_(std::make_shared<ProcessState>()),
      target_(std::make_shared<detail::Target>(std::move(target))) {
  auto& g = globals();
  std::vector<int> identity;
  {
    std::lock_guard lock(g.mutex);
    if (g.current) identity = g.current->identity;
    identity.push_back(++g.counter);
  }
  state_->kind = ProcessState::Kind::child;
  state_->identity = std::move(identity);
  state_->name = options.name.empty() ? detail::identity_name(state_->identity) : options.name;
  state_->daemon = options.daemon;
  state_->start_method = std::move(options.start_method);
  state_->creator_pid = ::getpid();
}

Process::Process(std::shared_ptr<ProcessState> state) : state_(std::move(state)) {}

Process::Process(Process&&) noexcept = default;
Process& Process::operator=(Process&&) noexcept = default;
Process::~Process() = default;

namespace {
ProcessState& checked(const std::shared_ptr<ProcessState>& state) {
  if (!state) throw std::logic_error("mp::Process: use of a moved-from Process");
  if (state->closed) throw std::invalid_argument("mp::Process: process object is closed");
  return *state;
}
}  // namespace

void Process::run() {
  if (target_ && target_->call) target_->call();
}

void Process::start() {
  auto& state = checked(state_);
  // Every child must map the shared heap: a forked child inherits the mapping, a
  // spawned one receives the arena's fd. Objects created later live in it too.
  detail::heap_ensure();
  auto& self = detail::current_state();
  {
    std::lock_guard lock(state.mutex);
    if (state.kind != ProcessState::Kind::child || state.popen)
      throw std::logic_error("mp::Process::start: cannot start a process twice");
    if (state.creator_pid != ::getpid())
      throw std::logic_error(
          "mp::Process::start: can only start a process object created by the current process");
  }
  if (self.daemon.value_or(false))
    throw std::logic_error(
        "mp::Process::start: daemonic processes are not allowed to have children");
  detail::cleanup_children(true);

  const std::string method = detail::resolve_start_method(state.start_method);
  detail::ChildSetup& setup = state.setup;  // lives on: no free after fork
  {
    std::lock_guard lock(state.mutex);
    if (!state.daemon) state.daemon = self.daemon.value_or(false);
    setup.name = state.name;
    setup.identity = state.identity;
    setup.daemon = *state.daemon;
  }
  setup.parent_pid = ::getpid();
  setup.parent_name = self.name;
  setup.start_method = method;
  setup.parent_death_by_signal = ::gettid() == ::getpid();

  auto& g = globals();
  {
    // Allocate before the child exists: after fork every page the parent writes to
    // is copied while the child lives.
    std::lock_guard glock(g.mutex);
    // (Doubling: reserving one more each time would reallocate at every start.)
    if (g.children.size() == g.children.capacity())
      g.children.reserve(std::max<std::size_t>(8, 2 * g.children.size()));
  }
  if (method == "fork") detail::warn_fork_with_threads();
  auto popen = detail::launcher_for(method)(*this, setup, target_.get());

  {
    std::lock_guard glock(g.mutex);
    {
      std::lock_guard lock(state.mutex);
      state.start_method = method;
      state.popen = std::move(popen);
    }
    g.children.push_back(state_);
    if (!g.atexit_registered) {
      g.atexit_registered = true;
      std::atexit(detail::exit_function);
    }
  }
  if (target_ && target_->after_start) target_->after_start();
}

void Process::join() { join_impl(std::nullopt); }

bool Process::join_for(std::chrono::nanoseconds timeout) {
  join_impl(timeout);
  return exitcode().has_value();
}

void Process::join_impl(std::optional<std::chrono::nanoseconds> timeout) {
  auto& state = checked(state_);
  if (state.kind == ProcessState::Kind::parent) {
    // Python's _ParentProcess.join waits on the parent's sentinel.
    if (state.parent_pidfd) {
      bool ended = false;
      if (auto ec = posix::wait_readable(state.parent_pidfd.get(), timeout, ended))
        throw std::system_error(ec, "mp::Process::join");
    }
    return;
  }
  if (state.kind == ProcessState::Kind::self)
    throw std::logic_error("mp::Process::join: a process cannot join itself");
  if (state.creator_pid != ::getpid())
    throw std::logic_error("mp::Process::join: can only join a child process");
  if (!state.popen) throw std::logic_error("mp::Process::join: can only join a started process");
  if (state.popen->wait(timeout)) {
    target_.reset();  // the child has ended: its arguments can go
    auto& g = globals();
    std::lock_guard lock(g.mutex);
    std::erase(g.children, state_);
  }
}

bool Process::is_alive() const {
  auto& state = checked(state_);
  switch (state.kind) {
    case ProcessState::Kind::self:
      return true;
    case ProcessState::Kind::parent: {
      if (!state.parent_pidfd) return false;
      bool ended = false;
      (void)posix::wait_readable(state.parent_pidfd.get(), std::chrono::nanoseconds(0), ended);
      return !ended;
    }
    case ProcessState::Kind::child:
      if (state.creator_pid != ::getpid())
        throw std::logic_error("mp::Process::is_alive: can only test a child process");
      return state.popen && !state.popen->poll().has_value();
  }
  return false;
}

void Process::terminate() {
  auto& state = checked(state_);
  if (state.popen) state.popen->send_signal(SIGTERM);
}

void Process::interrupt() {
  auto& state = checked(state_);
  if (state.popen) state.popen->send_signal(SIGINT);
}

void Process::kill() {
  auto& state = checked(state_);
  if (state.popen) state.popen->send_signal(SIGKILL);
}

void Process::close() {
  if (!state_) throw std::logic_error("mp::Process: use of a moved-from Process");
  auto& state = *state_;
  if (state.closed) return;
  if (state.popen) {
    if (!state.popen->poll())
      throw std::invalid_argument(
          "mp::Process::close: cannot close a process while it is still running; call join() "
          "or terminate() first");
    auto& g = globals();
    std::lock_guard lock(g.mutex);
    std::erase(g.children, state_);
  }
  std::lock_guard lock(state.mutex);
  state.popen.reset();
  target_.reset();
  state.closed = true;
}

pid_t Process::pid() const {
  auto& state = checked(state_);
  if (state.kind != ProcessState::Kind::child) return state.pid;
  return state.popen ? state.popen->pid() : 0;
}

std::optional<int> Process::exitcode() const {
  auto& state = checked(state_);
  if (state.kind != ProcessState::Kind::child || !state.popen) return std::nullopt;
  return state.popen->poll();
}

const std::string& Process::name() const { return checked(state_).name; }

void Process::set_name(std::string name) { checked(state_).name = std::move(name); }

bool Process::daemon() const {
  auto& state = checked(state_);
  if (state.daemon) return *state.daemon;
  return detail::current_state().daemon.value_or(false);
}

void Process::set_daemon(bool daemon) {
  auto& state = checked(state_);
  if (state.popen) throw std::logic_error("mp::Process::set_daemon: process has already started");
  state.daemon = daemon;
}

int Process::sentinel() const {
  auto& state = checked(state_);
  if (state.kind == ProcessState::Kind::parent && state.parent_pidfd)
    return state.parent_pidfd.get();
  if (!state.popen) throw std::invalid_argument("mp::Process::sentinel: process not started");
  return state.popen->sentinel();
}

std::string Process::start_method() const {
  auto& state = checked(state_);
  if (state.popen) return state.start_method;
  return detail::resolve_start_method(state.start_method);
}

std::string Process::repr() const {
  if (!state_) return "<Process moved-from>";
  auto& state = *state_;
  std::string out = "<Process name='" + state.name + "'";
  if (state.closed) return out + " closed>";
  if (state.kind == ProcessState::Kind::child) {
    if (!state.popen) {
      out += " initial";
    } else {
      out += " pid=" + std::to_string(state.popen->pid()) +
             " parent=" + std::to_string(state.creator_pid);
      auto code = state.popen->poll();
      out += code ? " stopped exitcode=" + std::to_string(*code) : std::string(" started");
    }
  } else {
    out += " pid=" + std::to_string(state.pid) +
           (state.kind == ProcessState::Kind::self ? " started" : " parent");
  }
  if (state.daemon.value_or(false)) out += " daemon";
  return out + ">";
}

void set_fork_warning(bool enabled) noexcept { detail::g_fork_warning = enabled ? 1 : 0; }

Process& current_process() {
  auto& g = globals();
  detail::current_state();
  std::lock_guard lock(g.mutex);
  if (!g.current_process) g.current_process = new Process(g.current);
  return *g.current_process;
}

Process* parent_process() {
  auto& g = globals();
  std::lock_guard lock(g.mutex);
  if (!g.parent_process && g.parent_pid != 0) {
    auto parent = std::make_shared<ProcessState>();
    parent->kind = ProcessState::Kind::parent;
    parent->name = g.parent_name;
    parent->daemon = false;
    parent->pid = g.parent_pid;
    (void)posix::pidfd_open(g.parent_pid, parent->parent_pidfd);
    // If the parent already died, its pid may belong to another process now: then
    // there is no pidfd, and is_alive() says false.
    // (A child of the fork server asks the server: it outlives the parent by moments.)
    if (::getppid() != g.real_parent_pid) parent->parent_pidfd.reset();
    g.parent_process = new Process(detail::ProcessAccess::make(std::move(parent)));
  }
  return g.parent_process;
}

std::vector<Process> active_children() {
  detail::cleanup_children(false);
  auto& g = globals();
  std::lock_guard lock(g.mutex);
  std::vector<Process> out;
  out.reserve(g.children.size());
  for (auto& state : g.children) out.push_back(Process(state));
  return out;
}

}  // namespace mp
