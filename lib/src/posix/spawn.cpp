#include "posix/spawn.hpp"

#include <spawn.h>
#include <unistd.h>
#include <climits>
#include <csignal>

#include "posix/fd.hpp"

extern char** environ;

namespace mp::posix {

std::error_code spawn_with_fd(const std::string& executable, const std::vector<std::string>& args,
                              int fd, int target_fd, pid_t& pid) noexcept {
  std::vector<char*> argv;
  argv.reserve(args.size() + 2);
  argv.push_back(const_cast<char*>(executable.c_str()));
  for (const auto& arg : args) argv.push_back(const_cast<char*>(arg.c_str()));
  argv.push_back(nullptr);

  posix_spawn_file_actions_t actions;
  posix_spawnattr_t attributes;
  if (int rc = posix_spawn_file_actions_init(&actions)) return {rc, std::system_category()};
  if (int rc = posix_spawnattr_init(&attributes)) {
    posix_spawn_file_actions_destroy(&actions);
    return {rc, std::system_category()};
  }
  sigset_t no_signals;
  sigemptyset(&no_signals);
  // adddup2 with fd == target_fd clears FD_CLOEXEC (glibc >= 2.29); addclosefrom_np
  // (glibc >= 2.34) closes whatever the parent had open, inheritable or not.
  int rc = posix_spawn_file_actions_adddup2(&actions, fd, target_fd);
  if (!rc) rc = posix_spawn_file_actions_addclosefrom_np(&actions, target_fd + 1);
  if (!rc) rc = posix_spawnattr_setsigmask(&attributes, &no_signals);
  if (!rc) rc = posix_spawnattr_setflags(&attributes, POSIX_SPAWN_SETSIGMASK);
  if (!rc)
    rc = ::posix_spawn(&pid, executable.c_str(), &actions, &attributes, argv.data(), environ);
  posix_spawnattr_destroy(&attributes);
  posix_spawn_file_actions_destroy(&actions);
  if (rc) return {rc, std::system_category()};
  return {};
}

std::error_code self_executable(std::string& path) noexcept {
  char buffer[PATH_MAX];
  ssize_t n = ::readlink("/proc/self/exe", buffer, sizeof buffer - 1);
  if (n < 0) return last_error();
  path.assign(buffer, static_cast<std::size_t>(n));
  return {};
}

}  // namespace mp::posix
