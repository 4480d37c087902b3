// What /proc says about a process: whether it still runs and when it started (which
// tells a live process from a later one that reused its pid).
#pragma once

#include <cstdint>
#include <system_error>

#include <sys/types.h>

namespace mp::posix {

struct ProcessStatus {
  bool running = false;           // false: gone, or a zombie (dead, not reaped yet)
  std::uint64_t start_ticks = 0;  // field 22 of /proc/<pid>/stat (clock ticks since boot)
};

// Reads /proc/<pid>/stat. A pid that does not exist gives running == false, not an error.
[[nodiscard]] std::error_code process_status(pid_t pid, ProcessStatus& out) noexcept;

// The calling thread's id (gettid).
pid_t this_thread_id() noexcept;

}  // namespace mp::posix
