// mp's logger. Mirrors the logging half of Python's `multiprocessing.util`:
// get_logger() and log_to_stderr(level), with Python's levels (SUBDEBUG, DEBUG, INFO,
// SUBWARNING, WARNING, ERROR, CRITICAL) and its line format
// "[INFO/Process-1] child process calling run()".
//
// mp logs what happens to processes: a child starting and exiting, a child reaped and its
// exit code, a pool worker lost and replaced, a lock taken over from a dead owner. User
// code may log through the same logger, in the parent and in children.
//
// Differences from Python, on purpose:
//   - There is no handler object: log_to_stderr() turns on the one handler, stderr, and
//     each message is one write(2), so lines of several processes never interleave.
//   - The level travels to children in the environment variable MP_LOG_LEVEL (a level
//     name such as "debug", or a number), which also turns logging on without a code
//     change: `MP_LOG_LEVEL=debug ./prog`. Off by default.
#pragma once

#include <mp/detail/export.hpp>

#include <string_view>

namespace mp {

// Python's logging levels, and multiprocessing's SUBDEBUG and SUBWARNING.
enum class LogLevel : int {
  subdebug = 5,
  debug = 10,
  info = 20,
  subwarning = 25,
  warning = 30,
  error = 40,
  critical = 50,
};

// The process-wide logger of mp (Python: the "multiprocessing" logger). Thread-safe;
// never throws, never blocks but on stderr.
class MP_API Logger {
 public:
  // Drops messages below `level`. Python: logger.setLevel(level).
  void set_level(LogLevel level) noexcept;
  // The current threshold.
  LogLevel level() const noexcept;
  // Whether a message of `level` would be written (logging on and `level` high enough).
  bool is_enabled_for(LogLevel level) const noexcept;
  // Writes "[LEVEL/ProcessName] message" to stderr if is_enabled_for(level).
  void log(LogLevel level, std::string_view message) const noexcept;
  // log(LogLevel::subdebug, message). Python: multiprocessing.util.sub_debug(msg).
  void subdebug(std::string_view message) const noexcept { log(LogLevel::subdebug, message); }
  // log(LogLevel::debug, message). Python: logger.debug(msg).
  void debug(std::string_view message) const noexcept { log(LogLevel::debug, message); }
  // log(LogLevel::info, message). Python: logger.info(msg).
  void info(std::string_view message) const noexcept { log(LogLevel::info, message); }
  // log(LogLevel::warning, message). Python: logger.warning(msg).
  void warning(std::string_view message) const noexcept { log(LogLevel::warning, message); }
  // log(LogLevel::error, message). Python: logger.error(msg).
  void error(std::string_view message) const noexcept { log(LogLevel::error, message); }
  // log(LogLevel::critical, message). Python: logger.critical(msg).
  void critical(std::string_view message) const noexcept { log(LogLevel::critical, message); }
};

// mp's logger; it writes nothing until log_to_stderr() (or MP_LOG_LEVEL) turns it on.
// Python: multiprocessing.get_logger().
MP_API Logger& get_logger() noexcept;

// Turns logging on: messages of `level` and above go to stderr, in this process and in
// the children it starts afterwards (sets MP_LOG_LEVEL; call it before starting threads
// that read the environment). Python: multiprocessing.log_to_stderr(level).
MP_API Logger& log_to_stderr(LogLevel level = LogLevel::warning);

}  // namespace mp
