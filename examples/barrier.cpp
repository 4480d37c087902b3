// Barrier, from the course notes ("## ThreadSync: Barriers": "we add
// checkpoint to ensure that all threads have reached that point before moving ahead").
// The Python:
//
//   from threading import Thread, current_thread, Barrier
//   from time import sleep
//   from random import randrange
//
//   def foo(c):
//       t = current_thread()
//       print(f"{t.name}: started...")
//       sleep(c)
//       print(f"{t.name}: woke up...")
//       # wait here till all the threads have arrived then move ahead
//       msg_barrier.wait()
//       print(f"{t.name}: continuuing...")
//
//
//   # How many threads to wait for
//   msg_barrier = Barrier(10)
//
//   if __name__ == '__main__':
//
//       for i in range(10):
//           t = Thread(target=foo, args=(randrange(5, 20),))
//           t.start()
//
// prints, in some order, "Thread-N: started..." and "Thread-N: woke up..." for each of the
// ten, and only then the ten "Thread-N: continuuing..." (sic).
//
// Here the ten are processes (Process-1 ... Process-10) and the Barrier an mp::Barrier
// passed as an argument: a module-level one would be shared with forked children only (a
// spawned child would make its own). main() also joins them, which Python does at exit.
#include <random>
#include <string>
#include <vector>

#include <mp/mp.hpp>

#include "example.hpp"

namespace {

void foo(int c, mp::Barrier msg_barrier) {
  const std::string& t = mp::current_process().name();
  example::say("%s: started...\n", t.c_str());
  example::sleep(c);
  example::say("%s: woke up...\n", t.c_str());
  // wait here till all the processes have arrived then move ahead
  msg_barrier.wait();
  example::say("%s: continuuing...\n", t.c_str());
}

}  // namespace

int main(int argc, char** argv) {
  mp::freeze_support(argc, argv);
  example::parse_args(argc, argv);

  // How many processes to wait for
  mp::Barrier msg_barrier(10);

  std::mt19937 random{std::random_device{}()};
  std::uniform_int_distribution<int> randrange(5, 19);  // randrange(5, 20)
  std::vector<mp::Process> processes;
  for (int i = 0; i < 10; ++i) {
    processes.emplace_back(&foo, randrange(random), msg_barrier);
    processes.back().start();
  }
  return example::join_all(processes);
}
