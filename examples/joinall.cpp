// joinall(), the course's exercise ("Implement a
// joinall() function to wait for all threads to exit"). The course's answer
// ("## Thread group"):
//
//   # --- thread_join_better.py
//   from threading import Thread, current_thread
//   from time import sleep
//   from random import randrange
//
//   def foo(c, s):
//       t = current_thread()
//       for i in range(c):
//           print(f"{t.name}: counting", i)
//           sleep(s)
//
//   from collections import deque
//
//
//   if __name__ == '__main__':
//       threads = deque()
//       for i in range(5):
//           # starting same thread with different arguments
//           t = Thread(target=foo, args=(randrange(5, 30, 5), 0.5))
//           t.start()
//           threads.append(t)
//
//       while threads:
//           t = threads[0]
//           t.join(0.1)
//           if not t.is_alive():
//               threads.popleft()
//               print(t.name, "completed...")
//           else:
//               threads.rotate(-1)
//
// prints "Thread-N: counting 0" ... for each of the five, and "Thread-N completed..." as
// each one ends, in the order they end.
//
// Here the five are processes, and joinall() waits on all of them at once instead of
// polling each for 0.1 s in turn: a process's sentinel becomes ready when it ends, and
// mp::wait returns those that are. In Python:
//
//   from multiprocessing.connection import wait
//
//   def joinall(processes):
//       "Waits for all processes to exit, reporting each as it does"
//       running = {p.sentinel: p for p in processes}
//       while running:
//           for sentinel in wait(list(running)):
//               p = running.pop(sentinel)
//               p.join()
//               print(p.name, "completed...")
#include <random>
#include <string>
#include <vector>

#include <mp/mp.hpp>

#include "example.hpp"

namespace {

void foo(int c, double s) {
  const std::string& t = mp::current_process().name();
  for (int i = 0; i < c; ++i) {
    example::say("%s: counting %d\n", t.c_str(), i);
    example::sleep(s);
  }
}

// Waits for all processes to exit, reporting each as it does. Returns false if any
// exited with a status other than 0.
bool joinall(std::vector<mp::Process>& processes) {
  std::vector<mp::Process*> running;
  for (auto& process : processes) running.push_back(&process);
  bool all_ok = true;
  while (!running.empty()) {
    std::vector<mp::Waitable> sentinels;
    for (const mp::Process* process : running) sentinels.emplace_back(*process);
    const std::vector<std::size_t> ended = mp::wait(sentinels);
    // From the back, so that erasing keeps the other indices valid.
    for (auto index = ended.rbegin(); index != ended.rend(); ++index) {
      mp::Process& p = *running[*index];
      p.join();
      example::say("%s completed...\n", p.name().c_str());
      all_ok = all_ok && p.exitcode() == 0;
      running.erase(running.begin() + static_cast<std::ptrdiff_t>(*index));
    }
  }
  return all_ok;
}

}  // namespace

int main(int argc, char** argv) {
  mp::freeze_support(argc, argv);
  example::parse_args(argc, argv);

  std::mt19937 random{std::random_device{}()};
  std::uniform_int_distribution<int> randrange(1, 5);  // randrange(5, 30, 5) is 5 * this
  std::vector<mp::Process> processes;
  for (int i = 0; i < 5; ++i) {
    // starting the same function with different arguments
    processes.emplace_back(&foo, 5 * randrange(random), 0.5);
    processes.back().start();
  }
  return joinall(processes) ? 0 : 1;
}
