// Shared memory: anonymous memfd files for the shared heap (nothing appears in /dev/shm,
// nothing outlives the processes that map them), named POSIX segments for
// mp::SharedMemory, and the watchdog that removes those when their process tree ends.
#pragma once

#include <cstddef>
#include <cstdint>
#include <system_error>

#include <sys/types.h>

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

// ---- Named segments (POSIX shm_open, under /dev/shm) --------------------------------

namespace mp::posix {

// Creates the segment `name` ("/name") exclusively, mode exactly 0600 (whatever the
// umask), close-on-exec, `size` bytes. std::errc::file_exists if it exists already.
// On any failure after creating it, removes it again.
[[nodiscard]] std::error_code shm_create(const char* name, std::uint64_t size,
                                         unique_fd& out) noexcept;

// Opens the existing segment `name` read-write, close-on-exec.
// std::errc::no_such_file_or_directory if there is none.
[[nodiscard]] std::error_code shm_attach(const char* name, unique_fd& out) noexcept;

// Removes the name `name` (shm_unlink); mappings stay valid.
[[nodiscard]] std::error_code shm_remove(const char* name) noexcept;

// Identifies the file behind `fd` (device and inode numbers).
[[nodiscard]] std::error_code file_identity(int fd, std::uint64_t& device,
                                            std::uint64_t& inode) noexcept;

// Fills `size` bytes with random bytes (getrandom). Exported for libmp_listener.
[[nodiscard]] MP_API std::error_code random_bytes(void* out, std::size_t size) noexcept;

// Faults in every page of [address, address + size) for writing at once
// (MADV_POPULATE_WRITE; on kernels before 5.14, a read of every page, which for shared
// memory allocates the page and maps it writable too). std::errc::no_space_on_device
// (or another error) if the memory cannot be allocated: a write would have raised SIGBUS.
[[nodiscard]] std::error_code populate_for_write(void* address, std::uint64_t size) noexcept;

// Asks for transparent huge pages on a mapping of a /dev/shm segment
// (madvise(MADV_HUGEPAGE)). Sets `effective` to whether the kernel will use them: the
// advice was accepted and /dev/shm is mounted with huge=always|within_size|advise (or
// /sys/kernel/mm/transparent_hugepage/shmem_enabled is "force"). Never fails: a refusal
// leaves normal pages.
void advise_huge_pages(void* address, std::uint64_t size, bool& effective) noexcept;

// ---- Tree watchdog ----------------------------------------------------------------------

// An address range to unmap in the watchdog (the caller's mappings of the tree's file).
struct MappedRange {
  void* address;
  std::uint64_t size;
};

// Called in the watchdog once the tree has ended, with a fresh read-only mapping of the
// tree's file. Runs in a process forked from a possibly multi-threaded one: it may only
// make async-signal-safe calls (no allocation, no locks, no exceptions).
using TreeEndAction = void (*)(const std::byte* base, std::uint64_t size) noexcept;

// Starts a watchdog that runs `on_tree_end` once no process holds the open file
// description `tree_fd` any more (as an fd or a mapping), that is once every process
// sharing it has ended, however it ended (SIGKILL included).
//
// How: the caller takes a shared flock on `tree_fd` (flock locks belong to the open
// file description, which forked children inherit and SCM_RIGHTS passes along, and the
// kernel drops the lock when the description's last reference goes). The watchdog
// reopens the file through /proc/self/fd (a description of its own), detaches (double
// fork, new session, stdio on /dev/null, every other fd closed, the `unmap` ranges
// unmapped, signal handlers reset), and blocks in flock(LOCK_EX) until then.
// `watchdog` receives its pid.
[[nodiscard]] std::error_code start_tree_watchdog(int tree_fd, const MappedRange* unmap,
                                                  std::size_t unmap_count,
                                                  TreeEndAction on_tree_end,
                                                  pid_t& watchdog) noexcept;

}  // namespace mp::posix
