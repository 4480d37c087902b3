// Anonymous shared memory for the shared heap: memfd files mapped MAP_SHARED, so
// nothing appears in /dev/shm and nothing outlives the processes that map them.
#pragma once

#include <cstddef>
#include <cstdint>
#include <system_error>

#include "posix/fd.hpp"

namespace mp::posix {

// Creates an anonymous memory file (memfd_create with MFD_CLOEXEC) of `size` bytes,
// sparse: no page is allocated until touched.
[[nodiscard]] std::error_code memfd_create_sized(const char* name, std::uint64_t size,
                                                 unique_fd& out) noexcept;

// The size of the file behind `fd`.
[[nodiscard]] std::error_code file_size(int fd, std::uint64_t& size) noexcept;

// Maps `size` bytes of `fd` shared, read-write, MAP_NORESERVE (only touched pages
// count). `out` receives the address.
[[nodiscard]] std::error_code map_shared(int fd, std::uint64_t size, void*& out) noexcept;

// Unmaps what map_shared returned. Never fails for valid arguments.
void unmap(void* address, std::uint64_t size) noexcept;

// Gives the pages of [address, address + size) back to the system (MADV_REMOVE): a
// later read sees zeros. `address` and `size` must be page-aligned.
[[nodiscard]] std::error_code discard_pages(void* address, std::uint64_t size) noexcept;

// The page size.
std::size_t page_size() noexcept;

}  // namespace mp::posix
