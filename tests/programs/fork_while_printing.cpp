// A program whose main thread prints numbered lines to stdout (buffered: stdout is a pipe
// or file) while another thread keeps starting fork children. Every line must come out
// exactly once: a child must not print what the parent had buffered at the fork (the
// parent's flush before fork cannot stop another thread from writing right after it).
// Used by tests/process_test.cpp.
#include <atomic>
#include <cstdio>
#include <thread>
#include <vector>

#include <mp/context.hpp>
#include <mp/process.hpp>

namespace {
void quiet_child() {}
}  // namespace

int main(int argc, char** argv) {
  mp::freeze_support(argc, argv);
  std::atomic<bool> printing{true};
  std::thread starter([&] {
    while (printing.load()) {
      mp::Process child({.start_method = "fork"}, &quiet_child);
      child.start();
      child.join();
    }
  });
  for (int line = 0; line < 300000; ++line) std::printf("line %d\n", line);
  printing.store(false);
  starter.join();
  return 0;
}
