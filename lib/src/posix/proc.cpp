#include "posix/proc.hpp"

#include "posix/fd.hpp"

#include <fcntl.h>
#include <unistd.h>
#include <cerrno>
#include <cstdio>
#include <cstring>

namespace mp::posix {

std::error_code process_status(pid_t pid, ProcessStatus& out) noexcept {
  out = {};
  char path[64];
  std::snprintf(path, sizeof path, "/proc/%d/stat", static_cast<int>(pid));
  int fd = above_stdio(::open(path, O_RDONLY | O_CLOEXEC));
  if (fd < 0) {
    if (errno == ENOENT || errno == ESRCH) return {};
    return {errno, std::system_category()};
  }
  char buffer[1024];
  ssize_t n;
  do {
    n = ::read(fd, buffer, sizeof buffer - 1);
  } while (n < 0 && errno == EINTR);
  const int saved = errno;
  ::close(fd);
  if (n < 0) {
    if (saved == ESRCH) return {};  // it ended between open and read
    return {saved, std::system_category()};
  }
  buffer[n] = '\0';
  // "pid (comm) state ...": comm may hold spaces and parentheses, so parse after the last ')'.
  const char* p = std::strrchr(buffer, ')');
  if (!p || p[1] != ' ') return std::make_error_code(std::errc::protocol_error);
  p += 2;
  const char state = *p;
  // Field 3 is the state; skip to field 22 (starttime).
  int field = 3;
  while (*p && field < 22) {
    if (*p++ == ' ') ++field;
  }
  if (field != 22) return std::make_error_code(std::errc::protocol_error);
  std::uint64_t ticks = 0;
  while (*p >= '0' && *p <= '9') ticks = ticks * 10 + static_cast<std::uint64_t>(*p++ - '0');
  out.running = state != 'Z' && state != 'X' && state != 'x';
  out.start_ticks = ticks;
  return {};
}

pid_t this_thread_id() noexcept { return ::gettid(); }

}  // namespace mp::posix
