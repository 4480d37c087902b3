// Code references: how a function's address crosses into a spawned child, which runs
// the same binary at another load address (ASLR). A reference names the loaded module
// (executable or shared library) that holds the code and the offset from that module's
// load base; the child finds its own copy of the module and adds its own base.
// Internal to mp (used by mp::pickle and the spawn start method).
//
// Python pickles a function by its qualified name and imports it in the child; C++ has
// no such names at run time, so the module identity (GNU build id) stands in for the
// import and guarantees that the child's code at that offset is the parent's.
#pragma once

#include <mp/detail/export.hpp>

#include <cstdint>
#include <string>

namespace mp::detail {

struct code_ref {
  // "<hex GNU build id>:<file name>", or "h<hash of path, size, mtime, inode>:<file name>"
  // for a module linked without a build id. Equal ids mean byte-identical code.
  std::string module_id;
  // Address minus the module's load base.
  std::uint64_t offset = 0;

  bool operator==(const code_ref&) const = default;
};

// The module whose executable segments hold `address`, and the offset into it.
// Throws std::invalid_argument if no loaded module has code at that address (a data
// address, a JIT buffer, nullptr). Fast: a cached module table, rescanned on a miss.
MP_API code_ref locate_code(const void* address);

// The address in this process of the code `ref` names. Throws mp::UnpicklingError if no
// loaded module has that id (the child runs a different binary or library than the
// parent) or if the offset is outside that module's code.
MP_API const void* resolve_code(const code_ref& ref);

// The module id of the main executable (never changes while the process runs).
MP_API const std::string& main_module_id();

}  // namespace mp::detail
