#include "exec.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <system_error>
#include <utility>

#include "launcher.hpp"
#include "text.hpp"

namespace mp_map {
namespace {

// Characters after which a template needs a shell: quoting, expansion, redirection,
// pipes, lists, globbing, comments.
constexpr std::string_view kShellSpecial = "\"'\\$`|&;<>()*?[]#~=%!{}\n";

bool needs_shell(std::string_view text) {
  // "{}" is ours, not the shell's: look at the template with it removed.
  std::string rest(text);
  for (std::size_t at; (at = rest.find("{}")) != std::string::npos;) rest.replace(at, 2, " ");
  return rest.find_first_of(kShellSpecial) != std::string::npos;
}

std::vector<std::string> split_words(std::string_view text) {
  std::vector<std::string> words;
  std::string word;
  for (char c : text) {
    if (c == ' ' || c == '\t') {
      if (!word.empty()) words.push_back(std::move(word));
      word.clear();
    } else {
      word.push_back(c);
    }
  }
  if (!word.empty()) words.push_back(std::move(word));
  return words;
}

// Whether `path` is what execve can run: an executable regular file (a directory has
// the x bit too, and execvp passes over it).
bool is_executable_file(const std::string& path) {
  struct stat info {};
  return ::stat(path.c_str(), &info) == 0 && S_ISREG(info.st_mode) &&
         ::access(path.c_str(), X_OK) == 0;
}

// The program `name` names, found as execvp finds it: a name with a '/' is a path; else
// the first executable regular file of that name in PATH. Throws std::invalid_argument
// saying why there is none.
std::string find_program(const std::string& name) {
  if (name.find('/') != std::string::npos) {
    if (is_executable_file(name)) return name;
    struct stat info {};
    const char* why = ::stat(name.c_str(), &info) != 0 ? std::strerror(errno)
                      : S_ISDIR(info.st_mode)          ? "is a directory"
                      : !S_ISREG(info.st_mode)         ? "not a regular file"
                                                       : "not executable";
    throw std::invalid_argument("--exec: cannot run " + shown(name) + ": " + why);
  }
  const char* path = std::getenv("PATH");
  std::string_view dirs = path ? path : "/usr/local/bin:/usr/bin:/bin";
  while (true) {
    const std::size_t colon = dirs.find(':');
    std::string dir(dirs.substr(0, colon));
    if (dir.empty()) dir = ".";
    const std::string candidate = dir + "/" + name;
    if (is_executable_file(candidate)) return candidate;
    if (colon == std::string_view::npos) break;
    dirs.remove_prefix(colon + 1);
  }
  throw std::invalid_argument("--exec: command not found: " + shown(name) +
                              " (no executable file of that name in PATH)");
}

// Refuses a shell template where {} stands inside quotes, or right after a backslash or
// a '$', or in a here-document: mp-map single-quotes the item itself, and the user's own quoting
// around it would close and reopen those quotes, letting the item's text run as shell code
// (`echo '{}'` with the item `$(touch x)` runs touch). Follows the shell's quoting:
// single and double quotes, backslashes, $(...) and `...` (inside which quoting starts
// anew), comments. Throws std::invalid_argument.
void check_placeholders(std::string_view text) {
  // Contexts: 'u' unquoted (also inside $(...) and (...)), 's' single quotes,
  // 'd' double quotes, 'c' $(...), 'p' (...), 'b' `...`.
  std::string stack = "u";
  auto refuse = [](const char* where) {
    throw std::invalid_argument(
        std::string("--exec: {} stands ") + where +
        "; mp-map quotes each item itself, so leave {} unquoted (--exec 'echo {}', not "
        "--exec \"echo '{}'\"): quotes around it would let the item's text run as shell code");
  };
  bool word_start = true;
  for (std::size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    const char top = stack.back();
    const bool placeholder = text.substr(i, 2) == "{}";
    if (top == 's') {
      if (placeholder) refuse("inside single quotes");
      if (c == '\'') stack.pop_back();
      continue;
    }
    if (top == 'd') {
      if (placeholder) refuse("inside double quotes");
      if (c == '\\') {
        ++i;
      } else if (c == '"') {
        stack.pop_back();
      } else if (c == '`') {
        stack.push_back('b');
      } else if (c == '$' && i + 1 < text.size() && text[i + 1] == '(') {
        stack.push_back('c');
        ++i;
      }
      continue;
    }
    // Unquoted: at the top level, or inside $(...), (...) or `...`.
    const bool was_word_start = word_start;
    word_start = c == ' ' || c == '\t' || c == '\n' || c == ';' || c == '&' || c == '|' ||
                 c == '(' || c == ')';
    if (c == '\\') {
      if (text.substr(i + 1, 2) == "{}") refuse("right after a backslash");
      ++i;
    } else if (c == '$' && text.substr(i + 1, 2) == "{}") {
      refuse("right after a '$'");
    } else if (c == '<' && text.substr(i + 1, 1) == "<" &&
               text.find("{}", i) != std::string_view::npos) {
      // A here-document's text is expanded ($(...) included) whatever quotes it holds.
      refuse("after a here-document (<<)");
    } else if (c == '#' && was_word_start) {
      while (i + 1 < text.size() && text[i + 1] != '\n') ++i;  // a comment
    } else if (c == '\'') {
      stack.push_back('s');
    } else if (c == '"') {
      stack.push_back('d');
    } else if (c == '`') {
      if (top == 'b')
        stack.pop_back();
      else
        stack.push_back('b');
    } else if (c == '$' && i + 1 < text.size() && text[i + 1] == '(') {
      stack.push_back('c');
      ++i;
      word_start = true;
    } else if (c == '(') {
      stack.push_back('p');
    } else if (c == ')' && (top == 'c' || top == 'p')) {
      stack.pop_back();
    }
  }
}

std::string replace_all(std::string_view text, std::string_view with) {
  std::string out;
  for (std::size_t at = 0;;) {
    const std::size_t next = text.find("{}", at);
    out.append(text.substr(at, next - at));
    if (next == std::string_view::npos) return out;
    out.append(with);
    at = next + 2;
  }
}

std::string quote_for_sh(std::string_view item) {
  std::string out = "'";
  for (char c : item) {
    if (c == '\'')
      out += "'\\''";
    else
      out.push_back(c);
  }
  out.push_back('\'');
  return out;
}

std::string describe_status(int status) {
  if (WIFEXITED(status)) return "exit status " + std::to_string(WEXITSTATUS(status));
  if (WIFSIGNALED(status)) {
    const char* name = ::sigabbrev_np(WTERMSIG(status));
    return "killed by signal " + std::to_string(WTERMSIG(status)) +
           (name ? std::string(" (SIG") + name + ")" : std::string());
  }
  return "ended with status " + std::to_string(status);
}

// A descriptor, closed when it goes.
class Fd {
 public:
  explicit Fd(int fd = -1) noexcept : fd_(fd) {}
  Fd(Fd&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
  Fd& operator=(Fd&& other) noexcept {
    if (this != &other) {
      reset();
      fd_ = std::exchange(other.fd_, -1);
    }
    return *this;
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  ~Fd() { reset(); }
  int get() const noexcept { return fd_; }
  void reset() noexcept {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }

 private:
  int fd_;
};

// The longest string one argument of a command can be (Linux's MAX_ARG_STRLEN, 32
// pages, counts the terminating NUL).
std::size_t max_argument_length() {
  const long page = ::sysconf(_SC_PAGESIZE);
  return 32 * static_cast<std::size_t>(page > 0 ? page : 4096) - 1;
}

// The program and arguments that run `command` for `item`. Throws std::runtime_error
// for an item that no command argument can carry (a NUL byte, or too long).
std::vector<std::string> command_args(const Command& command, std::string_view item,
                                      std::string& program) {
  if (item.find('\0') != std::string_view::npos)
    throw std::runtime_error(
        "the item holds a NUL byte, which no command argument can carry (not run)");
  std::vector<std::string> args;
  if (!command.program.empty()) {
    program = command.program;
    bool substituted = false;
    for (const std::string& word : command.words) {
      args.push_back(replace_all(word, item));
      substituted = substituted || word.find("{}") != std::string::npos;
    }
    if (!substituted) args.emplace_back(item);
  } else {
    program = "/bin/sh";
    args = {"sh", "-c", shell_line(command.text, item)};
  }
  const std::size_t limit = max_argument_length();
  for (const std::string& arg : args)
    if (arg.size() > limit)
      throw std::runtime_error(
          "the item is too long to pass to a command: it makes an argument of " +
          std::to_string(arg.size()) + " bytes, and the system takes at most " +
          std::to_string(limit) + " per argument (not run)");
  return args;
}

// Starts the command through the launcher; returns the read end of its stdout.
Fd start_command(const std::string& program, const std::vector<std::string>& args) {
  int ends[2];
  if (::pipe2(ends, O_CLOEXEC) != 0)
    throw std::system_error(errno, std::generic_category(), "starting the command: pipe");
  Fd read_end(ends[0]);
  Fd write_end(ends[1]);
  launcher::start(program, args, write_end.get());
  return read_end;  // the write end closes here: the command holds the only copy
}

struct Outcome {
  std::string output;  // everything the command wrote to stdout
  int status = 0;      // its wait status
  bool timed_out = false;
};

// Reads the command's stdout until it ends and the launcher has reported the command's
// end (after which every writer is gone); on the deadline, has the launcher kill the
// command and everything it started, and still waits for the report.
Outcome drain(const Fd& out, std::optional<std::chrono::duration<double>> timeout) {
  using Clock = std::chrono::steady_clock;
  const auto deadline = timeout
                            ? Clock::now() + std::chrono::duration_cast<Clock::duration>(*timeout)
                            : Clock::time_point::max();
  auto wait_ms = [&]() -> int {
    if (!timeout) return -1;
    const auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - Clock::now());
    return left.count() <= 0 ? 0 : static_cast<int>(std::min<long long>(left.count(), 1 << 30));
  };
  Outcome outcome;
  bool ended = false;  // the launcher has reported: the command and its descendants are gone
  bool eof = false;
  char buffer[65536];
  while (!eof || !ended) {
    pollfd fds[2];
    nfds_t count = 0;
    if (!eof) fds[count++] = {out.get(), POLLIN, 0};
    if (!ended) fds[count++] = {launcher::event_fd(), POLLIN, 0};
    const int ready = ::poll(fds, count, outcome.timed_out || ended ? -1 : wait_ms());
    if (ready < 0 && errno == EINTR) continue;
    if (ready == 0) {  // the deadline: kill, then wait for the report as usual
      outcome.timed_out = true;
      launcher::kill_command();
      continue;
    }
    if (!eof && fds[0].revents != 0) {
      const ssize_t n = ::read(out.get(), buffer, sizeof buffer);
      if (n > 0)
        outcome.output.append(buffer, static_cast<std::size_t>(n));
      else if (n == 0 || errno != EINTR)
        eof = true;
    }
    if (!ended && fds[count - 1].revents != 0) {
      outcome.status = launcher::finish();
      ended = true;
    }
  }
  return outcome;
}

}  // namespace

Command prepare(std::string text) {
  Command command;
  command.text = std::move(text);
  if (split_words(command.text).empty()) throw std::invalid_argument("--exec needs a command");
  if (!needs_shell(command.text)) {
    command.words = split_words(command.text);
    command.program = find_program(command.words[0]);
  } else {
    check_placeholders(command.text);
  }
  return command;
}

std::string shell_line(std::string_view text, std::string_view item) {
  const std::string quoted = quote_for_sh(item);
  if (text.find("{}") == std::string_view::npos) return std::string(text) + " " + quoted;
  return replace_all(text, quoted);
}

std::string run(const Command& command, std::string_view item,
                std::optional<std::chrono::duration<double>> timeout) {
  std::string program;
  const std::vector<std::string> args = command_args(command, item, program);
  Fd out = start_command(program, args);
  const Outcome outcome = drain(out, timeout);
  if (outcome.timed_out) {
    char seconds[32];
    std::snprintf(seconds, sizeof seconds, "%g", timeout->count());
    throw std::runtime_error(std::string("timed out after ") + seconds + " s (killed)");
  }
  if (!(WIFEXITED(outcome.status) && WEXITSTATUS(outcome.status) == 0))
    throw std::runtime_error("the command failed: " + describe_status(outcome.status));
  std::string output = std::move(outcome.output);
  if (!output.empty() && output.back() == '\n') output.pop_back();
  return output;
}

}  // namespace mp_map
