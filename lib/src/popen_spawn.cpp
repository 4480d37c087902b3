// The spawn start method: Python's multiprocessing/popen_spawn_posix.py and spawn.py.
//
// The parent re-executes its own binary with posix_spawn (every other fd closed in
// the child) as `<exe> --mp-spawn 3`, with fd 3 one end of a
// socket pair. Over it the parent sends two length-prefixed frames, with the shared
// heap's memfd between them:
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
// mp::freeze_support() in the child's main() sees the flag and calls spawn_main(),
// which checks that it runs the parent's binary before it resolves the trampoline,
// then runs it with child_main() and exits.
#include <sys/wait.h>
#include <unistd.h>

#include <fcntl.h>
#include <algorithm>
#include <climits>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <mp/detail/code_ref.hpp>
#include <mp/detail/fd_passing.hpp>
#include <mp/errors.hpp>
#include <mp/pickle.hpp>
#include <new>
#include <stdexcept>
#include <string_view>
#include <system_error>
#include <vector>

#include "heap_arena.hpp"
#include "posix/pidfd.hpp"
#include "posix/socket.hpp"
#include "posix/spawn.hpp"
#include "process_state.hpp"

namespace mp::detail {
namespace {

using Trampoline = void (*)(std::string_view);

// The fd number the child finds its bootstrap socket on.
constexpr int kBootstrapFd = 3;
// The byte that carries the shared heap's fd.
constexpr char kHeapTag = 'H';
// The byte that carries each fd passed with the target's arguments.
constexpr char kPassedFdTag = 'F';
// More passed fds than this is a corrupt bootstrap.
constexpr std::uint32_t kMaxPassedFds = 1u << 16;
// A bootstrap larger than this is refused by the child as corrupt.
constexpr std::uint64_t kMaxBootstrap = std::uint64_t{1} << 36;
// A frame is first given this much room, then room grows with what has arrived.
constexpr std::size_t kInitialFrameRoom = std::size_t{64} << 10;

struct SpawnHeader {
  ChildSetup setup;
  std::string body;

  template <class Archive>
  void serialize(Archive& ar) {
    ar(setup, body);
  }
};

// Appends a frame: 8-byte length, then the bytes.
void append_frame(std::string& out, const std::string& frame) {
  const std::uint64_t length = frame.size();
  out.append(reinterpret_cast<const char*>(&length), sizeof length);
  out += frame;
}

// Reads one frame from the bootstrap socket; false (with `error`) on EOF, a bogus
// length, or no memory for the frame. Room grows with what has arrived (at most
// doubling), never with what the length claims: a corrupt length meets the end of the
// stream long before memory runs out, and nothing is zero-filled ahead of the data.
bool read_frame(int fd, std::string& out, std::string& error) noexcept {
  try {
    std::uint64_t length = 0;
    if (posix::read_exact(fd, &length, sizeof length)) {
      error = "no bootstrap from the parent (was this binary started with --mp-spawn by hand?)";
      return false;
    }
    if (length > kMaxBootstrap || length > SIZE_MAX) {
      error = "corrupt bootstrap (frame length " + std::to_string(length) + ")";
      return false;
    }
    const auto total = static_cast<std::size_t>(length);
    out.clear();
    std::size_t got = 0;
    while (got < total) {
      if (got == out.size()) out.resize(std::min(total, std::max(kInitialFrameRoom, 2 * got)));
      std::size_t n = 0;
      if (auto ec = posix::read_some(fd, out.data() + got, out.size() - got, n)) {
        error = "cannot read the bootstrap: " + ec.message();
        return false;
      }
      if (n == 0) {
        error = "truncated bootstrap (a frame of " + std::to_string(total) + " bytes ended after " +
                std::to_string(got) + ")";
        return false;
      }
      got += n;
    }
    return true;
  } catch (const std::bad_alloc&) {
    error = "no memory for the bootstrap";
    return false;
  }
}

[[noreturn]] void die(const std::string& message) noexcept {
  std::string text = "mp: spawned child " + std::to_string(::getpid()) + ": " + message + "\n";
  (void)!::write(STDERR_FILENO, text.data(), text.size());
  ::_exit(1);
}

}  // namespace

std::unique_ptr<Popen> launch_spawn(Process&, const ChildSetup& setup, const Target* target) {
  if (!freeze_support_called())
    throw std::logic_error(
        "mp: the spawn start method re-executes this program, which must call "
        "mp::freeze_support(argc, argv) at the top of main() (it was not called)");
  if (!target)
    throw std::logic_error(
        "mp: a Process subclass that overrides run() can only be started with the fork "
        "start method; pass a target (function and arguments) to use spawn");
  if (!target->trampoline)
    throw std::invalid_argument(
        std::string("mp: cannot start process with spawn: ") +
        (target->unpicklable_reason ? target->unpicklable_reason : "the target cannot be pickled"));

  // Pickle first: a throwing serialize() fails start() before any child exists.
  // Arguments that own an fd register it with `passed_fds` while they are pickled.
  FdCollector passed_fds;
  SpawnHeader header{setup, pickle::dumps(std::tuple<Trampoline, std::string>(target->trampoline,
                                                                              target->pickle()))};
  std::string module_frame, header_frame;
  append_frame(module_frame, pickle::dumps(main_module_id()));
  append_frame(header_frame, pickle::dumps(header));
  const int heap_fd = heap_main_fd();

  posix::unique_fd parent_end, child_end;
  if (auto ec = posix::socket_pair(parent_end, child_end))
    throw std::system_error(ec, "mp: socketpair");

  std::string exe;
  if (auto ec = posix::self_executable(exe))
    throw std::system_error(ec, "mp: readlink /proc/self/exe");
  flush_std_streams();
  pid_t pid = 0;
  if (auto ec = posix::spawn_with_fd(exe, {"--mp-spawn", std::to_string(kBootstrapFd)},
                                     child_end.get(), kBootstrapFd, pid))
    throw std::system_error(ec, "mp: posix_spawn " + exe);
  child_end.reset();

  posix::unique_fd pidfd;
  if (auto open_ec = posix::pidfd_open(pid, pidfd)) {
    ::kill(pid, SIGKILL);
    ::waitpid(pid, nullptr, 0);
    throw std::system_error(open_ec, "mp: pidfd_open");
  }
  auto popen = std::make_unique<Popen>(pid, std::move(pidfd));

  // If the child died before reading (it could not start), writing fails with
  // EPIPE; its exit code tells the story, so the error is not thrown here.
  if (posix::write_all(parent_end.get(), module_frame)) return popen;
  if (posix::send_fd(parent_end.get(), kHeapTag, heap_fd)) return popen;
  const auto fd_count = static_cast<std::uint32_t>(passed_fds.collected().size());
  if (posix::write_all(parent_end.get(),
                       std::string_view(reinterpret_cast<const char*>(&fd_count), sizeof fd_count)))
    return popen;
  for (int passed : passed_fds.collected())
    if (posix::send_fd(parent_end.get(), kPassedFdTag, passed)) return popen;
  (void)posix::write_all(parent_end.get(), header_frame);
  return popen;
}

[[noreturn]] void spawn_main(int fd) noexcept {
  std::string frame, error;
  if (!read_frame(fd, frame, error)) die(error);
  std::string parent_module_id;
  try {
    parent_module_id = pickle::loads<std::string>(frame);
  } catch (const std::exception& e) {
    die(std::string("corrupt bootstrap: ") + e.what());
  }
  if (parent_module_id != main_module_id())
    die("this binary (" + main_module_id() + ") is not the parent's (" + parent_module_id +
        "); was the program rebuilt or replaced while it ran?");
  {
    char tag = 0;
    posix::unique_fd heap_fd;
    if (auto ec = posix::recv_fd(fd, tag, heap_fd); ec || tag != kHeapTag)
      die("corrupt bootstrap: no shared heap fd after the module id");
    try {
      heap_attach_inherited(std::move(heap_fd));
    } catch (const std::exception& e) {
      die(std::string("cannot map the parent's shared heap: ") + e.what());
    }
  }
  {
    std::uint32_t count = 0;
    if (posix::read_exact(fd, &count, sizeof count) || count > kMaxPassedFds)
      die("corrupt bootstrap: no count of passed fds after the heap fd");
    std::vector<int> passed;
    passed.reserve(count);
    for (std::uint32_t i = 0; i < count; ++i) {
      char tag = 0;
      posix::unique_fd received;
      if (auto ec = posix::recv_fd(fd, tag, received); ec || tag != kPassedFdTag)
        die("cannot receive fd #" + std::to_string(i) + " of " + std::to_string(count) +
            " passed with the target's arguments (over the RLIMIT_NOFILE limit?)");
      passed.push_back(received.release());
    }
    set_inherited_fds(std::move(passed));
  }
  if (!read_frame(fd, frame, error)) die(error);
  ::close(fd);
  SpawnHeader header;
  try {
    header = pickle::loads<SpawnHeader>(frame);
  } catch (const std::exception& e) {
    die(std::string("corrupt bootstrap: ") + e.what());
  }

  const int exitcode = child_main(header.setup, [&header] {
    auto [trampoline, payload] = pickle::loads<std::tuple<Trampoline, std::string>>(header.body);
    trampoline(payload);
  });
  // A spawned child is its own program: normal exit runs its own static destructors.
  std::exit(exitcode);
}

}  // namespace mp::detail
