// The spawn bootstrap, both sides: see spawn_bootstrap.hpp for the protocol.
#include "spawn_bootstrap.hpp"

#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <new>
#include <stdexcept>
#include <string_view>
#include <tuple>

#include <mp/detail/code_ref.hpp>
#include <mp/detail/fd_passing.hpp>
#include <mp/errors.hpp>
#include <mp/pickle.hpp>

#include "heap_arena.hpp"
#include "posix/socket.hpp"

namespace mp::detail {
namespace {

using Trampoline = void (*)(std::string_view);

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

// A frame: 8-byte length, then the bytes.
std::string framed(const std::string& bytes) {
  const std::uint64_t length = bytes.size();
  std::string out(reinterpret_cast<const char*>(&length), sizeof length);
  out += bytes;
  return out;
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

// Receives the heap's fd and maps the parent's arena; dies on failure.
void receive_heap(int fd, bool heap_inherited) noexcept {
  char tag = 0;
  posix::unique_fd heap_fd;
  if (auto ec = posix::recv_fd(fd, tag, heap_fd); ec || tag != kHeapTag)
    die("corrupt bootstrap: no shared heap fd after the module id");
  if (heap_inherited) return;
  try {
    heap_attach_inherited(std::move(heap_fd));
  } catch (const std::exception& e) {
    die(std::string("cannot map the parent's shared heap: ") + e.what());
  }
}

// Receives the fds passed with the target's arguments; dies on failure.
void receive_passed_fds(int fd) noexcept {
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

}  // namespace

SpawnBootstrap::SpawnBootstrap(const ChildSetup& setup, const Target* target) {
  const std::string& method = setup.start_method;
  if (!freeze_support_called())
    throw std::logic_error("mp: the " + method +
                           " start method re-executes this program, which must call "
                           "mp::freeze_support(argc, argv) at the top of main() (it was not "
                           "called)");
  if (!target)
    throw std::logic_error(
        "mp: a Process subclass that overrides run() can only be started with the fork "
        "start method; pass a target (function and arguments) to use " +
        method);
  if (!target->trampoline)
    throw std::invalid_argument(
        "mp: cannot start process with " + method + ": " +
        (target->unpicklable_reason ? target->unpicklable_reason : "the target cannot be pickled"));
  // Arguments that own an fd register it with `collector` while they are pickled.
  FdCollector collector;
  SpawnHeader header{setup, pickle::dumps(std::tuple<Trampoline, std::string>(target->trampoline,
                                                                              target->pickle()))};
  passed_fds_.assign(collector.collected().begin(), collector.collected().end());
  module_frame_ = framed(pickle::dumps(main_module_id()));
  header_frame_ = framed(pickle::dumps(header));
  heap_fd_ = heap_main_fd();
}

std::error_code SpawnBootstrap::send(int fd) const noexcept {
  if (auto ec = posix::write_all(fd, module_frame_)) return ec;
  if (auto ec = posix::send_fd(fd, kHeapTag, heap_fd_)) return ec;
  const auto fd_count = static_cast<std::uint32_t>(passed_fds_.size());
  if (auto ec = posix::write_all(
          fd, std::string_view(reinterpret_cast<const char*>(&fd_count), sizeof fd_count)))
    return ec;
  for (int passed : passed_fds_)
    if (auto ec = posix::send_fd(fd, kPassedFdTag, passed)) return ec;
  return posix::write_all(fd, header_frame_);
}

[[noreturn]] void spawn_main(int fd, bool heap_inherited) noexcept {
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
  receive_heap(fd, heap_inherited);
  receive_passed_fds(fd);
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

bool fd_argument(int argc, char** argv, const char* flag, int& fd) noexcept {
  if (argc < 3 || !argv || !argv[1] || !argv[2] || std::strcmp(argv[1], flag) != 0) return false;
  // Digits only: no sign, no blanks, nothing after them, and an int.
  const std::string_view text = argv[2];
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), fd);
  return ec == std::errc() && end == text.data() + text.size() && !text.empty() && text[0] != '-';
}

void spawn_main_if_requested(int argc, char** argv) noexcept {
  int fd = -1;
  if (fd_argument(argc, argv, kSpawnFlag, fd)) spawn_main(fd);
}

}  // namespace mp::detail
