// mp::stacktrace: the stack of every throw, for mp::RemoteError::traceback().
//
// Linking mp::stacktrace into a program puts this file's __cxa_throw in front of the C++
// runtime's: it records the thrower's stack (return addresses only, a few microseconds)
// in a thread-local slot and hands over to the runtime's __cxa_throw. When a pool task
// fails, the worker asks mp_throw_traceback() for the stack of the throw it is handling
// (symbolized then, with file and line where debug information exists) and sends it with
// the error.
//
// Why a separate target: the core library must not make every program pay Boost's
// libraries and a stack capture per throw. libmp only declares mp_throw_traceback weak
// (pool_worker.cpp): without this target the reference stays null and errors carry no
// traceback.
#include <dlfcn.h>

#include <boost/stacktrace.hpp>

#include <mp/detail/export.hpp>

#include <cstdlib>
#include <string>

namespace {

thread_local boost::stacktrace::stacktrace last_throw;

// As the compiler declares it (the type is a std::type_info*).
using CxaThrow = void (*)(void*, void*, void (*)(void*));

CxaThrow runtime_cxa_throw() {
  static const auto next = reinterpret_cast<CxaThrow>(::dlsym(RTLD_NEXT, "__cxa_throw"));
  if (!next) std::abort();  // no C++ runtime behind us: nothing can be thrown
  return next;
}

}  // namespace

extern "C" {

// Replaces the C++ runtime's __cxa_throw (the call every `throw` compiles to).
[[noreturn]] MP_API void __cxa_throw(void* exception, void* type, void (*destructor)(void*)) {
  try {
    last_throw = boost::stacktrace::stacktrace(1, static_cast<std::size_t>(-1));
  } catch (...) {
    last_throw = {};  // no memory for the frames: throw without them
  }
  runtime_cxa_throw()(exception, type, destructor);
  __builtin_unreachable();
}

// The stack of this thread's latest throw, one frame a line, into `out`. Called by
// libmp's pool worker while it handles a task's exception.
MP_API void mp_throw_traceback(std::string* out) noexcept {
  try {
    *out = boost::stacktrace::to_string(last_throw);
  } catch (...) {
    out->clear();
  }
}

}  // extern "C"
