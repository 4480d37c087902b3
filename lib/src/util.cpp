// mp::util::Finalize: a registry of cleanup callbacks per process, run at exit by
// priority (see <mp/util.hpp>).
#include <mp/util.hpp>

#include <pthread.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <mutex>
#include <new>
#include <stdexcept>
#include <utility>
#include <vector>

namespace mp::util {

struct Finalize::Entry {
  std::function<void()> callback;
  std::optional<int> exitpriority;
  std::uint64_t order = 0;
  pid_t pid = 0;
  bool done = false;  // ran, or cancelled
};

namespace {

// Leaked on purpose: used by the atexit handler, after static destructors may have run.
struct Registry {
  std::mutex mutex;
  std::vector<std::shared_ptr<Finalize::Entry>> at_exit;  // those with an exit priority
  std::uint64_t next_order = 0;
  pid_t handler_pid = 0;  // the process whose atexit list has run_at_exit
};

Registry& registry() {
  static Registry* instance = [] {
    auto* made = new Registry;
    // A fork while another thread holds the mutex must not leave the child's locked.
    ::pthread_atfork(nullptr, nullptr, [] { new (&registry().mutex) std::mutex; });
    return made;
  }();
  return *instance;
}

// Marks the entry done and forgets it; false if it was done already or belongs to
// another process. Called with the registry's mutex held.
bool claim(Registry& r, Finalize::Entry& entry) {
  if (entry.done || entry.pid != ::getpid()) return false;
  entry.done = true;
  std::erase_if(r.at_exit, [&](const auto& other) { return other.get() == &entry; });
  return true;
}

void run_reporting(const std::function<void()>& callback) noexcept {
  try {
    callback();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "mp: exception in a finalizer: %s\n", e.what());
  } catch (...) {
    std::fprintf(stderr, "mp: exception in a finalizer (not a std::exception)\n");
  }
}

// The next finalizer to run at exit: highest priority, then made last. Callbacks may
// make or cancel others, so the registry is searched again after each.
void run_at_exit() noexcept {
  Registry& r = registry();
  const pid_t self = ::getpid();
  for (;;) {
    std::shared_ptr<Finalize::Entry> next;
    {
      std::lock_guard lock(r.mutex);
      std::erase_if(r.at_exit, [&](const auto& entry) { return entry->pid != self; });
      const auto best =
          std::max_element(r.at_exit.begin(), r.at_exit.end(), [](const auto& a, const auto& b) {
            return std::pair(*a->exitpriority, a->order) < std::pair(*b->exitpriority, b->order);
          });
      if (best == r.at_exit.end()) return;
      next = *best;
      claim(r, *next);
    }
    run_reporting(next->callback);
  }
}

}  // namespace

// What the handles share: the last one's destruction runs a finalizer without exit
// priority.
struct Finalize::Owner {
  std::shared_ptr<Entry> entry;
  ~Owner() {
    if (entry->exitpriority) return;
    Registry& r = registry();
    {
      std::lock_guard lock(r.mutex);
      if (!claim(r, *entry)) return;
    }
    run_reporting(entry->callback);
  }
};

Finalize::Finalize(std::function<void()> callback, std::optional<int> exitpriority) {
  if (!callback) throw std::invalid_argument("mp::util::Finalize: empty callback");
  auto entry = std::make_shared<Entry>();
  entry->callback = std::move(callback);
  entry->exitpriority = exitpriority;
  entry->pid = ::getpid();
  Registry& r = registry();
  bool register_handler = false;
  {
    std::lock_guard lock(r.mutex);
    entry->order = r.next_order++;
    if (exitpriority) r.at_exit.push_back(entry);
    // A forked child inherits the flag, not a handler that runs in it (its exit skips
    // the parent's atexit handlers): it registers its own.
    if (exitpriority && r.handler_pid != entry->pid) {
      r.handler_pid = entry->pid;
      register_handler = true;
    }
  }
  if (register_handler && std::atexit(run_at_exit) != 0) throw std::bad_alloc();
  owner_ = std::make_shared<Owner>();
  owner_->entry = std::move(entry);
}

bool Finalize::operator()() const {
  Registry& r = registry();
  {
    std::lock_guard lock(r.mutex);
    if (!claim(r, *owner_->entry)) return false;
  }
  owner_->entry->callback();
  return true;
}

void Finalize::cancel() const {
  Registry& r = registry();
  std::lock_guard lock(r.mutex);
  (void)claim(r, *owner_->entry);
}

bool Finalize::still_active() const {
  Registry& r = registry();
  std::lock_guard lock(r.mutex);
  return !owner_->entry->done && owner_->entry->pid == ::getpid();
}

std::optional<int> Finalize::exitpriority() const { return owner_->entry->exitpriority; }

}  // namespace mp::util
