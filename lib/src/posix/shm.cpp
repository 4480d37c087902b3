#include "posix/shm.hpp"

#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cerrno>

namespace mp::posix {

std::error_code memfd_create_sized(const char* name, std::uint64_t size, unique_fd& out) noexcept {
  unique_fd fd(::memfd_create(name, MFD_CLOEXEC));
  if (!fd) return last_error();
  while (::ftruncate(fd.get(), static_cast<off_t>(size)) != 0) {
    if (errno != EINTR) return last_error();
  }
  out = std::move(fd);
  return {};
}

std::error_code file_size(int fd, std::uint64_t& size) noexcept {
  struct stat st {};
  if (::fstat(fd, &st) != 0) return last_error();
  size = static_cast<std::uint64_t>(st.st_size);
  return {};
}

std::error_code map_shared(int fd, std::uint64_t size, void*& out) noexcept {
  void* address = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_NORESERVE, fd, 0);
  if (address == MAP_FAILED) return last_error();
  out = address;
  return {};
}

void unmap(void* address, std::uint64_t size) noexcept { ::munmap(address, size); }

std::error_code discard_pages(void* address, std::uint64_t size) noexcept {
  if (::madvise(address, size, MADV_REMOVE) != 0) return last_error();
  return {};
}

std::size_t page_size() noexcept {
  static const std::size_t size = static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
  return size;
}

}  // namespace mp::posix
