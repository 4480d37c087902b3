#include "launcher.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <system_error>

namespace mp_map::launcher {
namespace {

// From a worker to its launcher. 'S' (start) is followed by `size` bytes: the program's
// path and then `argc` arguments, each ending in '\0'; the command's stdout travels with
// it as SCM_RIGHTS. 'K' kills the running command and its descendants.
struct Request {
  std::uint32_t kind = 0;
  std::uint32_t argc = 0;
  std::uint64_t size = 0;
};

// From the launcher: 'E' the command ended (value: its wait status, reported after its
// leftover descendants were killed and reaped); 'F' it could not be started (value: the
// errno of `step`: 'f' vfork, 'x' execv).
struct Reply {
  std::int32_t kind = 0;
  std::int32_t value = 0;
  std::int32_t step = 0;
  std::int32_t unused = 0;
};

// Far above what execve takes (its arguments' total is a fraction of the stack limit).
constexpr std::uint64_t kMaxRequest = std::uint64_t{1} << 30;

// ---- the launcher's side ----
//
// The launcher is forked from a worker that may have other threads, so until it execs a
// command it makes system calls only: no allocation, no locks. It has one thread, so
// static buffers are its own.

constexpr int kSocket = 3;  // where the launcher keeps its end of the socket

pid_t g_pids[8192];  // the processes found in one pass over the subtree
char g_text[16384];  // a /proc children file, read in pieces

// Reads exactly `size` bytes; a descriptor passed along is stored in *passed (when not
// null). False at end-of-file or on an error.
bool receive(int fd, void* data, std::size_t size, int* passed) {
  auto* at = static_cast<char*>(data);
  while (size > 0) {
    iovec part{at, size};
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))];
    msghdr message{};
    message.msg_iov = &part;
    message.msg_iovlen = 1;
    message.msg_control = control;
    message.msg_controllen = sizeof control;
    const ssize_t n = ::recvmsg(fd, &message, MSG_CMSG_CLOEXEC);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    for (cmsghdr* c = CMSG_FIRSTHDR(&message); c; c = CMSG_NXTHDR(&message, c)) {
      if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
      int fd_received;
      std::memcpy(&fd_received, CMSG_DATA(c), sizeof fd_received);
      if (passed && *passed < 0)
        *passed = fd_received;
      else
        ::close(fd_received);
    }
    at += n;
    size -= static_cast<std::size_t>(n);
  }
  return true;
}

char* append_number(char* out, long value) {
  char digits[24];
  int n = 0;
  do {
    digits[n++] = static_cast<char>('0' + value % 10);
    value /= 10;
  } while (value != 0);
  while (n > 0) *out++ = digits[--n];
  return out;
}

// Appends to `out` (room for `room`) the children of `pid`'s main thread, as
// /proc/PID/task/PID/children lists them; returns how many. Children of its other
// threads are found on the next pass, once their parent died and they were
// re-parented to the launcher.
std::size_t read_children(pid_t pid, pid_t* out, std::size_t room) {
  char path[80] = "/proc/";
  char* end = append_number(path + 6, pid);
  std::memcpy(end, "/task/", 6);
  end = append_number(end + 6, pid);
  std::memcpy(end, "/children", 10);
  const int fd = ::open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return 0;
  std::size_t count = 0;
  long value = -1;
  while (true) {
    const ssize_t n = ::read(fd, g_text, sizeof g_text);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    for (ssize_t i = 0; i < n; ++i) {
      const char c = g_text[i];
      if (c >= '0' && c <= '9') {
        value = (value < 0 ? 0 : value * 10) + (c - '0');
      } else if (value >= 0) {
        if (count < room) out[count++] = static_cast<pid_t>(value);
        value = -1;
      }
    }
  }
  if (value >= 0 && count < room) out[count++] = static_cast<pid_t>(value);
  ::close(fd);
  return count;
}

// Kills every descendant of the launcher and reaps them; if `command` is among them,
// its status goes to *status and *ended is set. Each pass kills the whole tree it finds
// (a killed process forks no more); what a process forked meanwhile is re-parented to
// the launcher (a subreaper) when its parent dies, and found by the next pass.
void kill_descendants(pid_t command, int* status, bool* ended) {
  const pid_t self = ::getpid();
  while (true) {
    constexpr std::size_t kRoom = sizeof g_pids / sizeof g_pids[0];
    std::size_t found = read_children(self, g_pids, kRoom);
    if (found == 0) {
      // Nothing listed: no children, or /proc is not readable; then kill the command
      // at least, and reap what can be reaped.
      if (command > 0 && !*ended) ::kill(command, SIGKILL);
      int reaped_status = 0;
      pid_t reaped;
      while ((reaped = ::waitpid(-1, &reaped_status, command > 0 && !*ended ? 0 : WNOHANG)) > 0) {
        if (reaped == command) {
          *status = reaped_status;
          *ended = true;
        }
      }
      return;
    }
    for (std::size_t i = 0; i < found; ++i) {
      ::kill(g_pids[i], SIGKILL);
      found += read_children(g_pids[i], g_pids + found, kRoom - found);
    }
    // At least one direct child was killed: wait for one, then reap what else ended.
    int reaped_status = 0;
    for (int options = 0;; options = WNOHANG) {
      const pid_t reaped = ::waitpid(-1, &reaped_status, options);
      if (reaped < 0 && errno == EINTR) continue;
      if (reaped <= 0) break;
      if (reaped == command) {
        *status = reaped_status;
        *ended = true;
      }
    }
  }
}

[[noreturn]] void clean_up_and_exit() {
  int status = 0;
  bool ended = false;
  kill_descendants(0, &status, &ended);
  ::_exit(0);
}

void reply(const Reply& message) {
  const char* at = reinterpret_cast<const char*>(&message);
  std::size_t left = sizeof message;
  while (left > 0) {
    const ssize_t n = ::send(kSocket, at, left, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) clean_up_and_exit();  // the worker is gone
    at += n;
    left -= static_cast<std::size_t>(n);
  }
}

// Signals that a terminal or `kill` sends to a whole process group, or that nobody
// expects: the launcher ignores them, to live until its cleanup is done. Its commands
// get the default actions back.
constexpr int kIgnored[] = {SIGHUP,  SIGINT,  SIGQUIT, SIGTERM,   SIGPIPE,
                            SIGUSR1, SIGUSR2, SIGALRM, SIGVTALRM, SIGPROF};

// A descriptor the launcher closes when it goes out of scope (no allocation: safe in
// the launcher).
class ScopedFd {
 public:
  explicit ScopedFd(int fd) noexcept : fd_(fd) {}
  ~ScopedFd() {
    if (fd_ >= 0) ::close(fd_);
  }
  ScopedFd(const ScopedFd&) = delete;
  ScopedFd& operator=(const ScopedFd&) = delete;
  int get() const noexcept { return fd_; }

 private:
  int fd_;
};

// Starts the command: stdin from /dev/null (the launcher's own), stdout to `stdout_fd`,
// the default signal actions and an empty signal mask. Returns its pid, or -1 after
// replying why it could not start.
pid_t start_command(const char* program, char* const* argv, const ScopedFd& stdout_fd) {
  volatile int exec_error = 0;  // written by the vforked child, which shares this memory
  // vfork: the launcher is a copy of a worker that may map a large heap; the child
  // borrows it until it execs, so starting a command costs no page-table copy.
  const pid_t pid = ::vfork();
  if (pid == 0) {
    // The command dies with the launcher, should the launcher ever be killed itself.
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    for (int sig : kIgnored) ::signal(sig, SIG_DFL);
    sigset_t none;
    ::sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    if (::dup2(stdout_fd.get(), 1) < 0) {
      exec_error = errno;
      ::_exit(127);
    }
    ::execv(program, argv);
    exec_error = errno;
    ::_exit(127);
  }
  if (pid < 0) {
    reply({'F', errno, 'f', 0});
    return -1;
  }
  if (exec_error != 0) {
    int status = 0;
    while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    reply({'F', exec_error, 'x', 0});
    return -1;
  }
  return pid;
}

// Waits for the command to end, killing it and everything it started if the worker
// asks ('K'); returns its wait status.
int wait_or_kill(pid_t pid) {
  const ScopedFd pidfd(static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)));
  int status = 0;
  bool ended = false;
  while (!ended) {
    pollfd fds[2] = {{kSocket, POLLIN, 0}, {pidfd.get(), POLLIN, 0}};
    // Without a pidfd (a kernel before 5.3), look at the command every 20 ms.
    const int ready = ::poll(fds, pidfd.get() >= 0 ? 2 : 1, pidfd.get() >= 0 ? -1 : 20);
    if (ready < 0 && errno != EINTR) {  // cannot poll: wait for the command alone
      while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
      }
      return status;
    }
    if (ready > 0 && fds[0].revents != 0) {
      Request request;
      int passed = -1;
      if (!receive(kSocket, &request, sizeof request, &passed)) clean_up_and_exit();
      if (passed >= 0) ::close(passed);
      if (request.kind == 'K') kill_descendants(pid, &status, &ended);
    }
    if (!ended && ::waitpid(pid, &status, WNOHANG) == pid) ended = true;
  }
  return status;
}

// Reaps what the command left behind that already ended, and kills the rest.
void reap_leftovers() {
  pid_t reaped;
  int status = 0;
  while ((reaped = ::waitpid(-1, &status, WNOHANG)) > 0) {
  }
  bool ended = false;
  if (reaped == 0) kill_descendants(0, &status, &ended);
}

// Runs one command to its end and replies with its status (or why it could not start),
// once nothing it started is left.
void run_command(const char* program, char* const* argv, int stdout_fd) {
  pid_t pid;
  {
    const ScopedFd out(stdout_fd);  // the command's copy is its own; ours closes here
    pid = start_command(program, argv, out);
  }
  if (pid < 0) return;
  const int status = wait_or_kill(pid);
  reap_leftovers();
  reply({'E', status, 0, 0});
}

[[noreturn]] void serve(int socket_fd) {
  ::prctl(PR_SET_CHILD_SUBREAPER, 1);
  ::prctl(PR_SET_NAME, "mp-map-launch");
  // Handlers copied from the worker are the worker's business: back to the defaults.
  for (int sig = 1; sig < NSIG; ++sig) {
    struct sigaction action {};
    if (::sigaction(sig, nullptr, &action) == 0 && action.sa_handler != SIG_DFL &&
        action.sa_handler != SIG_IGN)
      ::signal(sig, SIG_DFL);
  }
  for (int sig : kIgnored) ::signal(sig, SIG_IGN);
  sigset_t none;
  ::sigemptyset(&none);
  ::sigprocmask(SIG_SETMASK, &none, nullptr);
  // Keep stdin, stdout, stderr and the socket; nothing else of the worker's.
  if (socket_fd != kSocket) {
    ::dup3(socket_fd, kSocket, O_CLOEXEC);
    ::close(socket_fd);
  }
  if (::syscall(SYS_close_range, kSocket + 1, ~0U, 0) != 0)
    for (int fd = kSocket + 1; fd < 65536; ++fd) ::close(fd);
  // stdin and stdout become /dev/null: the commands' stdin, and the launcher keeps no
  // copy of mp-map's stdout (a reader waits for its end). stderr stays the commands'.
  const int devnull = ::open("/dev/null", O_RDWR);
  if (devnull >= 0) {
    ::dup2(devnull, 0);
    ::dup2(devnull, 1);
    if (devnull > 2) ::close(devnull);
  }

  while (true) {
    Request request;
    int stdout_fd = -1;
    if (!receive(kSocket, &request, sizeof request, &stdout_fd)) clean_up_and_exit();
    if (request.kind == 'K') {  // the command it meant has already ended
      if (stdout_fd >= 0) ::close(stdout_fd);
      continue;
    }
    if (request.kind != 'S' || stdout_fd < 0 || request.size > kMaxRequest || request.argc == 0 ||
        request.argc > request.size)
      clean_up_and_exit();  // not our worker speaking
    const std::size_t pointers = (request.argc + 1) * sizeof(char*);
    const std::size_t length = pointers + request.size + 1;
    void* memory =
        ::mmap(nullptr, length, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (memory == MAP_FAILED) {
      const int error = errno;
      ::close(stdout_fd);
      char sink[4096];
      for (std::uint64_t left = request.size; left > 0;) {
        const std::size_t piece = left < sizeof sink ? left : sizeof sink;
        if (!receive(kSocket, sink, piece, nullptr)) clean_up_and_exit();
        left -= piece;
      }
      reply({'F', error, 'f', 0});
      continue;
    }
    auto** argv = static_cast<char**>(memory);
    char* text = static_cast<char*>(memory) + pointers;
    if (!receive(kSocket, text, request.size, nullptr)) clean_up_and_exit();
    text[request.size] = '\0';
    // program, then argc arguments, each ending in '\0'
    char* at = text;
    char* const end = text + request.size;
    const char* program = at;
    at += std::strlen(at) + 1;
    std::uint32_t argc = 0;
    for (; argc < request.argc && at < end; ++argc) {
      argv[argc] = at;
      at += std::strlen(at) + 1;
    }
    argv[argc] = nullptr;
    if (argc != request.argc) clean_up_and_exit();
    run_command(program, argv, stdout_fd);
    ::munmap(memory, length);
  }
}

// ---- the worker's side ----

struct Handle {
  pid_t owner = 0;      // the process this handle belongs to (a fork inherits a copy)
  pid_t pid = 0;        // the launcher
  int fd = -1;          // our end of the socket
  std::string program;  // of the running command, for messages
};
Handle g_launcher;

// The launcher is gone (it closed the socket or a send failed): reap it, forget it.
void forget_launcher() {
  if (g_launcher.fd >= 0) ::close(g_launcher.fd);
  if (g_launcher.pid > 0)
    while (::waitpid(g_launcher.pid, nullptr, 0) < 0 && errno == EINTR) {
    }
  g_launcher.fd = -1;
  g_launcher.pid = 0;
}

void ensure_launcher() {
  if (g_launcher.owner != ::getpid()) {
    // A copy inherited through fork belongs to the parent's launcher: let it go.
    if (g_launcher.fd >= 0) ::close(g_launcher.fd);
    g_launcher = {};
    g_launcher.owner = ::getpid();
  }
  if (g_launcher.fd >= 0) return;
  int ends[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, ends) != 0)
    throw std::system_error(errno, std::generic_category(),
                            "starting the command launcher: socketpair");
  const pid_t pid = ::fork();
  if (pid == 0) {
    ::close(ends[0]);
    serve(ends[1]);
  }
  const int error = errno;
  ::close(ends[1]);
  if (pid < 0) {
    ::close(ends[0]);
    throw std::system_error(error, std::generic_category(), "starting the command launcher");
  }
  g_launcher.pid = pid;
  g_launcher.fd = ends[0];
}

// Sends a request (and the payload, and a descriptor); false if the launcher is gone.
bool send_request(const Request& request, const std::string& payload, int passed) {
  iovec parts[2] = {{const_cast<Request*>(&request), sizeof request},
                    {const_cast<char*>(payload.data()), payload.size()}};
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))] = {};
  msghdr message{};
  message.msg_iov = parts;
  message.msg_iovlen = payload.empty() ? 1 : 2;
  if (passed >= 0) {
    message.msg_control = control;
    message.msg_controllen = sizeof control;
    cmsghdr* c = CMSG_FIRSTHDR(&message);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int));
    std::memcpy(CMSG_DATA(c), &passed, sizeof passed);
  }
  ssize_t sent;
  while ((sent = ::sendmsg(g_launcher.fd, &message, MSG_NOSIGNAL)) < 0 && errno == EINTR) {
  }
  if (sent < 0) return false;
  // The rest, if the socket took only part of it (the descriptor went with the first).
  std::size_t done = static_cast<std::size_t>(sent);
  const std::size_t total = sizeof request + payload.size();
  while (done < total) {
    const char* at = done < sizeof request ? reinterpret_cast<const char*>(&request) + done
                                           : payload.data() + (done - sizeof request);
    const std::size_t left =
        done < sizeof request ? sizeof request - done : payload.size() - (done - sizeof request);
    const ssize_t n = ::send(g_launcher.fd, at, left, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    done += static_cast<std::size_t>(n);
  }
  return true;
}

}  // namespace

void start(const std::string& program, const std::vector<std::string>& args, int stdout_fd) {
  std::string payload = program;
  payload.push_back('\0');
  for (const std::string& arg : args) {
    payload += arg;
    payload.push_back('\0');
  }
  const Request request{'S', static_cast<std::uint32_t>(args.size()), payload.size()};
  // A launcher that died since the last command (someone killed it) is replaced once.
  for (int attempt = 0;; ++attempt) {
    ensure_launcher();
    g_launcher.program = program;
    if (send_request(request, payload, stdout_fd)) return;
    const int error = errno;
    forget_launcher();
    if (attempt == 1)
      throw std::system_error(error, std::generic_category(),
                              "starting the command: the command launcher is gone");
  }
}

int event_fd() { return g_launcher.fd; }

void kill_command() {
  if (g_launcher.fd >= 0) (void)send_request(Request{'K', 0, 0}, std::string(), -1);
}

int finish() {
  Reply message;
  char* at = reinterpret_cast<char*>(&message);
  for (std::size_t left = sizeof message; left > 0;) {
    const ssize_t n = ::recv(g_launcher.fd, at, left, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      forget_launcher();
      throw std::runtime_error("the command's launcher process died while running it");
    }
    at += n;
    left -= static_cast<std::size_t>(n);
  }
  if (message.kind == 'F')
    throw std::system_error(message.value, std::generic_category(),
                            message.step == 'x'
                                ? "starting the command: execv " + g_launcher.program
                                : std::string("starting the command"));
  return message.value;
}

}  // namespace mp_map::launcher
