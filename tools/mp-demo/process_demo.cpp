// "Process vs Thread" from the seeds (../shared/seeds/001_*.txt). The Python:
//
//   from multiprocessing import Process as Thread, current_process as current_thread
//   from time import sleep
//
//   class Value:
//       def __init__(self, ctype, value):
//           self.value = value
//
//   def foo(val):
//       t = current_thread()
//       print(f"In foo[{t.name}]: value = {val.value}")
//       sleep(2)
//       val.value = 1234
//       print(f"In foo[{t.name}]: value is set to {val.value}")
//
//   def bar(val):
//       t = current_thread()
//       print(f"In bar[{t.name}]: value = {val.value}")
//       sleep(3)
//       print(f"In bar[{t.name}]: value = {val.value}")
//
//   if __name__ == '__main__':
//       value = Value("i", 100)
//       t1 = Thread(target=foo, args=(value,))
//       t2 = Thread(target=bar, args=(value,))
//       t1.start(); t2.start(); t1.join(); t2.join()
//       print("In main: value =", value.value)
//
// prints "In main: value = 100": each process changed its own copy (with threads, the
// same program prints 1234). Here the value is a plain global, which makes the lesson
// plainer still: a forked child has a copy of it, a spawned child a fresh one.
#include <cstdio>

#include <mp/mp.hpp>

#include "demos.hpp"

namespace mp_demo {
namespace {

struct Value {
  int value;
};
Value value{100};  // not shared: every process has its own

void foo(Options options) {
  const std::string& name = mp::current_process().name();
  std::printf("In foo[%s]: value = %d\n", name.c_str(), value.value);
  std::fflush(stdout);
  pause(options, 2);
  value.value = 1234;
  std::printf("In foo[%s]: value is set to %d\n", name.c_str(), value.value);
  std::fflush(stdout);
}

void bar(Options options) {
  const std::string& name = mp::current_process().name();
  std::printf("In bar[%s]: value = %d\n", name.c_str(), value.value);
  std::fflush(stdout);
  pause(options, 3);
  std::printf("In bar[%s]: value = %d\n", name.c_str(), value.value);
  std::fflush(stdout);
}

}  // namespace

int process_demo(const Options& options) {
  if (!options.positional.empty()) throw UsageError{"process takes no arguments"};
  if (options.unshared) throw UsageError{"--unshared is an option of the value demo"};
  // Options travel to the children as an argument (it has a serialize() member).
  mp::Process t1({.start_method = options.start_method}, &foo, options);
  mp::Process t2({.start_method = options.start_method}, &bar, options);
  t1.start();
  t2.start();
  t1.join();
  t2.join();
  std::printf("In main: value = %d\n", value.value);
  return t1.exitcode() == 0 && t2.exitcode() == 0 ? 0 : 1;
}

}  // namespace mp_demo
