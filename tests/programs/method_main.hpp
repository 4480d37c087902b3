// The main() of a test program whose one argument is a start method: the program
// defines run(method) and says
//
//   int main(int argc, char** argv) { return method_main("NAME", argc, argv, &run); }
//
// freeze_support() first (a spawned child of the program never returns from it); exit
// code 2 and a usage line for a wrong argument count; an exception that escapes run() is
// printed as "NAME: what" and ends the program with exit code 1.
#pragma once

#include <cstdio>
#include <exception>
#include <string>

#include <mp/context.hpp>

inline int method_main(const char* name, int argc, char** argv,
                       int (*run)(const std::string& method)) {
  try {
    mp::freeze_support(argc, argv);
    if (argc != 2) {
      std::fprintf(stderr, "usage: %s START_METHOD\n", name);
      return 2;
    }
    return run(argv[1]);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s: %s\n", name, e.what());
    return 1;
  }
}
