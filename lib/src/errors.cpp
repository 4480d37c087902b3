#include <mp/errors.hpp>

#include <cxxabi.h>

#include <csignal>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <memory>

#include "exception_text.hpp"

// Defined by mp::stacktrace when the program links it; null otherwise: libmp itself
// needs no Boost library and records no stack.
extern "C" __attribute__((weak)) void mp_throw_traceback(std::string* out) noexcept;

namespace mp {

namespace detail {

std::string demangle(const char* mangled) {
  int status = 0;
  std::unique_ptr<char, decltype(&std::free)> out(
      abi::__cxa_demangle(mangled, nullptr, nullptr, &status), &std::free);
  return status == 0 && out ? std::string(out.get()) : std::string(mangled);
}

ExceptionText describe_current_exception() {
  ExceptionText text{"unknown exception", {}, {}, 0};
  if (auto* type = abi::__cxa_current_exception_type()) text.type = demangle(type->name());
  try {
    throw;
  } catch (const std::exception& e) {
    text.message = e.what();
  } catch (...) {
  }
  return text;
}

std::string current_throw_traceback() noexcept {
  std::string traceback;
  if (mp_throw_traceback) mp_throw_traceback(&traceback);
  return traceback;
}

}  // namespace detail

std::string describe_exitcode(std::optional<int> exitcode) {
  if (!exitcode) return "still running";
  if (*exitcode >= 0) return "exit code " + std::to_string(*exitcode);
  const int sig = -*exitcode;
  const char* abbrev = sigabbrev_np(sig);
  return abbrev ? "killed by SIG" + std::string(abbrev) : "killed by signal " + std::to_string(sig);
}

WorkerLostError::WorkerLostError(pid_t pid, std::optional<int> exitcode)
    : BrokenProcessPool("worker process " + std::to_string(pid) +
                        " died before finishing its task (" + describe_exitcode(exitcode) + ")"),
      pid_(pid),
      exitcode_(exitcode) {}

}  // namespace mp
