// What mp's command-line tools (mp-demo, mp-map) share about their standard descriptors.
#pragma once

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>

namespace mp_tools {

// A standard descriptor that was closed when the tool started gets /dev/null, so that no
// descriptor opened later (shared memory, the pool's pipes...) takes its number and
// receives what is printed; true if it was closed.
inline bool occupy_if_closed(int fd) {
  if (::fcntl(fd, F_GETFD) != -1 || errno != EBADF) return false;
  const int null = ::open("/dev/null", fd == 0 ? O_RDONLY : O_WRONLY);
  if (null >= 0 && null != fd) {
    ::dup2(null, fd);
    ::close(null);
  }
  return true;
}

}  // namespace mp_tools
