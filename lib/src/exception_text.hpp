// What mp prints or sends about an exception: its demangled type name and its what()
// text, as Python's traceback shows the exception's class and message.
#pragma once

#include <mp/detail/export.hpp>

#include <cstdint>
#include <string>

namespace mp::detail {

struct ExceptionText {
  std::string type;     // "std::runtime_error"; "unknown exception" if unknown
  std::string message;  // what(), empty if it is not a std::exception
  // Filled by a pool worker only: the stack of the throw (empty without mp::stacktrace),
  // and 1 + the failed item's position in its chunk of a map (0: not a map, or unknown).
  std::string traceback;
  std::uint64_t item = 0;

  // "std::runtime_error: boom", or only the type when there is no message.
  std::string line() const { return message.empty() ? type : type + ": " + message; }
};

// The readable form of a mangled type name (typeid(x).name()); the name itself if it
// cannot be demangled.
std::string demangle(const char* mangled);

// The exception being handled. Call only inside a catch block.
// Exported for libmp_mpi, which a shared build links against libmp.
MP_API ExceptionText describe_current_exception();

// The stack of this thread's latest throw, one frame a line, innermost first, when the
// program links mp::stacktrace (lib/src/stacktrace.cpp); empty otherwise.
std::string current_throw_traceback() noexcept;

}  // namespace mp::detail
