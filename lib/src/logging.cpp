// mp's logger (<mp/logging.hpp>): a level in an atomic, the process's name in a fixed
// buffer (set by child_main, so that logging never takes the process table's lock),
// and one write(2) per message.
#include <mp/logging.hpp>

#include <unistd.h>

#include <strings.h>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "logging_internal.hpp"

namespace mp {
namespace {

// Above every level: logging off.
constexpr int kOff = 1000;

struct LevelName {
  LogLevel level;
  const char* name;
};
constexpr LevelName kLevelNames[] = {
    {LogLevel::subdebug, "SUBDEBUG"}, {LogLevel::debug, "DEBUG"},
    {LogLevel::info, "INFO"},         {LogLevel::subwarning, "SUBWARNING"},
    {LogLevel::warning, "WARNING"},   {LogLevel::error, "ERROR"},
    {LogLevel::critical, "CRITICAL"},
};

const char* level_name(LogLevel level) {
  for (const auto& entry : kLevelNames)
    if (entry.level == level) return entry.name;
  return "LEVEL";
}

// MP_LOG_LEVEL: a level's name (any case) or a number; logging off if unset or unknown.
int level_from_environment() {
  const char* text = std::getenv("MP_LOG_LEVEL");
  if (!text || !*text) return kOff;
  for (const auto& entry : kLevelNames)
    if (::strcasecmp(text, entry.name) == 0) return static_cast<int>(entry.level);
  char* end = nullptr;
  const long value = std::strtol(text, &end, 10);
  if (end == text || *end != '\0' || value < 0 || value > kOff) return kOff;
  return static_cast<int>(value);
}

std::atomic<int>& threshold() {
  static std::atomic<int> value{level_from_environment()};
  return value;
}

char process_name[64] = "MainProcess";

}  // namespace

void Logger::set_level(LogLevel level) noexcept {
  threshold().store(static_cast<int>(level), std::memory_order_relaxed);
}

LogLevel Logger::level() const noexcept {
  return static_cast<LogLevel>(threshold().load(std::memory_order_relaxed));
}

bool Logger::is_enabled_for(LogLevel level) const noexcept {
  return static_cast<int>(level) >= threshold().load(std::memory_order_relaxed);
}

void Logger::log(LogLevel level, std::string_view message) const noexcept {
  if (!is_enabled_for(level)) return;
  char line[4096];
  int length = std::snprintf(line, sizeof line, "[%s/%s] %.*s\n", level_name(level), process_name,
                             static_cast<int>(message.size()), message.data());
  if (length <= 0) return;
  if (static_cast<std::size_t>(length) >= sizeof line) {  // cut, but still one line
    length = sizeof line - 1;
    line[length - 1] = '\n';
  }
  (void)!::write(STDERR_FILENO, line, static_cast<std::size_t>(length));
}

Logger& get_logger() noexcept {
  static Logger logger;
  return logger;
}

Logger& log_to_stderr(LogLevel level) {
  Logger& logger = get_logger();
  logger.set_level(level);
  ::setenv("MP_LOG_LEVEL", std::to_string(static_cast<int>(level)).c_str(), 1);
  return logger;
}

namespace detail {

void set_log_process_name(const std::string& name) noexcept {
  std::snprintf(process_name, sizeof process_name, "%s", name.c_str());
}

}  // namespace detail
}  // namespace mp
