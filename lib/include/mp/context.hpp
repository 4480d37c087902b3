// Start methods, contexts and module-level functions.
// Mirrors Python's `multiprocessing.context` (get_context, set_start_method,
// get_start_method, get_all_start_methods, cpu_count, freeze_support).
//
// Differences from Python, on purpose:
//   - freeze_support(argc, argv) is required (not only on Windows) for the spawn start
//     method: it is how a re-executed binary becomes the child. Without it, starting a
//     spawn process throws std::logic_error instead of re-running main() recursively.
//   - cpu_count() honours CPU affinity and a cgroup v2 CPU quota (Python's cpu_count
//     reports the host; process_cpu_count (3.13) only honours affinity).
//   - Starting a process through a context (or with ProcessOptions::start_method) never
//     fixes the default start method: Python's spawn context fixes it as a side effect,
//     against its own advice that libraries use contexts to leave the default alone.
#pragma once

#include <mp/detail/export.hpp>

#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include <mp/process.hpp>

namespace mp {

struct PoolOptions;
class Pool;
struct ProcessPoolExecutorOptions;
class ProcessPoolExecutor;
struct ManagerOptions;
class Manager;

// Call first thing in main(). In a child started with the spawn method it runs the
// child's target and exits (never returns); otherwise it only records that the
// program supports spawn. In the fork server (the forkserver start method) it serves and
// never returns either. Python: freeze_support() plus the `__main__` guard.
MP_API void freeze_support(int argc, char** argv);

// Functions the fork server runs once when it starts, before it forks any child, so
// that every forkserver child inherits what they set up (Python preloads modules). They
// run in the server, which must stay single-threaded: they must not start threads.
// Takes effect for the next server started (the first use of forkserver). Throws
// std::invalid_argument for a null function or one outside the program's code.
MP_API void set_forkserver_preload(std::vector<void (*)()> functions);
// The same with the functions as arguments: set_forkserver_preload(setup_a, setup_b).
// Python: multiprocessing.set_forkserver_preload(module_names). Throws as above.
template <class... F>
requires(sizeof...(F) > 0 && (std::is_convertible_v<F, void (*)()> &&
                              ...)) void set_forkserver_preload(F... functions) {
  set_forkserver_preload(std::vector<void (*)()>{static_cast<void (*)()>(functions)...});
}

// A start method bound as an object, so code can say which method it uses without
// changing the global default. Python: multiprocessing.get_context(method).
class MP_API Context {
 public:
  // The method this context starts processes with: "fork", "spawn" or "forkserver".
  const std::string& get_start_method() const noexcept { return method_; }

  // A Process using this context's start method. Python: ctx.Process(target, args).
  template <class F, class... Args>
  mp::Process process(F&& target, Args&&... args) const {
    return mp::Process(ProcessOptions{.start_method = method_}, std::forward<F>(target),
                       std::forward<Args>(args)...);
  }
  // The same with Python's other keyword arguments (name, daemon); options.start_method
  // is replaced by this context's. Python: ctx.Process(target=f, args=..., name=...).
  template <class F, class... Args>
  mp::Process process(ProcessOptions options, F&& target, Args&&... args) const {
    options.start_method = method_;
    return mp::Process(std::move(options), std::forward<F>(target), std::forward<Args>(args)...);
  }

  // The factories below return objects whose processes start with this context's
  // method; include their headers (<mp/pool.hpp>, <mp/futures.hpp>, <mp/managers.hpp>,
  // or <mp/mp.hpp>) to call them. Python: ctx.Pool(...), ProcessPoolExecutor(
  // mp_context=ctx), ctx.Manager().

  // A Pool whose workers start with this context's method.
  template <class P = mp::Pool, class Options = mp::PoolOptions>
  P pool(Options options = {}) const {
    options.start_method = method_;
    return P(std::move(options));
  }
  // A ProcessPoolExecutor whose workers start with this context's method.
  template <class E = mp::ProcessPoolExecutor, class Options = mp::ProcessPoolExecutorOptions>
  E executor(Options options = {}) const {
    options.start_method = method_;
    return E(std::move(options));
  }
  // A Manager. mp's managers keep their objects in shared memory, not in a server
  // process, so the start method changes nothing: present so that code written for a
  // context needs no special case.
  template <class M = mp::Manager, class Options = mp::ManagerOptions>
  M manager(Options options = {}) const {
    return M(std::move(options));
  }

 private:
  friend Context get_context(std::optional<std::string_view> method);
  explicit Context(std::string method) : method_(std::move(method)) {}
  std::string method_;
};

// The context of `method`, or of the default method when empty.
// Throws std::invalid_argument for an unknown method.
MP_API Context get_context(std::optional<std::string_view> method = std::nullopt);

// Sets the default start method. Throws std::logic_error if it was already set and
// `force` is false (Python: RuntimeError); std::invalid_argument if unknown.
MP_API void set_start_method(std::string_view method, bool force = false);

// The default start method; with allow_none, nullopt if none was set yet (Python
// then fixes the default on first use, and so does mp). In a child it starts as the
// method that started the child (a context's too), so the child's own children start
// the same way, as Python's Process._bootstrap forces it.
MP_API std::optional<std::string> get_start_method(bool allow_none = false);

// {"fork", "spawn", "forkserver"}: the methods this platform supports, default first.
MP_API std::vector<std::string> get_all_start_methods();

// CPUs this process may run on: the affinity mask, further limited by a cgroup v2
// quota (cpu.max) when one is set. At least 1.
MP_API int cpu_count();

}  // namespace mp
