// Process vs Thread, from the seeds (../shared/seeds/001_*.txt, "## Process vs Thread":
// "Threads: Global datastructure are visible to all threads. Process: Global
// datastructure changed in one process is not visible in another process."). The Python,
// run once as it is and once with the commented import swapped in:
//
//   #Process vs Thread: Thread Example
//   from threading import Thread, current_thread
//   #from multiprocessing import Process as Thread, current_process as current_thread
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
//
//       t1 = Thread(target=foo, args=(value,))
//       t2 = Thread(target=bar, args=(value,))
//       t1.start()
//       t2.start()
//       t1.join()
//       t2.join()
//       print("In main: value =", value.value)
//
// With threads it prints
//   In foo[Thread-1]: value = 100
//   In bar[Thread-2]: value = 100
//   In foo[Thread-1]: value is set to 1234
//   In bar[Thread-2]: value = 1234
//   In main: value = 1234
// and with processes foo changes its own copy, so bar and main still see 100:
//   In foo[Process-1]: value = 100
//   In bar[Process-2]: value = 100
//   In foo[Process-1]: value is set to 1234
//   In bar[Process-2]: value = 100
//   In main: value = 100
// This program runs both, threads first (std::thread), then the very same functions in
// mp::Process children. The value is a plain global here, which makes the lesson plainer:
// the threads share it, a forked child has a copy of it and a spawned child a fresh one.
//
// The seed's threads rely on bar reading 1 s after foo's write, counted from each one's
// own start; here both wait at a Barrier after their first line, so that a slow start
// (a spawned child's, say) cannot change what is printed.
#include <string>
#include <thread>

#include <mp/mp.hpp>

#include "example.hpp"

namespace {

// The seeds' stand-in for multiprocessing.Value: a plain object, not shared memory.
struct Value {
  int value;
};
Value value{100};

// current_thread().name: a thread's name, else the process's ("Process-1").
thread_local std::string thread_name;
std::string current_name() {
  return thread_name.empty() ? mp::current_process().name() : thread_name;
}

void foo(mp::Barrier started) {
  const std::string t = current_name();
  example::say("In foo[%s]: value = %d\n", t.c_str(), value.value);
  started.wait();
  example::sleep(2);
  value.value = 1234;
  example::say("In foo[%s]: value is set to %d\n", t.c_str(), value.value);
}

void bar(mp::Barrier started) {
  const std::string t = current_name();
  example::say("In bar[%s]: value = %d\n", t.c_str(), value.value);
  started.wait();
  example::sleep(3);
  example::say("In bar[%s]: value = %d\n", t.c_str(), value.value);
}

void with_threads() {
  mp::Barrier started(2);
  std::thread t1([started] {
    thread_name = "Thread-1";
    foo(started);
  });
  std::thread t2([started] {
    thread_name = "Thread-2";
    bar(started);
  });
  t1.join();
  t2.join();
  example::say("In main: value = %d\n", value.value);
}

int with_processes() {
  value.value = 100;  // as a fresh run of the Python program starts
  mp::Barrier started(2);
  mp::Process t1(&foo, started);
  mp::Process t2(&bar, started);
  t1.start();
  t2.start();
  t1.join();
  t2.join();
  example::say("In main: value = %d\n", value.value);
  return t1.exitcode() == 0 && t2.exitcode() == 0 ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  mp::freeze_support(argc, argv);
  example::parse_args(argc, argv);
  with_threads();
  return with_processes();
}
