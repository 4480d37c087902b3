// The fork server, both sides: see forkserver.hpp for the design and the protocol.
#include "forkserver.hpp"

#include <fcntl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <poll.h>
#include <cerrno>
#include <charconv>
#include <csignal>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <string>
#include <string_view>
#include <system_error>
#include <tuple>

#include <mp/detail/code_ref.hpp>
#include <mp/errors.hpp>
#include <mp/pickle.hpp>

#include <mp/detail/heap.hpp>

#include "heap_arena.hpp"
#include "posix/pidfd.hpp"
#include "posix/socket.hpp"
#include "posix/spawn.hpp"

namespace mp::detail {
namespace {

using Preload = void (*)();
constexpr int kControlFd = 3;
// Control records are small; a larger one is corrupt.
constexpr std::size_t kMaxRecord = 64 << 10;

// Receives one record from the control socket; an empty `data` is end of file.
// (Callers are the server's one thread and the parent under the client's mutex.)
std::error_code recv_record(int socket, std::string& data, posix::unique_fd& fd) noexcept {
  static char buffer[kMaxRecord];
  std::size_t got = 0;
  const auto ec = posix::recv_with_fd(socket, buffer, sizeof buffer, got, fd);
  try {
    data.assign(buffer, ec ? 0 : got);
  } catch (...) {
    return std::make_error_code(std::errc::not_enough_memory);
  }
  return ec;
}

std::string with_int(char tag, std::int32_t value) {
  std::string out(1, tag);
  out.append(reinterpret_cast<const char*>(&value), sizeof value);
  return out;
}

// ---- the parent's side -----------------------------------------------------------------

struct Client {
  std::mutex mutex;
  posix::unique_fd control;
  pid_t server = 0;
  std::vector<Preload> preload;
};

Client& client() {
  static Client* c = new Client;  // leaked: children outlive static destruction
  return *c;
}

[[noreturn]] void fail(const std::string& what, std::error_code ec = {}) {
  if (!ec) ec = std::make_error_code(std::errc::connection_aborted);
  throw std::system_error(ec, "mp: fork server: " + what);
}

// Reaps a server that has ended (or is made to), so that it leaves no zombie.
void retire_server(Client& c) noexcept {
  c.control.reset();
  if (c.server > 0) kill_and_reap(c.server);
  c.server = 0;
}

// Starts the server; c.mutex is held.
void start_server(Client& c) {
  retire_server(c);
  heap_ensure();
  posix::unique_fd ours, theirs;
  if (auto ec = posix::socket_pair(ours, theirs, /*seqpacket=*/true)) fail("socketpair", ec);
  std::string exe;
  if (auto ec = posix::self_executable(exe)) fail("readlink /proc/self/exe", ec);
  const std::string hello = "H" + pickle::dumps(std::tuple<std::string, std::string, std::int32_t>(
                                      main_module_id(), pickle::dumps(c.preload), ::getpid()));
  flush_std_streams();
  pid_t pid = 0;
  if (auto ec = posix::spawn_with_fd(exe, {kForkServerFlag, std::to_string(kControlFd)},
                                     theirs.get(), kControlFd, pid))
    fail("posix_spawn " + exe, ec);
  theirs.reset();
  c.server = pid;
  c.control = std::move(ours);
  std::string answer;
  posix::unique_fd none;
  std::error_code ec = posix::send_with_fd(c.control.get(), hello, heap_main_fd());
  if (!ec) ec = recv_record(c.control.get(), answer, none);
  if (ec || answer != "R") {
    retire_server(c);
    if (!answer.empty() && answer[0] == 'E') fail("cannot start: " + answer.substr(1));
    fail("cannot start (did main() call mp::freeze_support(argc, argv) first?)", ec);
  }
}

// Sends a request for a child with channel `theirs`, starting the server if needed and
// restarting it once if it has died.
void request_child(int theirs, bool daemon) {
  auto& c = client();
  std::lock_guard lock(c.mutex);
  const char request[2] = {'Q', static_cast<char>(daemon ? 1 : 0)};
  for (int attempt = 0;; ++attempt) {
    if (!c.control) start_server(c);
    const auto ec = posix::send_with_fd(c.control.get(), std::string_view(request, 2), theirs);
    if (!ec) return;
    if (attempt > 0) fail("request", ec);
    retire_server(c);  // died: start another
  }
}

std::int32_t read_int(int fd) {
  std::int32_t value = 0;
  if (auto ec = posix::read_exact(fd, &value, sizeof value)) fail("reading its answer", ec);
  return value;
}

// ---- the server's side -----------------------------------------------------------------

struct Served {
  pid_t pid;
  int pidfd;
  int channel;
  bool daemon;
};

[[noreturn]] void server_die(const std::string& message) noexcept {
  const std::string text = "mp: fork server " + std::to_string(::getpid()) + ": " + message + "\n";
  (void)!::write(STDERR_FILENO, text.data(), text.size());
  ::_exit(1);
}

void answer(int channel, const std::string& record) noexcept {
  (void)posix::write_all(channel, record);
}

// Kills the daemon children (their logical parent has gone) and exits; the others live
// on, as a non-daemon child of a parent that was killed does with fork and spawn.
[[noreturn]] void server_exit(const std::vector<Served>& children) noexcept {
  for (const auto& child : children)
    if (child.daemon) (void)posix::pidfd_send_signal(child.pidfd, SIGKILL);
  ::_exit(0);
}

pid_t g_real_parent = 0;

// In a served child: puts the stdout and stderr its parent sent (send_stdio) on 1 and 2,
// and closes one the parent had closed, so that the child writes where its parent's
// output goes now rather than where the server's went when it started.
void take_parent_stdio(int channel) noexcept {
  for (int i = 0; i < 2; ++i) {
    char which = 0;
    std::size_t got = 0;
    posix::unique_fd fd;
    const bool ok = !posix::recv_with_fd(channel, &which, 1, got, fd) && got == 1 &&
                    (which == '1' || which == '2');
    if (!ok) {
      static constexpr std::string_view kText =
          "mp: fork server child: its parent sent no stdout and stderr\n";
      (void)!::write(STDERR_FILENO, kText.data(), kText.size());
      ::_exit(1);
    }
    const int target = which - '0';
    if (fd ? ::dup2(fd.get(), target) < 0 : ::close(target) < 0 && errno != EBADF) ::_exit(1);
  }
}

// The parent's half of take_parent_stdio.
void send_stdio(int channel) noexcept {
  for (const char which : {'1', '2'}) {
    const int fd = which - '0';
    const bool open = ::fcntl(fd, F_GETFD) != -1;
    if (posix::send_with_fd(channel, std::string_view(&which, 1), open ? fd : -1)) return;
  }
}

// Forks one child for the request that came with `channel`.
void serve_request(int control, int parent_pidfd, const struct sigaction& sigint,
                   std::vector<Served>& children, posix::unique_fd channel, bool daemon) {
  const pid_t server = ::getpid();
  const pid_t pid = ::fork();
  if (pid < 0) {
    answer(channel.get(), with_int('E', errno));
    return;
  }
  if (pid == 0) {
    // The child keeps nothing of the server but its channel.
    ::close(control);
    ::close(parent_pidfd);
    for (const auto& child : children) {
      ::close(child.pidfd);
      ::close(child.channel);
    }
    ::sigaction(SIGINT, &sigint, nullptr);
    g_real_parent = server;
    take_parent_stdio(channel.get());
    spawn_main(channel.release(), /*heap_inherited=*/true);
  }
  posix::unique_fd pidfd;
  if (auto ec = posix::pidfd_open(pid, pidfd)) {
    kill_and_reap(pid);
    answer(channel.get(), with_int('E', ec.value()));
    return;
  }
  if (posix::send_fd(channel.get(), 'P', pidfd.get()) ||
      posix::write_all(channel.get(),
                       std::string_view(reinterpret_cast<const char*>(&pid), sizeof pid))) {
    // The parent is gone or gave up on this child: it is nobody's now.
    kill_and_reap(pid);
    return;
  }
  children.push_back({pid, pidfd.release(), channel.release(), daemon});
}

// Reaps the child of children[i], tells its parent the exit code, and forgets it.
void reap(std::vector<Served>& children, std::size_t i) {
  std::optional<int> status;
  if (posix::try_reap(children[i].pid, status) || !status) return;
  answer(children[i].channel, with_int('S', *status));
  ::close(children[i].channel);
  ::close(children[i].pidfd);
  children.erase(children.begin() + static_cast<std::ptrdiff_t>(i));
}

[[noreturn]] void server_main(int control) noexcept {
  // Ctrl-C goes to the whole process group: the parent decides what it means, and the
  // server must outlive it as long as the parent does. Children get the disposition back.
  struct sigaction ignore {
  }, sigint{};
  ignore.sa_handler = SIG_IGN;
  ::sigaction(SIGINT, &ignore, &sigint);

  std::string record;
  posix::unique_fd heap_fd;
  if (recv_record(control, record, heap_fd) || record.size() < 2 || record[0] != 'H' || !heap_fd)
    server_die(
        "no greeting from the parent (was this binary started with --mp-forkserver by hand?)");
  std::vector<Preload> preload;
  pid_t parent = 0;
  try {
    auto [module_id, preload_bytes, parent_pid] =
        pickle::loads<std::tuple<std::string, std::string, std::int32_t>>(
            std::string_view(record).substr(1));
    if (module_id != main_module_id()) {
      answer(control,
             "Ethis binary (" + main_module_id() + ") is not the parent's (" + module_id + ")");
      ::_exit(1);
    }
    parent = parent_pid;
    preload = pickle::loads<std::vector<Preload>>(preload_bytes);
    heap_attach_inherited(std::move(heap_fd));
  } catch (const std::exception& e) {
    answer(control, std::string("E") + e.what());
    ::_exit(1);
  }
  posix::unique_fd parent_pidfd;
  if (posix::pidfd_open(parent, parent_pidfd) || posix::parent_pid() != parent) ::_exit(0);
  for (Preload function : preload) {
    try {
      function();
    } catch (const std::exception& e) {
      std::string text =
          std::string("mp: fork server: a preload function threw: ") + e.what() + "\n";
      (void)!::write(STDERR_FILENO, text.data(), text.size());
    } catch (...) {
    }
  }
  flush_std_streams();
  if (posix::send_with_fd(control, "R", -1)) ::_exit(0);

  std::vector<Served> children;
  std::vector<pollfd> fds;
  for (;;) {
    fds.assign({{control, POLLIN, 0}, {parent_pidfd.get(), POLLIN, 0}});
    for (const auto& child : children) fds.push_back({child.pidfd, POLLIN, 0});
    int ready = 0;
    if (posix::poll_until(fds, std::nullopt, ready)) server_exit(children);
    if (fds[1].revents) server_exit(children);
    for (std::size_t i = fds.size(); i-- > 2;)
      if (fds[i].revents) reap(children, i - 2);
    if (fds[0].revents) {
      posix::unique_fd channel;
      if (recv_record(control, record, channel) || record.empty()) server_exit(children);
      if (record.size() == 2 && record[0] == 'Q' && channel)
        serve_request(control, parent_pidfd.get(), sigint, children, std::move(channel),
                      record[1] != 0);
    }
  }
}

}  // namespace

std::unique_ptr<Popen> forkserver_launch(const SpawnBootstrap& bootstrap, bool daemon) {
  posix::unique_fd ours, theirs;
  if (auto ec = posix::socket_pair(ours, theirs)) fail("socketpair", ec);
  request_child(theirs.get(), daemon);
  theirs.reset();
  send_stdio(ours.get());
  auto popen = std::make_unique<Popen>();
  // If the child died before reading (it could not start), this fails with EPIPE; its
  // exit code tells the story.
  (void)bootstrap.send(ours.get());
  char tag = 0;
  posix::unique_fd pidfd;
  const auto ec = posix::recv_fd(ours.get(), tag, pidfd);
  if (ec == std::errc::protocol_error && tag == 'E')
    fail("fork", std::error_code(read_int(ours.get()), std::system_category()));
  if (ec || tag != 'P') fail("no answer to a request (has it died?)", ec);
  const pid_t pid = read_int(ours.get());
  popen->adopt_served(pid, std::move(pidfd), std::move(ours));
  return popen;
}

void forkserver_set_preload(std::vector<void (*)()> functions) {
  for (auto* function : functions)
    if (!function) throw std::invalid_argument("mp::set_forkserver_preload: a null function");
  (void)pickle::dumps(functions);  // every one must be code of a loaded module
  auto& c = client();
  std::lock_guard lock(c.mutex);
  c.preload = std::move(functions);
}

pid_t forkserver_pid() noexcept {
  auto& c = client();
  std::lock_guard lock(c.mutex);
  return c.control ? c.server : 0;
}

void forkserver_forget_in_child() noexcept {
  auto& c = client();
  new (&c.mutex) std::mutex;
  if (c.control) ::close(c.control.release());
  c.server = 0;
  g_real_parent = 0;
}

pid_t forkserver_real_parent() noexcept { return g_real_parent; }

void forkserver_main_if_requested(int argc, char** argv) noexcept {
  int fd = -1;
  if (fd_argument(argc, argv, kForkServerFlag, fd)) server_main(fd);
}

}  // namespace mp::detail
