// mp::pickle's compiled-once parts: error reporting, and function pointers as code
// references (the module table lives in posix/modules.cpp).
#include <mp/detail/code_ref.hpp>
#include <mp/errors.hpp>
#include <mp/pickle.hpp>
#include <new>
#include <stdexcept>
#include <string>

#include "posix/modules.hpp"

namespace mp::detail {
namespace {

// A module id longer than this in a pickle is corrupt (real ones are ~60 bytes).
constexpr std::uint64_t kMaxModuleIdSize = 4096;

std::string quoted(std::string_view type) { return "'" + std::string(type) + "'"; }

thread_local ThreadArchiveSlot<PickleOutputArchive> output_slot;
thread_local ThreadArchiveSlot<PickleInputArchive> input_slot;

}  // namespace

ThreadArchiveSlot<PickleOutputArchive>& thread_output_archive() noexcept { return output_slot; }
ThreadArchiveSlot<PickleInputArchive>& thread_input_archive() noexcept { return input_slot; }

void throw_truncated(std::size_t wanted, std::size_t available) {
  throw UnpicklingError("mp::pickle: truncated pickle: needed " + std::to_string(wanted) +
                        " more bytes, " + std::to_string(available) + " left");
}

void throw_bad_size(std::uint64_t count, std::size_t available) {
  throw UnpicklingError("mp::pickle: corrupt pickle: a range claims " + std::to_string(count) +
                        " elements but only " + std::to_string(available) + " bytes are left");
}

void throw_too_deep_to_pickle(std::size_t limit) {
  throw PicklingError("mp::pickle: cannot pickle a value nested more than " +
                      std::to_string(limit) +
                      " levels deep (a recursive type this deep would overflow the stack)");
}

void throw_too_deep_to_unpickle(std::size_t limit) {
  throw UnpicklingError("mp::pickle: corrupt pickle: values nested more than " +
                        std::to_string(limit) + " levels deep");
}

void throw_bad_bool(unsigned value) {
  throw UnpicklingError("mp::pickle: corrupt pickle: byte " + std::to_string(value) +
                        " where a bool (0 or 1) was expected");
}

void throw_bad_header(std::string_view data, std::uint64_t expected_header, std::string_view type) {
  const std::string expected = "while loading a " + quoted(type);
  if (data.size() < kPickleHeaderSize) {
    throw UnpicklingError("mp::pickle: truncated pickle: " + std::to_string(data.size()) +
                          " bytes, shorter than the " + std::to_string(kPickleHeaderSize) +
                          "-byte header, " + expected);
  }
  unsigned char header[kPickleHeaderSize];
  std::memcpy(header, data.data(), sizeof header);
  if (header[0] != kPickleMagic0 || header[1] != kPickleMagic1)
    throw UnpicklingError("mp::pickle: the bytes are not a pickle (bad magic) " + expected);
  if (header[2] != kPickleVersion) {
    throw UnpicklingError("mp::pickle: pickle format version " + std::to_string(header[2]) +
                          " is not supported (this build reads version " +
                          std::to_string(kPickleVersion) + ") " + expected);
  }
  if (header[3] != 0)
    throw UnpicklingError("mp::pickle: corrupt pickle header (reserved byte set) " + expected);
  std::uint64_t actual;
  std::memcpy(&actual, header, sizeof actual);
  if (actual != expected_header) {
    throw UnpicklingError("mp::pickle: the bytes hold a pickle of another type, not of " +
                          quoted(type));
  }
  throw std::logic_error("mp::pickle: throw_bad_header called on a valid header");
}

void throw_trailing_bytes(std::size_t count, std::string_view type) {
  throw UnpicklingError("mp::pickle: " + std::to_string(count) +
                        " unexpected bytes after the pickle of " + quoted(type) +
                        " (corrupt, or a pickle of another type)");
}

void rethrow_pickling_error(std::string_view type) {
  try {
    throw;
  } catch (const cereal::Exception& e) {
    throw PicklingError("mp::pickle: cannot pickle " + quoted(type) + ": " + e.what());
  }
}

void rethrow_unpickling_error(std::string_view type) {
  try {
    throw;
  } catch (const cereal::Exception& e) {
    throw UnpicklingError("mp::pickle: corrupt pickle of " + quoted(type) + ": " + e.what());
  } catch (const std::length_error& e) {
    throw UnpicklingError("mp::pickle: corrupt pickle of " + quoted(type) + ": impossible size (" +
                          e.what() + ")");
  } catch (const std::bad_alloc&) {
    throw UnpicklingError("mp::pickle: corrupt pickle of " + quoted(type) +
                          ": out of memory for the sizes it claims");
  }
}

void save_function_address(PickleOutputArchive& ar, const void* address) {
  std::uint64_t id_size = 0;
  std::uint64_t offset = 0;
  if (address == nullptr) {
    ar.write(&id_size, sizeof id_size);
    ar.write(&offset, sizeof offset);
    return;
  }
  const posix::LoadedModule* module = posix::module_containing(address);
  if (module == nullptr) {
    throw PicklingError(
        "mp::pickle: cannot pickle a function pointer that points outside the code of every "
        "loaded module");
  }
  id_size = module->id.size();
  offset = reinterpret_cast<std::uintptr_t>(address) - module->base;
  ar.write(&id_size, sizeof id_size);
  ar.write(module->id.data(), module->id.size());
  ar.write(&offset, sizeof offset);
}

const void* load_function_address(PickleInputArchive& ar) {
  std::uint64_t id_size;
  ar.read(&id_size, sizeof id_size);
  if (id_size > kMaxModuleIdSize || id_size > ar.remaining())
    throw_bad_size(id_size, ar.remaining());
  const std::string_view id = ar.read_view(static_cast<std::size_t>(id_size));
  std::uint64_t offset;
  ar.read(&offset, sizeof offset);
  if (id.empty()) {
    if (offset != 0)
      throw UnpicklingError("mp::pickle: corrupt function pointer (no module, nonzero offset)");
    return nullptr;
  }
  const posix::LoadedModule* module = posix::module_with_id(id);
  if (module == nullptr || !module->has_code_at(offset)) {
    return resolve_code(code_ref{std::string(id), offset});  // throws the detailed error
  }
  return reinterpret_cast<const void*>(module->base + offset);
}

std::uint32_t address_fingerprint(const void* anchor) noexcept {
  Fnv1a32Sink sink;
  const auto put_bytes = [&sink](const void* data, std::size_t size) {
    for (std::size_t i = 0; i < size; ++i) sink.put(static_cast<const char*>(data)[i]);
  };
  std::uint64_t offset = reinterpret_cast<std::uintptr_t>(anchor);
  try {
    if (const posix::LoadedModule* module = posix::module_holding(anchor)) {
      put_bytes(module->id.data(), module->id.size());
      offset -= module->base;
    }
  } catch (...) {
    // No module table (out of memory): the absolute address still tells types apart in
    // this process and its fork children; a spawned child then refuses the pickle.
  }
  put_bytes(&offset, sizeof offset);
  return sink.hash;
}

}  // namespace mp::detail
