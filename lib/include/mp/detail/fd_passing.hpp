// Passing file descriptors to a spawned child through the pickling of its target's
// arguments. Internal to mp; public only because mp::Connection's pickling (a template
// in <mp/connection.hpp>) calls it. Python: multiprocessing.reduction's DupFd and
// resource_sharer, which pass an fd while a Process object is pickled for spawn.
//
// Parent side: the spawn launcher keeps an FdCollector alive while it pickles the
// target and its arguments. An object that owns an fd pickles the index that
// register_fd_for_child() returns; after the pickle, the launcher sends collected()
// in that order over the bootstrap socket (SCM_RIGHTS).
//
// Child side: before it unpickles the target, the spawned child hands the received
// fds to set_inherited_fds(); unpickling calls take_inherited_fd(index) to own each.
#pragma once

#include <mp/detail/export.hpp>

#include <cstdint>
#include <span>
#include <vector>

namespace mp::detail {

// While alive, register_fd_for_child() on this thread records into it. Nests: the
// innermost one collects. Neither owns nor duplicates the fds: their owners must stay
// open until the launcher has sent them.
class MP_API FdCollector {
 public:
  FdCollector() noexcept;
  ~FdCollector();
  FdCollector(const FdCollector&) = delete;
  FdCollector& operator=(const FdCollector&) = delete;

  // The registered fds, in index order. Out of line: converting the vector to a span
  // checks the span constructor's constraints, which every includer would pay for.
  std::span<const int> collected() const noexcept;

 private:
  friend std::uint32_t register_fd_for_child(int fd, const char* what);
  std::vector<int> fds_;
  FdCollector* previous_;
};

// Registers `fd` to be sent to the child being spawned and returns its index in the
// list the child receives. Throws mp::PicklingError (message: `what` can only be passed
// as a Process argument) when no FdCollector is active on this thread, i.e. when the
// pickle is not the argument list of a spawned child (a Queue message, say).
MP_API std::uint32_t register_fd_for_child(int fd, const char* what);

// Child side: takes ownership of the fds the parent sent, in index order (any left
// from an earlier call are closed).
MP_API void set_inherited_fds(std::vector<int> fds) noexcept;

// Child side: gives up ownership of the inherited fd at `index` to the caller. Throws
// mp::UnpicklingError if there is no such fd or it was taken already.
MP_API int take_inherited_fd(std::uint32_t index);

// Child side: closes the inherited fds that nobody took.
MP_API void close_inherited_fds() noexcept;

}  // namespace mp::detail
