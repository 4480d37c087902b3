#include "exec.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <system_error>

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

std::string find_program(const std::string& name) {
  if (name.find('/') != std::string::npos)
    return ::access(name.c_str(), X_OK) == 0 ? name : std::string();
  const char* path = std::getenv("PATH");
  std::string_view dirs = path ? path : "/usr/local/bin:/usr/bin:/bin";
  while (true) {
    const std::size_t colon = dirs.find(':');
    std::string dir(dirs.substr(0, colon));
    if (dir.empty()) dir = ".";
    const std::string candidate = dir + "/" + name;
    if (::access(candidate.c_str(), X_OK) == 0) return candidate;
    if (colon == std::string_view::npos) return {};
    dirs.remove_prefix(colon + 1);
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

int pidfd_open(pid_t pid) { return static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)); }

}  // namespace

Command prepare(std::string text) {
  Command command;
  command.text = std::move(text);
  if (split_words(command.text).empty()) throw std::invalid_argument("--exec needs a command");
  if (!needs_shell(command.text)) {
    command.words = split_words(command.text);
    command.program = find_program(command.words[0]);
    if (command.program.empty())
      throw std::invalid_argument("--exec: command not found: " + command.words[0]);
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
  // Everything the child needs is built before fork: after it, only async-signal-safe
  // calls (the calling worker may have threads).
  std::vector<std::string> args;
  std::string program;
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
  std::vector<char*> argv;
  for (std::string& arg : args) argv.push_back(arg.data());
  argv.push_back(nullptr);

  int out[2];
  if (::pipe2(out, O_CLOEXEC) != 0) throw std::system_error(errno, std::generic_category(), "pipe");
  const pid_t parent = ::getpid();
  const char* path = program.c_str();
  char* const* child_argv = argv.data();
  const int write_end = out[1];
  sigset_t no_signals;
  ::sigemptyset(&no_signals);
  // vfork: the child borrows this process's memory until it execs, so starting a command
  // costs no page-table copy (a pool worker maps a large heap); this thread waits until
  // then. The child only makes system calls, on values prepared above, and never returns.
  const pid_t pid = ::vfork();
  if (pid == 0) {
    ::setpgid(0, 0);  // a timeout kills the command with everything it started
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != parent) ::_exit(127);
    // Pool workers ignore SIGINT; an ignored signal would stay ignored across exec.
    for (int sig : {SIGINT, SIGPIPE, SIGTERM, SIGQUIT, SIGHUP}) ::signal(sig, SIG_DFL);
    ::sigprocmask(SIG_SETMASK, &no_signals, nullptr);
    const int null = ::open("/dev/null", O_RDONLY);
    if (null < 0 || ::dup2(null, 0) < 0 || ::dup2(write_end, 1) < 0) ::_exit(126);
    ::execv(path, child_argv);
    static constexpr char kFailed[] = "mp-map: --exec: could not execute the command\n";
    (void)!::write(2, kFailed, sizeof kFailed - 1);
    ::_exit(127);
  }
  if (pid < 0) {
    const int error = errno;
    ::close(out[0]);
    ::close(out[1]);
    throw std::system_error(error, std::generic_category(), "vfork");
  }
  ::close(out[1]);
  const int pidfd = pidfd_open(pid);

  using Clock = std::chrono::steady_clock;
  const auto deadline = timeout
                            ? Clock::now() + std::chrono::duration_cast<Clock::duration>(*timeout)
                            : Clock::time_point::max();
  auto wait_ms = [&]() -> int {
    if (!timeout) return -1;
    const auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - Clock::now());
    return left.count() <= 0 ? 0 : static_cast<int>(std::min<long long>(left.count(), 1 << 30));
  };
  bool timed_out = false;
  std::string output;
  char buffer[65536];
  // Read stdout to its end, then wait for the exit, both within the deadline.
  for (bool eof = false; !eof;) {
    pollfd fd{out[0], POLLIN, 0};
    const int ready = ::poll(&fd, 1, wait_ms());
    if (ready < 0 && errno == EINTR) continue;
    if (ready == 0) {
      timed_out = true;
      break;
    }
    const ssize_t n = ::read(out[0], buffer, sizeof buffer);
    if (n > 0)
      output.append(buffer, static_cast<std::size_t>(n));
    else if (n == 0 || errno != EINTR)
      eof = true;
  }
  ::close(out[0]);
  if (!timed_out && pidfd >= 0) {
    pollfd fd{pidfd, POLLIN, 0};
    while (true) {
      const int ready = ::poll(&fd, 1, wait_ms());
      if (ready < 0 && errno == EINTR) continue;
      timed_out = ready == 0;
      break;
    }
  }
  if (timed_out) {
    ::kill(-pid, SIGKILL);
    ::kill(pid, SIGKILL);
  }
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (pidfd >= 0) ::close(pidfd);
  if (timed_out) {
    char seconds[32];
    std::snprintf(seconds, sizeof seconds, "%g", timeout->count());
    throw std::runtime_error(std::string("timed out after ") + seconds + " s (killed)");
  }
  if (!(WIFEXITED(status) && WEXITSTATUS(status) == 0))
    throw std::runtime_error("the command failed: " + describe_status(status));
  if (!output.empty() && output.back() == '\n') output.pop_back();
  return output;
}

}  // namespace mp_map
