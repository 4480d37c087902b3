// Cleanup that runs once, at the latest when this process exits normally. Mirrors
// Python's `multiprocessing.util.Finalize`.
//
//   mp::util::Finalize remove_tmp([dir] { std::filesystem::remove_all(dir); }, 10);
//
// Differences from Python, on purpose:
//   - No weak reference to an object: a finalizer without an exit priority runs when the
//     last copy of its handle is destroyed (Python: when `obj` is collected); one with an
//     exit priority is kept by the registry and runs at exit (destroying its handles does
//     nothing), or earlier if called.
//   - The callback is a std::function (bind arguments with a lambda); calling a
//     finalizer returns whether it ran, not the callback's result.
//
// As in Python: a finalizer runs at most once, and only in the process that made it (a
// forked child's copy of the registry never runs, nor does calling an inherited handle
// there). At normal exit (return from main, std::exit; not _exit, a signal or
// std::abort), the finalizers with an exit priority run highest priority first, and among
// equal priorities the one made last first, from a std::atexit handler that mp registers
// when the process makes its first one. Python runs those of priority >= 0 before
// joining the children and the others after; mp runs all of them where its handler
// falls among the program's atexit handlers (handlers registered later run before it).
#pragma once

#include <mp/detail/export.hpp>

#include <functional>
#include <memory>
#include <optional>

namespace mp::util {

// A callback to run once: when called, when the last copy of the handle is destroyed
// (no exit priority), or at normal exit (with one). Copies are handles to the same
// finalizer. Python: multiprocessing.util.Finalize (see above for the differences).
class MP_API Finalize {
 public:
  // Registers `callback`. Throws std::invalid_argument if it is empty, std::bad_alloc.
  // Python: Finalize(obj, callback, exitpriority=None).
  explicit Finalize(std::function<void()> callback, std::optional<int> exitpriority = std::nullopt);

  // Runs the callback now, unless it ran or was cancelled already, or this is not the
  // process that made it; returns whether it ran. The callback's exceptions reach the
  // caller (it counts as run). At exit or at the handle's destruction they are printed to
  // stderr instead. Python: f().
  bool operator()() const;
  // The callback will never run. Python: cancel().
  void cancel() const;
  // Whether the callback may still run (not run, not cancelled, and this process made
  // it). Python: still_active().
  bool still_active() const;
  // The exit priority given at construction.
  std::optional<int> exitpriority() const;

  // Internal (lib/src/util.cpp).
  struct Entry;
  struct Owner;

 private:
  std::shared_ptr<Owner> owner_;
};

}  // namespace mp::util

namespace mp {
using util::Finalize;
}  // namespace mp
