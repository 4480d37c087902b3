#include "posix/shm.hpp"

#include <fcntl.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <sstream>
#include <string>

namespace mp::posix {

std::error_code memfd_create_sized(const char* name, std::uint64_t size, unique_fd& out) noexcept {
  unique_fd fd(above_stdio(::memfd_create(name, MFD_CLOEXEC)));
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

// ---- Named segments ------------------------------------------------------------------

std::error_code shm_create(const char* name, std::uint64_t size, unique_fd& out) noexcept {
  const int created = ::shm_open(name, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (created < 0) return last_error();
  unique_fd fd(above_stdio(created));
  std::error_code ec;
  if (!fd) ec = last_error();
  // The umask may have removed bits; 0600 exactly, as Python's SharedMemory.
  if (!ec && ::fchmod(fd.get(), 0600) != 0) ec = last_error();
  while (!ec && ::ftruncate(fd.get(), static_cast<off_t>(size)) != 0) {
    if (errno != EINTR) ec = last_error();
  }
  if (ec) {
    (void)::shm_unlink(name);
    return ec;
  }
  out = std::move(fd);
  return {};
}

std::error_code shm_attach(const char* name, unique_fd& out) noexcept {
  unique_fd fd(above_stdio(::shm_open(name, O_RDWR | O_CLOEXEC, 0)));
  if (!fd) return last_error();
  out = std::move(fd);
  return {};
}

std::error_code shm_remove(const char* name) noexcept {
  if (::shm_unlink(name) != 0) return last_error();
  return {};
}

std::error_code file_identity(int fd, std::uint64_t& device, std::uint64_t& inode) noexcept {
  struct stat st {};
  if (::fstat(fd, &st) != 0) return last_error();
  device = static_cast<std::uint64_t>(st.st_dev);
  inode = static_cast<std::uint64_t>(st.st_ino);
  return {};
}

std::error_code random_bytes(void* out, std::size_t size) noexcept {
  auto* bytes = static_cast<unsigned char*>(out);
  while (size > 0) {
    const ssize_t got = ::getrandom(bytes, size, 0);
    if (got < 0) {
      if (errno == EINTR) continue;
      return last_error();
    }
    bytes += got;
    size -= static_cast<std::size_t>(got);
  }
  return {};
}

std::error_code populate_for_write(void* address, std::uint64_t size) noexcept {
#ifdef MADV_POPULATE_WRITE
  if (::madvise(address, size, MADV_POPULATE_WRITE) == 0) return {};
  if (errno != EINVAL) {
    // EFAULT: a page could not be allocated (the write would have raised SIGBUS).
    if (errno == EFAULT) return std::make_error_code(std::errc::no_space_on_device);
    return last_error();
  }
#endif
  // Kernels before 5.14: touch every page. A read fault on shared memory allocates the
  // page and maps it writable (shmem needs no write notification).
  const auto* bytes = static_cast<const volatile unsigned char*>(address);
  for (std::uint64_t offset = 0; offset < size; offset += page_size()) (void)bytes[offset];
  return {};
}

namespace {

// The value of huge= among /dev/shm's mount options ("never" if absent).
std::string dev_shm_huge_option() {
  std::string text;
  if (read_small_file("/proc/self/mounts", text)) return "never";
  std::istringstream mounts(text);
  std::string device, mount_point, type, options, rest;
  while (mounts >> device >> mount_point >> type >> options) {
    std::getline(mounts, rest);
    if (mount_point != "/dev/shm") continue;
    std::string found = "never";
    std::size_t start = 0;
    while (start <= options.size()) {
      const std::size_t end = std::min(options.find(',', start), options.size());
      const std::string option = options.substr(start, end - start);
      if (option.rfind("huge=", 0) == 0) found = option.substr(5);
      start = end + 1;
    }
    return found;
  }
  return "never";
}

bool shmem_huge_forced() {
  std::string text;
  if (read_small_file("/sys/kernel/mm/transparent_hugepage/shmem_enabled", text)) return false;
  return text.find("[force]") != std::string::npos;
}

}  // namespace

void advise_huge_pages(void* address, std::uint64_t size, bool& effective) noexcept {
  effective = false;
  if (::madvise(address, size, MADV_HUGEPAGE) != 0) return;  // EINVAL: no THP here
  try {
    const std::string huge = dev_shm_huge_option();
    effective =
        shmem_huge_forced() || huge == "always" || huge == "within_size" || huge == "advise";
  } catch (...) {  // cannot tell: say no
  }
}

// ---- Tree watchdog --------------------------------------------------------------------

namespace {

int flock_retrying(int fd, int operation) noexcept {
  int result;
  do {
    result = ::flock(fd, operation);
  } while (result != 0 && errno == EINTR);
  return result;
}

// The watchdog itself (async-signal-safe calls only). Never returns.
[[noreturn]] void run_watchdog(int tree_fd, int null_fd, const MappedRange* unmap,
                               std::size_t unmap_count, TreeEndAction on_tree_end) noexcept {
  // Reset what the creator may have set up: signal mask and handlers.
  sigset_t none;
  ::sigemptyset(&none);
  ::sigprocmask(SIG_SETMASK, &none, nullptr);
  struct sigaction default_action {};
  default_action.sa_handler = SIG_DFL;
  for (int signal = 1; signal < NSIG; ++signal) {
    if (signal == SIGKILL || signal == SIGSTOP) continue;
    (void)::sigaction(signal, &default_action, nullptr);
  }
  (void)::prctl(PR_SET_NAME, "mp-shm-watchdog", 0, 0, 0);
  // Only the reopened tree file (as fd 3) and /dev/null (as stdio) stay open. Both move
  // above the stdio numbers first, in case the creator had closed one of those.
  tree_fd = ::fcntl(tree_fd, F_DUPFD, 10);
  null_fd = ::fcntl(null_fd, F_DUPFD, 10);
  if (tree_fd < 0 || null_fd < 0) ::_exit(1);
  for (int target = 0; target <= 2; ++target) (void)::dup2(null_fd, target);
  if (::dup2(tree_fd, 3) < 0) ::_exit(1);
  if (::close_range(4, ~0U, 0) != 0) {
    for (int fd = 4; fd < 65536; ++fd) (void)::close(fd);
  }
  // The creator's mappings of the tree's file would keep its description alive.
  for (std::size_t i = 0; i < unmap_count; ++i) ::munmap(unmap[i].address, unmap[i].size);
  if (flock_retrying(3, LOCK_EX) != 0) ::_exit(2);
  struct stat st {};
  if (::fstat(3, &st) != 0) ::_exit(3);
  const auto size = static_cast<std::uint64_t>(st.st_size);
  void* base = ::mmap(nullptr, size, PROT_READ, MAP_SHARED | MAP_NORESERVE, 3, 0);
  if (base == MAP_FAILED) ::_exit(4);
  on_tree_end(static_cast<const std::byte*>(base), size);
  ::_exit(0);
}

}  // namespace

std::error_code start_tree_watchdog(int tree_fd, const MappedRange* unmap, std::size_t unmap_count,
                                    TreeEndAction on_tree_end, pid_t& watchdog) noexcept {
  if (flock_retrying(tree_fd, LOCK_SH) != 0) return last_error();
  char path[64];
  std::snprintf(path, sizeof path, "/proc/self/fd/%d", tree_fd);
  unique_fd reopened(above_stdio(::open(path, O_RDONLY | O_CLOEXEC)));
  if (!reopened) return last_error();
  unique_fd null_fd(above_stdio(::open("/dev/null", O_RDWR | O_CLOEXEC)));
  if (!null_fd) return last_error();
  int report[2];
  if (::pipe2(report, O_CLOEXEC) != 0) return last_error();
  unique_fd report_read(report[0]), report_write(report[1]);
  if (auto ec = keep_above_stdio(report_read)) return ec;
  if (auto ec = keep_above_stdio(report_write)) return ec;

  const pid_t middle = ::fork();
  if (middle < 0) return last_error();
  if (middle == 0) {
    // Not our child for long: a new session, then the watchdog, then exit, so that the
    // watchdog belongs to init (or the nearest subreaper), not to the creator.
    (void)::setsid();
    const pid_t grandchild = ::fork();
    if (grandchild == 0)
      run_watchdog(reopened.get(), null_fd.get(), unmap, unmap_count, on_tree_end);
    const pid_t reported = grandchild;
    (void)!::write(report_write.get(), &reported, sizeof reported);
    ::_exit(grandchild < 0 ? 1 : 0);
  }
  report_write.reset();
  int status = 0;
  while (::waitpid(middle, &status, 0) < 0) {
    if (errno != EINTR) return last_error();
  }
  pid_t reported = -1;
  if (auto ec = read_exact(report_read.get(), &reported, sizeof reported)) return ec;
  if (reported <= 0) return std::make_error_code(std::errc::resource_unavailable_try_again);
  watchdog = reported;
  return {};
}

}  // namespace mp::posix
