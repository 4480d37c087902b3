// A C++ work server for Python clients: a Python program submits lists of numbers over
// Python's own multiprocessing.connection protocol, and this program computes them in an
// mp::Pool and sends the results back as Python objects.
//
// The client (python_work_client.py, beside this file) is plain Python:
//
//   from multiprocessing.connection import Client
//   with Client(address, authkey=b"mp-example") as conn:
//       conn.send(("square", [1, 2, 3]))
//       print(conn.recv())            # ('ok', [1, 4, 9])
//       conn.send(("stop", []))
//
// Each request is a tuple (name, list of ints); the answer is ("ok", list of results) or
// ("error", message) for an unknown function, a malformed request or a failed task.
// ("stop", []) ends the server. The messages are Python pickles of plain data
// (<mp/python_pickle.hpp>): the server never runs code named by a client, which Python's
// own Connection.recv() would do for any pickle it is sent.
//
// usage: example_python_work_server [--start-method METHOD] [CLIENT COMMAND...]
//   Listens on a Unix socket in a new temporary directory (a "host:port" address would
//   serve TCP clients on other machines the same way) with the authkey in
//   MP_EXAMPLE_AUTHKEY (default "mp-example"). With a client command, the server starts
//   it with the address as its last argument, serves until a stop request or the
//   client's exit, and exits with the client's status:
//
//     example_python_work_server python3 examples/python_work_client.py
//
// Without one, it prints the address and serves clients one after another until one
// sends a stop request.
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <string>
#include <string_view>
#include <system_error>
#include <tuple>
#include <vector>

#include <mp/listener.hpp>
#include <mp/mp.hpp>

#include "example.hpp"

extern char** environ;

namespace {

using Number = std::int64_t;
using Request = std::tuple<std::string, std::vector<Number>>;
using mp::pickle::python::Object;

Number square(Number x) { return x * x; }

Number isprime(Number n) {
  if (n < 2) return 0;
  for (Number d = 2; d <= n / d; ++d)
    if (n % d == 0) return 0;
  return 1;
}

// Steps of the Collatz sequence from n down to 1 (n >= 1).
Number collatz(Number n) {
  if (n < 1) throw std::invalid_argument("collatz needs n >= 1, got " + std::to_string(n));
  Number steps = 0;
  for (; n != 1; ++steps) n = n % 2 == 0 ? n / 2 : 3 * n + 1;
  return steps;
}

struct Function {
  std::string_view name;
  Number (*fn)(Number);
};
constexpr Function kFunctions[] = {
    {"square", &square}, {"isprime", &isprime}, {"collatz", &collatz}};

Object error(const std::string& message) {
  return Object::tuple({Object::str("error"), Object::str(message)});
}

// Answers one request; returns false for a stop request.
bool serve_request(mp::Pool& pool, mp::Connection& connection) {
  const std::string bytes = connection.recv_bytes();
  Request request;
  try {
    request = mp::pickle::python::loads<Request>(bytes);
  } catch (const mp::UnpicklingError& e) {
    connection.send_python(error(std::string("bad request: ") + e.what()));
    return true;
  }
  const auto& [name, items] = request;
  if (name == "stop") return false;
  for (const Function& function : kFunctions) {
    if (function.name != name) continue;
    try {
      const std::vector<Number> results = pool.map(function.fn, items);
      std::vector<Object> values;
      for (Number result : results) values.push_back(Object::integer(result));
      connection.send_python(Object::tuple({Object::str("ok"), Object::list(std::move(values))}));
    } catch (const std::exception& e) {
      connection.send_python(error(e.what()));
    }
    return true;
  }
  connection.send_python(error("no function named '" + name + "'"));
  return true;
}

// Serves one client until it hangs up or asks to stop; returns false for a stop request.
bool serve_client(mp::Pool& pool, mp::Connection connection) {
  try {
    while (true)
      if (!serve_request(pool, connection)) return false;
  } catch (const mp::EOFError&) {
    return true;  // the client hung up
  }
}

// A started client command; its exit status is the server's.
class ClientCommand {
 public:
  ClientCommand(const std::vector<std::string>& command, const std::string& address) {
    std::vector<std::string> args = command;
    args.push_back(address);
    std::vector<char*> argv;
    for (std::string& arg : args) argv.push_back(arg.data());
    argv.push_back(nullptr);
    const int error = ::posix_spawnp(&pid_, argv[0], nullptr, nullptr, argv.data(), environ);
    if (error != 0) throw std::system_error(error, std::generic_category(), "starting " + args[0]);
  }
  ClientCommand(const ClientCommand&) = delete;
  ClientCommand& operator=(const ClientCommand&) = delete;
  ~ClientCommand() {
    if (pid_ > 0) wait(/*block=*/true);
  }

  // The client's exit status once it has ended (-1 while it runs, unless block).
  int wait(bool block) {
    if (pid_ <= 0) return status_;
    int raw = 0;
    pid_t got = 0;
    while ((got = ::waitpid(pid_, &raw, block ? 0 : WNOHANG)) < 0 && errno == EINTR) {
    }
    if (got == 0) return -1;
    pid_ = 0;
    status_ = got < 0 ? 1 : WIFEXITED(raw) ? WEXITSTATUS(raw) : 128 + WTERMSIG(raw);
    return status_;
  }

 private:
  pid_t pid_ = 0;
  int status_ = 1;
};

}  // namespace

int main(int argc, char** argv) {
  mp::freeze_support(argc, argv);
  const std::vector<std::string> client_command =
      example::parse_args(argc, argv, "[CLIENT COMMAND...]");

  const char* key = std::getenv("MP_EXAMPLE_AUTHKEY");
  const std::string authkey = key != nullptr && *key != '\0' ? key : "mp-example";

  char directory[] = "/tmp/mp-example-XXXXXX";
  if (::mkdtemp(directory) == nullptr) {
    std::perror("mkdtemp");
    return 1;
  }
  int status = 0;
  {
    mp::Pool pool;
    mp::Listener listener(std::string(directory) + "/socket", {.authkey = authkey});
    if (client_command.empty()) {
      example::say("listening on %s\n", listener.address().c_str());
      while (serve_client(pool, listener.accept())) {
      }
    } else {
      ClientCommand client(client_command, listener.address());
      // Accept while the client runs: one that exits without connecting ends the server.
      bool serving = true;
      while (serving && client.wait(/*block=*/false) < 0) {
        if (mp::wait({listener.fileno()}, std::chrono::milliseconds(200)).empty()) continue;
        try {
          serving = serve_client(pool, listener.accept());
        } catch (const mp::AuthenticationError& e) {
          example::say("refused a client: %s\n", e.what());
        }
      }
      status = client.wait(/*block=*/true);
    }
    listener.close();
  }
  ::rmdir(directory);
  example::say("server done\n");
  return status;
}
