// The table of loaded modules (the executable, shared libraries, the vDSO), read with
// dl_iterate_phdr: each module's identity (GNU build id plus file name), load base and
// executable segments. Backs mp::detail::locate_code/resolve_code and the function
// pointers mp::pickle writes.
//
// The table is built on first use and rebuilt only when a lookup misses and the dynamic
// loader reports that libraries were loaded or unloaded since (dlopen/dlclose). Tables
// are never freed, so a LoadedModule pointer stays valid until the process ends.
// A library unloaded with dlclose stays in the table until a lookup misses.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace mp::posix {

struct LoadedModule {
  // "<hex GNU build id>:<file name>", or "h<16 hex digits>:<file name>" hashing the
  // file's path, size, mtime and inode when the module has no build id.
  std::string id;
  // The path the loader used (for the main executable, the target of /proc/self/exe).
  std::string path;
  // dlpi_addr: what the loader added to the ELF virtual addresses.
  std::uintptr_t base = 0;
  // Executable PT_LOAD segments, as [begin, end) offsets from base.
  struct Range {
    std::uint64_t begin;
    std::uint64_t end;
  };
  std::vector<Range> code;
  // Every PT_LOAD segment (code and data), as [begin, end) offsets from base.
  std::vector<Range> loaded;

  bool has_code_at(std::uint64_t offset) const noexcept {
    for (const Range& range : code)
      if (offset >= range.begin && offset < range.end) return true;
    return false;
  }
};

// The module whose executable segments hold `address`, or nullptr. Thread-safe.
const LoadedModule* module_containing(const void* address);

// The module whose segments (code or data) hold `address`, or nullptr. Thread-safe.
const LoadedModule* module_holding(const void* address);

// The module with this id, or nullptr. Thread-safe.
const LoadedModule* module_with_id(std::string_view id);

// The main executable. Thread-safe.
const LoadedModule& main_module();

}  // namespace mp::posix
