// The loaded-module table (see modules.hpp) and mp::detail's code references.
#include "posix/modules.hpp"

#include <elf.h>
#include <link.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <climits>
#include <cstddef>
#include <cstdio>
#include <cstring>
#include <memory>
#include <mp/detail/code_ref.hpp>
#include <mp/errors.hpp>
#include <mutex>
#include <new>
#include <stdexcept>

namespace mp::posix {
namespace {

struct ModuleTable {
  std::vector<LoadedModule> modules;  // the main executable first
  // dl_iterate_phdr's counters of loads and unloads when this table was read.
  unsigned long long adds = 0;
  unsigned long long subs = 0;
};

constexpr std::uint64_t kFnvOffset64 = 14695981039346656037ull;
constexpr std::uint64_t kFnvPrime64 = 1099511628211ull;

void fnv1a64(std::uint64_t& hash, const void* data, std::size_t size) {
  const auto* bytes = static_cast<const unsigned char*>(data);
  for (std::size_t i = 0; i < size; ++i) {
    hash ^= bytes[i];
    hash *= kFnvPrime64;
  }
}

std::string hex(const unsigned char* bytes, std::size_t size) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string text(2 * size, '0');
  for (std::size_t i = 0; i < size; ++i) {
    text[2 * i] = kDigits[bytes[i] >> 4];
    text[2 * i + 1] = kDigits[bytes[i] & 0xf];
  }
  return text;
}

std::string_view file_name(std::string_view path) {
  const std::size_t slash = path.rfind('/');
  return slash == std::string_view::npos ? path : path.substr(slash + 1);
}

// The main executable's path as the kernel sees it (symlinks resolved), so that a
// child re-executing /proc/self/exe computes the same module id as its parent.
std::string main_executable_path() {
  char buffer[PATH_MAX];
  const ssize_t n = ::readlink("/proc/self/exe", buffer, sizeof buffer - 1);
  if (n <= 0) return program_invocation_name ? program_invocation_name : "";
  std::string path(buffer, static_cast<std::size_t>(n));
  // Rebuilt while running: the kernel appends this to the old file's path.
  constexpr std::string_view kDeleted = " (deleted)";
  if (path.ends_with(kDeleted)) path.resize(path.size() - kDeleted.size());
  return path;
}

// The descriptor of the NT_GNU_BUILD_ID note in a mapped PT_NOTE segment, or empty.
std::string build_id_in_notes(const unsigned char* notes, std::size_t size, std::size_t align) {
  const auto padded = [align](std::size_t n) { return (n + align - 1) & ~(align - 1); };
  while (size >= sizeof(ElfW(Nhdr))) {
    ElfW(Nhdr) header;
    std::memcpy(&header, notes, sizeof header);
    const std::size_t body = size - sizeof header;
    const std::size_t name_size = padded(header.n_namesz);
    if (name_size > body || header.n_descsz > body - name_size) break;
    const unsigned char* name = notes + sizeof header;
    const unsigned char* desc = name + name_size;
    if (header.n_type == NT_GNU_BUILD_ID && header.n_namesz == 4 &&
        std::memcmp(name, "GNU", 4) == 0 && header.n_descsz > 0) {
      return hex(desc, header.n_descsz);
    }
    const std::size_t step = sizeof header + name_size + padded(header.n_descsz);
    if (step >= size) break;
    notes += step;
    size -= step;
  }
  return {};
}

// A module without a build id is identified by its file: path, size, mtime, inode.
std::string file_identity(const std::string& path) {
  std::uint64_t hash = kFnvOffset64;
  fnv1a64(hash, path.data(), path.size());
  struct stat status {};
  if (!path.empty() && ::stat(path.c_str(), &status) == 0) {
    const std::uint64_t fields[] = {static_cast<std::uint64_t>(status.st_size),
                                    static_cast<std::uint64_t>(status.st_ino),
                                    static_cast<std::uint64_t>(status.st_mtim.tv_sec),
                                    static_cast<std::uint64_t>(status.st_mtim.tv_nsec)};
    fnv1a64(hash, fields, sizeof fields);
  }
  char text[20];
  std::snprintf(text, sizeof text, "h%016llx", static_cast<unsigned long long>(hash));
  return text;
}

struct Scan {
  ModuleTable* table;
  std::vector<bool> has_build_id;
  bool complete = true;
};

// Whether [begin, begin + size) lies inside one of the module's PT_LOAD segments, i.e.
// is mapped and may be read.
bool is_loaded(const dl_phdr_info* info, ElfW(Addr) begin, ElfW(Xword) size) {
  for (ElfW(Half) i = 0; i < info->dlpi_phnum; ++i) {
    const ElfW(Phdr)& segment = info->dlpi_phdr[i];
    if (segment.p_type == PT_LOAD && begin >= segment.p_vaddr && size <= segment.p_filesz &&
        begin - segment.p_vaddr <= segment.p_filesz - size) {
      return true;
    }
  }
  return false;
}

int scan_one(dl_phdr_info* info, std::size_t size, void* data) noexcept {
  auto& scan = *static_cast<Scan*>(data);
  // Allocation failures must not unwind through the C loader.
  try {
    LoadedModule module;
    module.base = info->dlpi_addr;
    const bool is_main = scan.table->modules.empty();
    module.path = is_main ? main_executable_path() : (info->dlpi_name ? info->dlpi_name : "");
    std::string build_id;
    for (ElfW(Half) i = 0; i < info->dlpi_phnum; ++i) {
      const ElfW(Phdr)& segment = info->dlpi_phdr[i];
      if (segment.p_type == PT_LOAD) {
        module.loaded.push_back({segment.p_vaddr, segment.p_vaddr + segment.p_memsz});
        if (segment.p_flags & PF_X)
          module.code.push_back({segment.p_vaddr, segment.p_vaddr + segment.p_memsz});
      } else if (segment.p_type == PT_NOTE && build_id.empty() &&
                 is_loaded(info, segment.p_vaddr, segment.p_filesz)) {
        const auto* notes =
            reinterpret_cast<const unsigned char*>(info->dlpi_addr + segment.p_vaddr);
        build_id = build_id_in_notes(notes, segment.p_filesz, segment.p_align == 8 ? 8 : 4);
      }
    }
    scan.has_build_id.push_back(!build_id.empty());
    module.id = std::move(build_id);
    scan.table->modules.push_back(std::move(module));
    if (size >= offsetof(dl_phdr_info, dlpi_subs) + sizeof info->dlpi_subs) {
      scan.table->adds = info->dlpi_adds;
      scan.table->subs = info->dlpi_subs;
    }
  } catch (...) {
    scan.complete = false;
    return 1;
  }
  return 0;
}

std::unique_ptr<ModuleTable> scan_modules() {
  auto table = std::make_unique<ModuleTable>();
  Scan scan{table.get(), {}};
  ::dl_iterate_phdr(scan_one, &scan);
  if (!scan.complete || table->modules.empty()) throw std::bad_alloc();
  // stat() and friends run after the loader's lock is released.
  for (std::size_t i = 0; i < table->modules.size(); ++i) {
    LoadedModule& module = table->modules[i];
    if (!scan.has_build_id[i]) module.id = file_identity(module.path);
    module.id += ':';
    module.id += file_name(module.path.empty() ? std::string_view("?") : module.path);
  }
  return table;
}

// The loader's (adds, subs) counters, without building a table.
std::pair<unsigned long long, unsigned long long> loader_counters() {
  std::pair<unsigned long long, unsigned long long> counters{0, 0};
  ::dl_iterate_phdr(
      [](dl_phdr_info* info, std::size_t size, void* data) noexcept -> int {
        if (size >= offsetof(dl_phdr_info, dlpi_subs) + sizeof info->dlpi_subs) {
          *static_cast<std::pair<unsigned long long, unsigned long long>*>(data) = {
              info->dlpi_adds, info->dlpi_subs};
        }
        return 1;  // the counters are the same in every entry
      },
      &counters);
  return counters;
}

class ModuleCache {
 public:
  // The current table, built on first use.
  const ModuleTable& table() {
    if (const ModuleTable* table = current_.load(std::memory_order_acquire)) return *table;
    std::lock_guard lock(mutex_);
    if (const ModuleTable* table = current_.load(std::memory_order_acquire)) return *table;
    return publish(scan_modules());
  }

  // After a lookup in `seen` missed: a newer table if modules were loaded or unloaded
  // since `seen` was read, else `seen` itself (so repeated misses stay cheap).
  const ModuleTable& refresh(const ModuleTable& seen) {
    std::lock_guard lock(mutex_);
    const ModuleTable* current = current_.load(std::memory_order_acquire);
    if (current != &seen) return *current;
    if (loader_counters() == std::pair{seen.adds, seen.subs}) return seen;
    return publish(scan_modules());
  }

 private:
  const ModuleTable& publish(std::unique_ptr<ModuleTable> table) {
    tables_.push_back(std::move(table));  // kept: lookups return pointers into it
    const ModuleTable* published = tables_.back().get();
    current_.store(published, std::memory_order_release);
    return *published;
  }

  std::atomic<const ModuleTable*> current_{nullptr};
  std::mutex mutex_;
  std::vector<std::unique_ptr<ModuleTable>> tables_;
};

ModuleCache& cache() {
  // Never destroyed: pickling may run in static destructors and atexit handlers.
  static ModuleCache* const instance = new ModuleCache;
  return *instance;
}

const LoadedModule* find_by_address(const ModuleTable& table, std::uintptr_t address) {
  for (const LoadedModule& module : table.modules)
    if (module.has_code_at(address - module.base)) return &module;
  return nullptr;
}

const LoadedModule* find_holding(const ModuleTable& table, std::uintptr_t address) {
  for (const LoadedModule& module : table.modules)
    for (const LoadedModule::Range& range : module.loaded)
      if (address - module.base >= range.begin && address - module.base < range.end) return &module;
  return nullptr;
}

const LoadedModule* find_by_id(const ModuleTable& table, std::string_view id) {
  for (const LoadedModule& module : table.modules)
    if (module.id == id) return &module;
  return nullptr;
}

}  // namespace

const LoadedModule* module_containing(const void* address) {
  const auto value = reinterpret_cast<std::uintptr_t>(address);
  const ModuleTable& table = cache().table();
  if (const LoadedModule* module = find_by_address(table, value)) return module;
  return find_by_address(cache().refresh(table), value);
}

const LoadedModule* module_holding(const void* address) {
  const auto value = reinterpret_cast<std::uintptr_t>(address);
  const ModuleTable& table = cache().table();
  if (const LoadedModule* module = find_holding(table, value)) return module;
  return find_holding(cache().refresh(table), value);
}

const LoadedModule* module_with_id(std::string_view id) {
  const ModuleTable& table = cache().table();
  if (const LoadedModule* module = find_by_id(table, id)) return module;
  return find_by_id(cache().refresh(table), id);
}

const LoadedModule& main_module() { return cache().table().modules.front(); }

}  // namespace mp::posix

namespace mp::detail {

code_ref locate_code(const void* address) {
  const posix::LoadedModule* module = posix::module_containing(address);
  if (!module) {
    char text[32];
    std::snprintf(text, sizeof text, "%p", address);
    throw std::invalid_argument(std::string("mp: address ") + text +
                                " is not in the code of any loaded module");
  }
  return {module->id, reinterpret_cast<std::uintptr_t>(address) - module->base};
}

const void* resolve_code(const code_ref& ref) {
  const posix::LoadedModule* module = posix::module_with_id(ref.module_id);
  if (!module) {
    throw UnpicklingError("mp: no module '" + ref.module_id +
                          "' is loaded in this process: it runs a different binary or library "
                          "than the process that pickled the function (rebuilt or replaced "
                          "since?); this binary is '" +
                          main_module_id() + "'");
  }
  if (!module->has_code_at(ref.offset)) {
    throw UnpicklingError("mp: offset " + std::to_string(ref.offset) +
                          " is outside the code of module '" + ref.module_id + "'");
  }
  return reinterpret_cast<const void*>(module->base + ref.offset);
}

const std::string& main_module_id() { return posix::main_module().id; }

}  // namespace mp::detail
