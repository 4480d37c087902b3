// What /proc says about a process: whether it still runs and when it started (which
// tells a live process from a later one that reused its pid); and the memory limits
// that size the shared heap.
#pragma once

#include <cstddef>
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

// Where this process's argument strings (argv, what `ps` shows) lie in its memory:
// fields arg_start and arg_end of /proc/self/stat.
[[nodiscard]] std::error_code argv_area(char*& start, std::size_t& size) noexcept;

// Names the calling thread (the main thread's name is the process's `comm`, what `top`
// shows); at most 15 characters are kept.
void set_thread_name(const char* name) noexcept;

// The machine's memory plus swap in bytes (sysinfo); 0 if unknown.
std::uint64_t memory_and_swap_bytes() noexcept;

// The soft limit on this process's address space (RLIMIT_AS, `ulimit -v`) in bytes; 0 if
// unlimited or unknown.
std::uint64_t address_space_limit() noexcept;

}  // namespace mp::posix
