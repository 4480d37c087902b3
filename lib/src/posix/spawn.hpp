// Starting a program with exactly the fds it should have.
#pragma once

#include <string>
#include <system_error>
#include <vector>

#include <sys/types.h>

namespace mp::posix {

// Runs `executable` with `args` (argv[0] is the executable) and the caller's
// environment, in a child whose fds are stdin/stdout/stderr plus `fd` placed at
// `target_fd` (without close-on-exec); every other fd is closed. The child starts with
// no blocked signals. Uses posix_spawn (vfork-like), so the cost does not grow with
// the parent's memory.
[[nodiscard]] std::error_code spawn_with_fd(const std::string& executable,
                                            const std::vector<std::string>& args, int fd,
                                            int target_fd, pid_t& pid) noexcept;

// The path of the running executable (/proc/self/exe).
[[nodiscard]] std::error_code self_executable(std::string& path) noexcept;

}  // namespace mp::posix
