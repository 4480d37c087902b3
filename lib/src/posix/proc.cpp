#include "posix/proc.hpp"

#include "posix/fd.hpp"

#include <fcntl.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/sysinfo.h>
#include <unistd.h>
#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>

namespace mp::posix {

namespace {

// Reads /proc/<pid>/stat (/proc/self/stat for pid 0) into `buffer` and points `fields` at
// field 3, the first after comm ("pid (comm) state ...": comm may hold spaces and
// parentheses, so the fields start after the last ')').
std::error_code read_stat(pid_t pid, char (&buffer)[1024], const char*& fields) noexcept {
  char path[64];
  if (pid == 0)
    std::snprintf(path, sizeof path, "/proc/self/stat");
  else
    std::snprintf(path, sizeof path, "/proc/%d/stat", static_cast<int>(pid));
  int fd = above_stdio(::open(path, O_RDONLY | O_CLOEXEC));
  if (fd < 0) return {errno, std::system_category()};
  ssize_t n;
  do {
    n = ::read(fd, buffer, sizeof buffer - 1);
  } while (n < 0 && errno == EINTR);
  const int saved = errno;
  ::close(fd);
  if (n < 0) return {saved, std::system_category()};
  buffer[n] = '\0';
  const char* p = std::strrchr(buffer, ')');
  if (!p || p[1] != ' ') return std::make_error_code(std::errc::protocol_error);
  fields = p + 2;
  return {};
}

}  // namespace

std::error_code process_status(pid_t pid, ProcessStatus& out) noexcept {
  out = {};
  char buffer[1024];
  const char* p = nullptr;
  if (auto ec = read_stat(pid, buffer, p)) {
    // Gone before the open, or between the open and the read.
    if (ec.value() == ENOENT || ec.value() == ESRCH) return {};
    return ec;
  }
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

std::error_code argv_area(char*& start, std::size_t& size) noexcept {
  start = nullptr;
  size = 0;
  char buffer[1024];
  const char* p = nullptr;
  if (auto ec = read_stat(0, buffer, p)) return ec;
  // Fields 48 and 49 (arg_start, arg_end).
  int field = 3;
  while (*p && field < 48) {
    if (*p++ == ' ') ++field;
  }
  if (field != 48) return std::make_error_code(std::errc::protocol_error);
  std::uint64_t bounds[2] = {0, 0};
  for (auto& bound : bounds) {
    while (*p >= '0' && *p <= '9') bound = bound * 10 + static_cast<std::uint64_t>(*p++ - '0');
    if (*p == ' ') ++p;
  }
  if (bounds[1] <= bounds[0]) return std::make_error_code(std::errc::protocol_error);
  start = reinterpret_cast<char*>(static_cast<std::uintptr_t>(bounds[0]));
  size = static_cast<std::size_t>(bounds[1] - bounds[0]);
  return {};
}

void set_thread_name(const char* name) noexcept { (void)::prctl(PR_SET_NAME, name, 0, 0, 0); }

std::uint64_t memory_and_swap_bytes() noexcept {
  struct sysinfo info {};
  if (::sysinfo(&info) != 0) return 0;
  return (std::uint64_t{info.totalram} + info.totalswap) *
         std::max<std::uint32_t>(info.mem_unit, 1);
}

std::uint64_t address_space_limit() noexcept {
  struct rlimit limit {};
  if (::getrlimit(RLIMIT_AS, &limit) != 0 || limit.rlim_cur == RLIM_INFINITY) return 0;
  return limit.rlim_cur;
}

}  // namespace mp::posix
