// Who the calling process and thread are, cached, and whether another process still
// runs. Used for lock ownership (so that a dead owner is recognised) and by the heap's
// handles (which count references per process).
#pragma once

#include <cstdint>

#include <sys/types.h>

#include <mp/detail/heap.hpp>

namespace mp::detail {

// Names a process among all that ran on this machine since boot: its pid in the low
// 32 bits, the low 32 bits of its start time (clock ticks since boot, /proc/<pid>/stat)
// in the high 32 bits, so a later process that reuses the pid has another id (unless it
// starts exactly 2^32 ticks, 497 days at 100 Hz, later). Never 0.
using owner_id = std::uint64_t;

inline pid_t owner_pid(owner_id id) noexcept { return static_cast<pid_t>(id & 0x3fffff); }

// The calling process's owner id (read from /proc once per process).
owner_id current_owner_id() noexcept;

// The calling thread's id (gettid), cached per thread.
pid_t current_tid() noexcept;

// False if the process named by `id` has ended (or is a zombie), or if its pid now
// belongs to another process. When /proc cannot tell, true: a live owner must never
// lose its lock.
bool owner_alive(owner_id id) noexcept;

}  // namespace mp::detail
