// "Process vs Thread", from the course notes (001, "## Process vs Thread": "Threads:
// Global datastructure are visible to all threads. Process: Global datastructure
// changed in one process is not visible in another process."). The Python, run once as
// it is and once with the commented import swapped in:
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
// The same functions run as std::threads and as mp::Process children. The value is a
// plain global here, which makes the lesson plainer: the threads share it, a forked
// child has a copy of it and a spawned child a fresh one.
//
// The seed's threads rely on bar reading 1 s after foo's write, counted from each one's
// own start; here both wait at a Barrier after their first line, so that a slow start
// (a spawned child's, say) cannot change what is printed.
#include <string>
#include <thread>

#include <mp/mp.hpp>

#include "common.hpp"

namespace course {
namespace {

using detail::say;

// The seeds' stand-in for multiprocessing.Value: a plain object, not shared memory.
struct Value {
  int value;
};
Value global_value{100};  // the Python's `value`

// current_thread().name: a thread's name, else the process's ("Process-1").
thread_local std::string thread_name;
std::string current_name() {
  return thread_name.empty() ? mp::current_process().name() : thread_name;
}

void foo(mp::Barrier started, Settings settings) {
  const std::string t = current_name();
  say("In foo[%s]: value = %d\n", t.c_str(), global_value.value);
  started.wait();
  detail::sleep(settings, 2);
  global_value.value = 1234;
  say("In foo[%s]: value is set to %d\n", t.c_str(), global_value.value);
}

void bar(mp::Barrier started, Settings settings) {
  const std::string t = current_name();
  say("In bar[%s]: value = %d\n", t.c_str(), global_value.value);
  started.wait();
  detail::sleep(settings, 3);
  say("In bar[%s]: value = %d\n", t.c_str(), global_value.value);
}

}  // namespace

int process_vs_thread_with_threads(const Settings& settings) {
  global_value.value = 100;  // as a fresh run of the Python program starts
  mp::Barrier started(2);
  std::thread t1([started, settings] {
    thread_name = "Thread-1";
    foo(started, settings);
  });
  std::thread t2([started, settings] {
    thread_name = "Thread-2";
    bar(started, settings);
  });
  t1.join();
  t2.join();
  say("In main: value = %d\n", global_value.value);
  return 0;
}

int process_vs_thread_with_processes(const Settings& settings) {
  global_value.value = 100;  // as a fresh run of the Python program starts
  mp::Barrier started(2);
  mp::Process t1({.start_method = settings.start_method}, &foo, started, settings);
  mp::Process t2({.start_method = settings.start_method}, &bar, started, settings);
  t1.start();
  t2.start();
  t1.join();
  t2.join();
  say("In main: value = %d\n", global_value.value);
  return t1.exitcode() == 0 && t2.exitcode() == 0 ? 0 : 1;
}

}  // namespace course
