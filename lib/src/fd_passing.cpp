// Fds passed to a spawned child with its target's arguments; see
// <mp/detail/fd_passing.hpp>. Python: multiprocessing.reduction.DupFd.
#include <mp/detail/fd_passing.hpp>

#include <unistd.h>

#include <mutex>
#include <string>

#include <mp/errors.hpp>

namespace mp::detail {
namespace {

// The collector of the pickling in progress on this thread (the spawn launcher's).
thread_local FdCollector* active_collector = nullptr;

// In a spawned child: the fds received from the parent, -1 once taken.
std::mutex inherited_mutex;
std::vector<int> inherited;

void close_all(std::vector<int>& fds) noexcept {
  for (int fd : fds)
    if (fd >= 0) ::close(fd);
  fds.clear();
}

}  // namespace

FdCollector::FdCollector() noexcept : previous_(active_collector) { active_collector = this; }

FdCollector::~FdCollector() { active_collector = previous_; }

std::span<const int> FdCollector::collected() const noexcept { return fds_; }

std::uint32_t register_fd_for_child(int fd, const char* what) {
  if (active_collector == nullptr)
    throw PicklingError(std::string("mp: ") + what +
                        " can only be passed as a Process argument (its file descriptor "
                        "travels with the arguments of a child being started), not pickled "
                        "into a message");
  auto& fds = active_collector->fds_;
  fds.push_back(fd);
  return static_cast<std::uint32_t>(fds.size() - 1);
}

void set_inherited_fds(std::vector<int> fds) noexcept {
  std::lock_guard lock(inherited_mutex);
  close_all(inherited);
  inherited = std::move(fds);
}

int take_inherited_fd(std::uint32_t index) {
  std::lock_guard lock(inherited_mutex);
  if (index >= inherited.size() || inherited[index] < 0)
    throw UnpicklingError("mp: file descriptor #" + std::to_string(index) +
                          " was not passed to this process (or was taken already); an object "
                          "holding an fd can only be unpickled in the child it was passed to");
  const int fd = inherited[index];
  inherited[index] = -1;
  return fd;
}

void close_inherited_fds() noexcept {
  std::lock_guard lock(inherited_mutex);
  close_all(inherited);
}

}  // namespace mp::detail
