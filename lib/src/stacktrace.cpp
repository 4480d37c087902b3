// mp::stacktrace: the stack of every throw, for mp::RemoteError::traceback().
//
// Linking mp::stacktrace into a program puts this file's __cxa_throw in front of the C++
// runtime's: it records the thrower's stack (return addresses only, a few microseconds)
// in a thread-local slot and hands over to the runtime's __cxa_throw. When a pool task
// fails, the worker asks mp_throw_traceback() for the stack of the throw it is handling
// (symbolized then, with file and line where debug information exists) and sends it with
// the error.
//
// A crash (SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGABRT left at their default action) prints
// the stack of the crash point on stderr before the process dies of its signal, so that
// a pool worker's WorkerLostError or a child's -11 exit code has its story.
//
// Why a separate target: the core library must not make every program pay Boost's
// libraries and a stack capture per throw. libmp only declares mp_throw_traceback weak
// (pool_worker.cpp): without this target the reference stays null and errors carry no
// traceback.
#include <dlfcn.h>
#include <unistd.h>

#include <csignal>
#include <cstdio>
#include <cstring>

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

// Symbolizing is not async-signal-safe: a crash inside malloc could leave its lock held
// and the printing blocked. The alarm then ends the process (SIGALRM): it never hangs.
void print_crash_stack(int sig) {
  ::alarm(5);
  char head[128];
  const char* name = ::sigabbrev_np(sig);
  const int length = std::snprintf(head, sizeof head,
                                   "Fatal signal %d (SIG%s) in process %d; stack (most recent "
                                   "call first):\n",
                                   sig, name ? name : "?", static_cast<int>(::getpid()));
  if (length > 0) (void)!::write(STDERR_FILENO, head, static_cast<std::size_t>(length));
  try {
    // Without this handler and libc's signal trampoline: the crash point comes first.
    const std::string text = boost::stacktrace::to_string(
        boost::stacktrace::stacktrace(2, static_cast<std::size_t>(-1)));
    (void)!::write(STDERR_FILENO, text.data(), text.size());
  } catch (...) {
  }
  // SA_RESETHAND has restored the default action: raised again, the signal ends the process.
  ::raise(sig);
}

struct CrashHandlers {
  CrashHandlers() {
    for (const int sig : {SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGABRT}) {
      struct sigaction current {};
      if (::sigaction(sig, nullptr, &current) != 0 || current.sa_handler != SIG_DFL) continue;
      struct sigaction action {};
      action.sa_handler = print_crash_stack;
      action.sa_flags = SA_RESETHAND | SA_NODEFER;
      ::sigemptyset(&action.sa_mask);
      (void)::sigaction(sig, &action, nullptr);
    }
  }
};
const CrashHandlers crash_handlers;

}  // namespace

extern "C" {

// Replaces the C++ runtime's __cxa_throw (the call every `throw` compiles to): the
// reserved name is the point.
// NOLINTNEXTLINE(bugprone-reserved-identifier)
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
