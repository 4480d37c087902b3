// mp-demo SUBCOMMAND [--delay SECONDS] [--start-method fork|spawn] [--unshared] [ARGS]
// Runs the course examples from ../shared/seeds with real processes.
#include <cstdio>
#include <cstring>
#include <exception>
#include <string>
#include <vector>

#include <mp/mp.hpp>

#include "demos.hpp"

namespace {

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
  std::fprintf(out,
               "usage: mp-demo SUBCOMMAND [--delay SECONDS] [--start-method fork|spawn] "
               "[--unshared] [ARGS]\n"
               "\nRuns the examples of the multiprocessing course with real processes.\n"
               "\nsubcommands:\n");
  for (const auto& demo : kDemos) std::fprintf(out, "  %-10s %s\n", demo.name, demo.summary);
  std::fprintf(out,
               "\noptions:\n"
               "  --delay SECONDS        base delay (the seeds' sleep(2) is 2*SECONDS; "
               "default 0.1)\n"
               "  --start-method METHOD  fork (default) or spawn\n"
               "  --unshared             value: pass a plain int (children get copies)\n"
               "  -h, --help             show this help\n");
}

}  // namespace

int main(int argc, char** argv) {
  mp::freeze_support(argc, argv);
  std::vector<std::string> args(argv + 1, argv + argc);
  if (args.empty()) {
    usage(stderr);
    return 2;
  }
  if (args[0] == "-h" || args[0] == "--help" || args[0] == "help") {
    usage(stdout);
    return 0;
  }
  for (const auto& demo : kDemos) {
    if (args[0] != demo.name) continue;
    try {
      auto options = mp_demo::parse_options({args.begin() + 1, args.end()});
      return demo.run(options);
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
