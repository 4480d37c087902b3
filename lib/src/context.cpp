// Start methods and module functions: Python's multiprocessing/context.py. The list of
// start methods lives in start_methods.def; this file turns it into the table that every
// other part of mp (and every test, example and tool) asks.
#include <mp/context.hpp>

#include <sched.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <mutex>
#include <new>
#include <sstream>
#include <stdexcept>

#include "forkserver.hpp"
#include "posix/fd.hpp"
#include "process_state.hpp"
#include "spawn_bootstrap.hpp"

namespace mp {
namespace detail {
namespace {

struct MethodEntry {
  const char* name;
  const char* title;  // "Fork": pool workers are named ForkPoolWorker-N
  Launcher launch;
};
// Default first.
constexpr MethodEntry kMethods[] = {
#define MP_START_METHOD(name, title) {#name, #title, &launch_##name},
#include "start_methods.def"
#undef MP_START_METHOD
};

std::mutex g_method_mutex;
std::optional<std::string> g_default_method;
std::atomic<bool> g_freeze_support_called{false};

const MethodEntry* find_method(std::string_view name) {
  for (const auto& entry : kMethods)
    if (name == entry.name) return &entry;
  return nullptr;
}

std::string known_methods() {
  std::string out;
  for (const auto& entry : kMethods) {
    if (!out.empty()) out += ", ";
    out += entry.name;
  }
  return out;
}

void check_method(std::string_view name) {
  if (!find_method(name))
    throw std::invalid_argument("mp: cannot find context for '" + std::string(name) +
                                "' (start methods: " + known_methods() + ")");
}

}  // namespace

std::string resolve_start_method(const std::string& requested) {
  if (!requested.empty()) {
    check_method(requested);
    return requested;
  }
  std::lock_guard lock(g_method_mutex);
  // Python fixes the default on first use; so do we.
  if (!g_default_method) g_default_method = kMethods[0].name;
  return *g_default_method;
}

Launcher launcher_for(const std::string& method) {
  const MethodEntry* entry = find_method(method);
  if (!entry) check_method(method);
  return entry->launch;
}

std::string pool_worker_name(std::string_view method, int number) {
  const MethodEntry* entry = find_method(method);
  if (!entry) check_method(method);
  return std::string(entry->title) + "PoolWorker-" + std::to_string(number);
}

std::string pool_worker_start_method(const std::string& requested) {
  std::string method = resolve_start_method(requested);
  if (method == "fork" && freeze_support_called() && other_threads_alive()) method = "forkserver";
  return method;
}

bool freeze_support_called() noexcept { return g_freeze_support_called.load(); }

void set_default_method_in_child(const std::string& method) noexcept {
  new (&g_method_mutex) std::mutex;
  try {
    g_default_method = method;  // a method's name: no allocation (a short string)
  } catch (...) {
  }
}

}  // namespace detail

void freeze_support(int argc, char** argv) {
  detail::g_freeze_support_called = true;
  detail::spawn_main_if_requested(argc, argv);
  detail::forkserver_main_if_requested(argc, argv);
}

void set_forkserver_preload(std::vector<void (*)()> functions) {
  detail::forkserver_set_preload(std::move(functions));
}

Context get_context(std::optional<std::string_view> method) {
  if (!method || method->empty()) return Context(detail::resolve_start_method(""));
  detail::check_method(*method);
  return Context(std::string(*method));
}

void set_start_method(std::string_view method, bool force) {
  detail::check_method(method);
  std::lock_guard lock(detail::g_method_mutex);
  if (detail::g_default_method && !force)
    throw std::logic_error("mp::set_start_method: context has already been set");
  detail::g_default_method = std::string(method);
}

std::optional<std::string> get_start_method(bool allow_none) {
  {
    std::lock_guard lock(detail::g_method_mutex);
    if (detail::g_default_method || allow_none) return detail::g_default_method;
  }
  return detail::resolve_start_method("");
}

std::vector<std::string> get_all_start_methods() {
  std::vector<std::string> out;
  for (const auto& entry : detail::kMethods) out.emplace_back(entry.name);
  return out;
}

int cpu_count() {
  int count = 0;
  cpu_set_t set;
  if (::sched_getaffinity(0, sizeof(set), &set) == 0) count = CPU_COUNT(&set);
  if (count <= 0) count = static_cast<int>(::sysconf(_SC_NPROCESSORS_ONLN));
  // cgroup v2: "max 100000" or "<quota> <period>" (Python ignores this; gh-80235).
  std::string cpu_max_text;
  if (posix::read_small_file("/sys/fs/cgroup/cpu.max", cpu_max_text)) cpu_max_text.clear();
  std::istringstream cpu_max(cpu_max_text);
  std::string quota;
  long long period = 0;
  if (cpu_max >> quota >> period && quota != "max" && period > 0) {
    try {
      long long q = std::stoll(quota);
      int limit = static_cast<int>(std::ceil(static_cast<double>(q) / static_cast<double>(period)));
      if (limit > 0) count = std::min(count, limit);
    } catch (const std::exception&) {
    }
  }
  return std::max(count, 1);
}

}  // namespace mp
