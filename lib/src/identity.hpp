// Who the calling process and thread are, cached, and whether another process still
// runs. Used for lock ownership (so that a dead owner is recognised) and by the heap's
// handles (which count references per process).
#pragma once

#include <cstdint>

#include <sys/types.h>

#include <mp/detail/heap.hpp>
#include <mp/detail/lock_state.hpp>

namespace mp::detail {

// The calling thread's id (gettid), cached per thread.
pid_t current_tid() noexcept;

// False if the process named by `id` has ended (or is a zombie), or if its pid now
// belongs to another process. When /proc cannot tell, true: a live owner must never
// lose its lock.
bool owner_alive(owner_id id) noexcept;

}  // namespace mp::detail
