// mp::mpi's doorbells: see mpi_doorbell.hpp.
#include "mpi_doorbell.hpp"

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <random>

namespace mp::detail::mpi {
namespace {

// The abstract address of `rank`'s bell (a leading NUL: nothing in the file system, and
// the name goes with the socket).
socklen_t bell_address(std::string_view job, int rank, sockaddr_un& address) {
  std::memset(&address, 0, sizeof address);
  address.sun_family = AF_UNIX;
  const std::string name = "mp-mpi-" + std::string(job) + "-" + std::to_string(rank);
  const std::size_t length = std::min(name.size(), sizeof address.sun_path - 1);
  std::memcpy(address.sun_path + 1, name.data(), length);
  return static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + 1 + length);
}

posix::unique_fd datagram_socket() {
  return posix::unique_fd(
      posix::above_stdio(::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0)));
}

}  // namespace

std::string new_doorbell_job() {
  std::random_device random;
  static constexpr char kHex[] = "0123456789abcdef";
  std::string job;
  for (int i = 0; i < 16; ++i) job += kHex[random() % 16];
  return job;
}

bool doorbells_enabled() {
  const char* env = std::getenv("MP_MPI_DOORBELL");
  return env == nullptr || std::string_view(env) != "0";
}

DoorbellListener::DoorbellListener(std::string_view job, int rank) {
  if (!doorbells_enabled()) return;
  posix::unique_fd fd = datagram_socket();
  if (!fd) return;
  sockaddr_un address;
  const socklen_t length = bell_address(job, rank, address);
  if (::bind(fd.get(), reinterpret_cast<const sockaddr*>(&address), length) != 0) return;
  fd_ = std::move(fd);
}

void DoorbellListener::drain() {
  if (!fd_) return;
  char buffer[64];
  while (::recv(fd_.get(), buffer, sizeof buffer, MSG_DONTWAIT) >= 0) {
  }
}

DoorbellRinger::DoorbellRinger(std::string job, int ranks)
    : job_(std::move(job)),
      fd_(datagram_socket()),
      reachable_(static_cast<std::size_t>(ranks), true) {
  if (!fd_) reachable_.assign(reachable_.size(), false);
}

void DoorbellRinger::ring(int rank) {
  if (!may_ring(rank)) return;
  sockaddr_un address;
  const socklen_t length = bell_address(job_, rank, address);
  const char byte = 1;
  if (::sendto(fd_.get(), &byte, 1, MSG_DONTWAIT | MSG_NOSIGNAL,
               reinterpret_cast<const sockaddr*>(&address), length) == 1)
    return;
  // A full socket (rung often while it slept) still wakes it; anything else means no bell.
  if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
    reachable_[static_cast<std::size_t>(rank)] = false;
}

}  // namespace mp::detail::mpi
