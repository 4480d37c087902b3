// SharedMemoryManager: the segments its factories made, unlinked at shutdown by the
// process that made the manager.
#include <mp/shared_memory_manager.hpp>

#include <unistd.h>

#include <stdexcept>
#include <system_error>

#include <mp/errors.hpp>

namespace mp {

SharedMemoryManager::~SharedMemoryManager() { shutdown(); }

void SharedMemoryManager::start() {
  std::scoped_lock guard(mutex_);
  if (state_ == State::started)
    throw ProcessError("mp::SharedMemoryManager::start: already started");
  if (state_ == State::shutdown)
    throw ProcessError("mp::SharedMemoryManager::start: the manager has shut down");
  state_ = State::started;
  owner_ = ::getpid();
}

void SharedMemoryManager::shutdown() noexcept {
  std::scoped_lock guard(mutex_);
  if (state_ != State::started || owner_ != ::getpid()) return;
  state_ = State::shutdown;
  for (const auto& shm : segments_) {
    try {
      shm.unlink();
    } catch (const std::system_error&) {
      // Unlinked already (by a user, in any process).
    }
  }
  segments_.clear();
}

bool SharedMemoryManager::running() const {
  std::scoped_lock guard(mutex_);
  return state_ == State::started;
}

std::vector<std::string> SharedMemoryManager::segment_names() const {
  std::scoped_lock guard(mutex_);
  std::vector<std::string> names;
  for (const auto& shm : segments_) names.push_back(shm.name());
  return names;
}

void SharedMemoryManager::check_running(const char* what) const {
  if (state_ != State::started)
    throw std::logic_error(std::string("mp::SharedMemoryManager::") + what +
                           (state_ == State::initial ? ": the manager is not started"
                                                     : ": the manager has shut down"));
  if (owner_ != ::getpid())
    throw std::logic_error(std::string("mp::SharedMemoryManager::") + what +
                           ": only the process that started the manager may use it");
}

mp::SharedMemory SharedMemoryManager::SharedMemory(std::size_t size) {
  std::scoped_lock guard(mutex_);
  check_running("SharedMemory");
  mp::SharedMemory shm(create_only, size);
  segments_.push_back(shm);
  return shm;
}

mp::ShareableList SharedMemoryManager::ShareableList(std::vector<ShareableItem> values,
                                                     ShareableListOptions options) {
  std::scoped_lock guard(mutex_);
  check_running("ShareableList");
  options.memory.persist = false;
  mp::ShareableList list(create_only, std::move(values), std::move(options));
  segments_.push_back(list.shm());
  return list;
}

}  // namespace mp
