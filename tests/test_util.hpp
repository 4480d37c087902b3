// Helpers shared by mp's tests: start methods to run each test under, temporary
// directories, files as a channel that works with every start method, running a
// command and capturing its output.
#pragma once

#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <mp/context.hpp>
#include <mp/process.hpp>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

extern char** environ;

namespace mp_test {

// Whether this build runs under AddressSanitizer (g++ and clang++ say it differently).
#if defined(__SANITIZE_ADDRESS__)
constexpr bool kAddressSanitizer = true;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
constexpr bool kAddressSanitizer = true;
#else
constexpr bool kAddressSanitizer = false;
#endif
#else
constexpr bool kAddressSanitizer = false;
#endif

// Every test that starts processes runs once per start method, as CPython's suite: every
// method the library has (mp::get_all_start_methods), so a new one is tested at once.
inline const std::vector<std::string>& start_methods() {
  static const std::vector<std::string> methods = mp::get_all_start_methods();
  return methods;
}

// The start methods in turn: the n-th of start_methods(), round and round.
inline const std::string& start_method_in_turn(unsigned n) {
  return start_methods()[n % start_methods().size()];
}

// Names parameterized tests after their start method: ProcessTest.Foo/fork.
inline std::string method_name(const ::testing::TestParamInfo<std::string>& param_info) {
  return param_info.param;
}

// The base of a test that runs once per start method (its parameter): start(f, args...)
// starts a child with that method; join_ok joins it within JoinLimitSeconds and expects
// exit code 0.
template <int JoinLimitSeconds = 60>
class StartMethodTest : public ::testing::TestWithParam<std::string> {
 protected:
  static constexpr std::chrono::seconds kChildJoinLimit{JoinLimitSeconds};

  mp::ProcessOptions options() const { return {.start_method = GetParam()}; }

  template <class F, class... Args>
  mp::Process start(F f, Args... args) {
    mp::Process p(options(), f, args...);
    p.start();
    return p;
  }

  static void join_ok(mp::Process& p) {
    ASSERT_TRUE(p.join(kChildJoinLimit)) << p.repr() << " did not end within the limit";
    EXPECT_EQ(p.exitcode(), 0) << p.repr();
  }
};

// Types that fail on purpose in pickling: saving one throws Error("save refused")
// (loading loads nothing).
template <class Error>
struct ThrowsOnSave {
  template <class Archive>
  void save(Archive&) const {
    throw Error("save refused");
  }
  template <class Archive>
  void load(Archive&) {}
};
// A type with its own save() and load(): `text`, and how many loads made this object.
// Loading one whose text is "refuse" throws Error("load refused").
template <class Error>
struct SplitSaveLoad {
  std::string text;
  int loads_seen = 0;

  template <class Archive>
  void save(Archive& ar) const {
    ar(text);
  }
  template <class Archive>
  void load(Archive& ar) {
    ar(text);
    if (text == "refuse") throw Error("load refused");
    ++loads_seen;
  }
};

// A fresh directory, removed with everything in it at the end of the scope.
class TempDir {
 public:
  TempDir() {
    std::string pattern = (std::filesystem::temp_directory_path() / "mp_test_XXXXXX").string();
    if (!::mkdtemp(pattern.data())) throw std::runtime_error("mkdtemp failed");
    path_ = pattern;
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  std::string file(const std::string& name) const { return (path_ / name).string(); }

 private:
  std::filesystem::path path_;
};

// Open file descriptors of this process (entries of /proc/self/fd, minus the one
// opendir uses).
inline int open_fd_count() {
  DIR* dir = ::opendir("/proc/self/fd");
  if (dir == nullptr) return -1;
  int count = 0;
  while (const dirent* entry = ::readdir(dir))
    if (entry->d_name[0] != '.') ++count;
  ::closedir(dir);
  return count - 1;
}

// The lines of `text`, without their newlines.
inline std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

inline void write_file(const std::string& path, const std::string& text) {
  std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary);
    out << text;
  }
  std::filesystem::rename(tmp, path);  // readers never see half a file
}

inline std::optional<std::string> read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return std::nullopt;
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

// Waits (polling, bounded) until a file written by a child appears. Used only to learn
// a value from a child that keeps running; never to order events.
inline std::optional<std::string> wait_for_file(
    const std::string& path, std::chrono::seconds limit = std::chrono::seconds(30)) {
  auto deadline = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < deadline) {
    if (auto text = read_file(path)) return text;
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  return std::nullopt;
}

// Whether a POSIX shared memory segment of this name (without the leading '/') exists.
inline bool segment_exists(const std::string& name) {
  return std::filesystem::exists("/dev/shm/" + name);
}

// Removes a shared memory segment at the end of a test, whatever happened.
struct SegmentUnlinker {
  std::string name;
  ~SegmentUnlinker() {
    if (!name.empty()) ::shm_unlink(("/" + name).c_str());
  }
};

inline void do_nothing() {}

// How long a child of `method` takes here from start() until it has ended when it does
// nothing: its start-up cost, about a millisecond for a fork and most of a second for a
// spawned child of the sanitizer build. Tests that kill children at random moments widen
// their moments by it, so that the kills land anywhere in a child's life, its work
// included, and not only in its start-up. The second of two children is timed: what a
// method pays once (a fork server's start) is not part of every child's start.
inline std::chrono::microseconds child_lifetime(const std::string& method) {
  std::chrono::microseconds lifetime{0};
  for (int i = 0; i < 2; ++i) {
    const auto begin = std::chrono::steady_clock::now();
    mp::Process child({.start_method = method}, &do_nothing);
    child.start();
    EXPECT_TRUE(child.join(std::chrono::seconds(60)));
    lifetime = std::chrono::duration_cast<std::chrono::microseconds>(
        std::chrono::steady_clock::now() - begin);
  }
  return lifetime;
}

// True if process `pid` (not necessarily our child) ends within `limit`.
inline bool wait_gone(pid_t pid, std::chrono::milliseconds limit) {
  int fd = static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
  if (fd < 0) return errno == ESRCH;
  struct pollfd p = {fd, POLLIN, 0};
  int n = ::poll(&p, 1, static_cast<int>(limit.count()));
  ::close(fd);
  return n == 1;
}

struct CommandResult {
  int exit_status = -1;  // exit code, or -signal
  std::string out;
  std::string err;
};

// A child started with pipes for its stdin, stdout and stderr: our ends of them.
struct SpawnedChild {
  pid_t pid = -1;
  int in = -1;   // writes to its stdin
  int out = -1;  // reads its stdout (at once at its end when it goes to a file)
  int err = -1;  // reads its stderr
};

// Starts argv[0] with the given arguments, its stdin, stdout and stderr pipes to us; its
// stdout goes to `stdout_file` instead when one is named (our end of that pipe then only
// ever reads its end).
inline SpawnedChild spawn_with_pipes(const std::vector<std::string>& argv,
                                     const std::string& stdout_file = "") {
  int in[2], out[2], err[2];
  if (::pipe2(in, O_CLOEXEC) || ::pipe2(out, O_CLOEXEC) || ::pipe2(err, O_CLOEXEC))
    throw std::runtime_error("pipe2 failed");
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, in[0], 0);
  if (stdout_file.empty())
    posix_spawn_file_actions_adddup2(&actions, out[1], 1);
  else
    posix_spawn_file_actions_addopen(&actions, 1, stdout_file.c_str(), O_WRONLY | O_CREAT | O_TRUNC,
                                     0644);
  posix_spawn_file_actions_adddup2(&actions, err[1], 2);
  std::vector<char*> args;
  for (auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  SpawnedChild child;
  const int rc = ::posix_spawn(&child.pid, args[0], &actions, nullptr, args.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  ::close(in[0]);
  ::close(out[1]);
  ::close(err[1]);
  if (rc != 0) {
    for (int fd : {in[1], out[0], err[0]}) ::close(fd);
    throw std::runtime_error("posix_spawn failed for " + argv[0]);
  }
  child.in = in[1];
  child.out = out[0];
  child.err = err[0];
  return child;
}

// Runs argv[0] with the given arguments and stdin text; captures stdout and stderr.
inline CommandResult run_command(const std::vector<std::string>& argv,
                                 const std::string& input = "") {
  const SpawnedChild child = spawn_with_pipes(argv);
  const pid_t pid = child.pid;
  std::thread writer([fd = child.in, input] {
    // A command may exit without reading all of its input (a usage error): the write then
    // fails with EPIPE. The SIGPIPE it raises is directed at this thread, which blocks it
    // (it is discarded when the thread ends) instead of letting it kill the test.
    sigset_t pipe_signal;
    ::sigemptyset(&pipe_signal);
    ::sigaddset(&pipe_signal, SIGPIPE);
    ::pthread_sigmask(SIG_BLOCK, &pipe_signal, nullptr);
    std::size_t done = 0;
    while (done < input.size()) {
      ssize_t n = ::write(fd, input.data() + done, input.size() - done);
      if (n <= 0) break;
      done += static_cast<std::size_t>(n);
    }
    ::close(fd);
  });
  CommandResult result;
  struct pollfd fds[2] = {{child.out, POLLIN, 0}, {child.err, POLLIN, 0}};
  int open_count = 2;
  char buffer[65536];
  while (open_count > 0) {
    if (::poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      break;
    }
    for (int i = 0; i < 2; ++i) {
      if (fds[i].fd < 0 || !(fds[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
      ssize_t n = ::read(fds[i].fd, buffer, sizeof buffer);
      if (n > 0) {
        (i == 0 ? result.out : result.err).append(buffer, static_cast<std::size_t>(n));
      } else {
        ::close(fds[i].fd);
        fds[i].fd = -1;
        --open_count;
      }
    }
  }
  writer.join();
  int status = 0;
  ::waitpid(pid, &status, 0);
  result.exit_status = WIFEXITED(status) ? WEXITSTATUS(status) : -WTERMSIG(status);
  return result;
}

// The two shared memory segments a test program names before it SIGKILLs itself; both
// are unlinked when this goes, whatever the test found.
struct KilledOwner {
  std::string first, second;
  SegmentUnlinker unlink_first, unlink_second;
};

// Runs `program METHOD`, which prints the names of two segments and the pid of a watchdog
// process, then SIGKILLs itself; returns (in `owner`) once the watchdog has ended. Call
// it inside ASSERT_NO_FATAL_FAILURE.
inline void run_killed_owner(const std::string& program, const std::string& method,
                             KilledOwner& owner) {
  const auto result = run_command({program, method});
  ASSERT_EQ(result.exit_status, -SIGKILL) << result.err;
  std::istringstream fields(result.out);
  int watchdog = 0;
  fields >> owner.first >> owner.second >> watchdog;
  ASSERT_FALSE(owner.second.empty()) << result.out;
  owner.unlink_first.name = owner.first;
  owner.unlink_second.name = owner.second;
  ASSERT_GT(watchdog, 0);
  ASSERT_TRUE(wait_gone(watchdog, std::chrono::seconds(30))) << "the watchdog did not end";
}

// Redirects this process's stderr (fd 2, inherited by children) into a memory file
// for the lifetime of the object; text() returns what was written.
class CaptureStderr {
 public:
  CaptureStderr() {
    fflush(stderr);
    file_ = ::memfd_create("mp_test_stderr", MFD_CLOEXEC);
    saved_ = ::dup(2);
    ::dup2(file_, 2);
  }
  ~CaptureStderr() {
    restore();
    ::close(file_);
  }
  CaptureStderr(const CaptureStderr&) = delete;
  CaptureStderr& operator=(const CaptureStderr&) = delete;
  std::string text() {
    restore();
    std::string out;
    char buffer[4096];
    ssize_t n;
    off_t offset = 0;
    while ((n = ::pread(file_, buffer, sizeof buffer, offset)) > 0) {
      out.append(buffer, static_cast<std::size_t>(n));
      offset += n;
    }
    return out;
  }

 private:
  void restore() {
    if (saved_ >= 0) {
      fflush(stderr);
      ::dup2(saved_, 2);
      ::close(saved_);
      saved_ = -1;
    }
  }
  int file_ = -1;
  int saved_ = -1;
};

// first, first + 1, ... up to `last` excluded (or without end): std::views::iota's role
// in the tests, as a plain range, since clang++ 14 cannot instantiate libstdc++ 12's
// views (std::ranges::view_interface).
template <class T>
class IotaIterator {
 public:
  using value_type = T;
  using difference_type = std::ptrdiff_t;
  IotaIterator() = default;
  explicit IotaIterator(T value) : value_(value) {}
  T operator*() const { return value_; }
  IotaIterator& operator++() {
    ++value_;
    return *this;
  }
  IotaIterator operator++(int) {
    IotaIterator before = *this;
    ++value_;
    return before;
  }
  bool operator==(const IotaIterator&) const = default;

 private:
  T value_{};
};
template <class T, class Sentinel>
struct IotaRange {
  IotaIterator<T> first;
  Sentinel last;
  IotaIterator<T> begin() const { return first; }
  Sentinel end() const { return last; }
};
template <class T>
IotaRange<T, IotaIterator<T>> iota(T first, T last) {
  return {IotaIterator<T>(first), IotaIterator<T>(last)};
}
template <class T>
IotaRange<T, std::unreachable_sentinel_t> iota(T first) {
  return {IotaIterator<T>(first), std::unreachable_sentinel};
}

}  // namespace mp_test
