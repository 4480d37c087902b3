// mp-demo SUBCOMMAND [--delay SECONDS] [--start-method METHOD] [--unshared] [ARGS]
// Runs the course examples (examples/course) with real processes.
#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <exception>
#include <string>
#include <vector>

#include <mp/mp.hpp>

#include "../std_fds.hpp"
#include "demos.hpp"

namespace {

using mp_tools::occupy_if_closed;

struct Demo {
  const char* name;
  const char* summary;
  int (*run)(const mp_demo::Options&);
};

constexpr Demo kDemos[] = {
    {"process", "Process vs Thread: children change their own copy of a global",
     &mp_demo::process_demo},
    {"value", "Value: two processes share an int (--unshared: each has its own copy)",
     &mp_demo::value_demo},
    {"array", "Array: two processes edit a shared char array (TEXT, or stdin)",
     &mp_demo::array_demo},
    {"dict", "Manager: two processes read and change a shared dict", &mp_demo::dict_demo},
};

void usage(std::FILE* out) {
  const std::string methods = mp_demo::start_method_choices();
  std::fprintf(out,
               "usage: mp-demo SUBCOMMAND [--delay SECONDS] [--start-method %s] "
               "[--unshared] [ARGS]\n"
               "\nRuns the examples of the multiprocessing course with real processes.\n"
               "\nsubcommands:\n",
               methods.c_str());
  for (const auto& demo : kDemos) std::fprintf(out, "  %-10s %s\n", demo.name, demo.summary);
  std::fprintf(out,
               "\noptions:\n"
               "  --delay SECONDS        base delay (the seeds' sleep(2) is 2*SECONDS; "
               "default 0.1)\n"
               "  --start-method METHOD  one of %s (the first is the default)\n"
               "  --unshared             value: pass a plain int (children get copies)\n"
               "  -h, --help             show this help\n",
               methods.c_str());
}

bool stdout_closed = false;

// What a subcommand returns, unless what it printed could not be written (a full disk,
// a closed stdout): then a message and 1, as coreutils' close_stdout does. The children
// print to the same file, and so does the parent, last.
int check_stdout(const char* who, int status) {
  int error = 0;
  if (std::fflush(stdout) != 0 || std::ferror(stdout))
    error = errno ? errno : EIO;
  else if (stdout_closed)
    error = EBADF;
  if (error == 0) return status;
  std::fprintf(stderr, "%s: write error: %s\n", who, std::strerror(error));
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  mp::freeze_support(argc, argv);
  (void)occupy_if_closed(0);
  stdout_closed = occupy_if_closed(1);
  (void)occupy_if_closed(2);
  std::vector<std::string> args(argv + 1, argv + argc);
  if (args.empty()) {
    usage(stderr);
    return 2;
  }
  if (args[0] == "-h" || args[0] == "--help" || args[0] == "help") {
    usage(stdout);
    return check_stdout("mp-demo", 0);
  }
  for (const auto& demo : kDemos) {
    if (args[0] != demo.name) continue;
    try {
      auto options = mp_demo::parse_options({args.begin() + 1, args.end()});
      const int status = demo.run(options);
      return check_stdout(("mp-demo " + args[0]).c_str(), status);
    } catch (const mp_demo::UsageError& e) {
      std::fprintf(stderr, "mp-demo %s: %s\n\n", demo.name, e.message.c_str());
      usage(stderr);
      return 2;
    } catch (const std::exception& e) {
      std::fprintf(stderr, "mp-demo %s: %s\n", demo.name, e.what());
      return 1;
    }
  }
  std::fprintf(stderr, "mp-demo: unknown subcommand '%s'\n\n", args[0].c_str());
  usage(stderr);
  return 2;
}
