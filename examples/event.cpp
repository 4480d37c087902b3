// Event readers and an updater, from the course notes ("## ThreadSync:
// Events": "Event object is the simplest sync mechanism ... e.set() : not a counter its
// just a state"). The Python:
//
//   #Event example
//   from threading import Thread, Event
//
//   from random import random, randint, sample
//   from time import sleep
//
//
//   data = []
//
//   updated = Event()
//
//
//   def update_data():
//       while True:
//           updated.clear()
//           sleep(randint(1, 10))
//           data[:] = sample(range(100), 10)
//           updated.set()
//           sleep(randint(1, 5))
//
//
//   def get_data(name):
//       while True:
//           print("{} waiting for list update...".format(name), flush=True)
//           updated.wait()
//           print("In {}: top 5 = {}\n".format(name, str(data[:5])), flush=True)
//           print("In {}: bottom 5 = {}\n".format(
//               name, str(data[-5:])), flush=True)
//
//
//   update_thread = Thread(target=update_data)
//
//   readers = {}
//
//   update_thread.start()
//
//   for i in range(5):
//       readers[i] = Thread(target=get_data, args=("Reader-%d" % i,))
//       readers[i].start()
//
// which prints, for each update, lines such as
//   Reader-0 waiting for list update...
//   In Reader-0: top 5 = [40, 89, 61, 94, 88]
//
//   In Reader-0: bottom 5 = [22, 57, 73, 7, 32]
//
// Here the updater and the five readers are processes, `data` is an mp::Array<int> of 10
// and `updated` an mp::Event, both passed as arguments (module globals are not shared
// between processes). Two changes make the program finite and right:
//   - It runs kRounds updates instead of forever (the readers stop after as many).
//   - An Event is a state, not a counter: the seed's readers loop straight back to
//     updated.wait() while the event is still set and print the same list again and
//     again until the updater clears it. Here a Barrier of all six ends each round: the
//     updater clears the event between two waits on it, so no reader waits again before
//     the clear (this replaces the seed's sleep(randint(1, 5)) after set()).
#include <algorithm>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include <mp/mp.hpp>

#include "example.hpp"

namespace {

constexpr int kRounds = 3;
constexpr int kReaders = 5;

void update_data(mp::Array<int> data, mp::Event updated, mp::Barrier round_over) {
  std::mt19937 random{std::random_device{}()};
  auto randint = [&](int low, int high) {
    return std::uniform_int_distribution<int>(low, high)(random);
  };
  for (int round = 0; round < kRounds; ++round) {
    example::sleep(randint(1, 10));
    data.update([&](std::span<int> items) {  // data[:] = sample(range(100), 10)
      std::vector<int> numbers(100);
      std::iota(numbers.begin(), numbers.end(), 0);
      std::shuffle(numbers.begin(), numbers.end(), random);
      std::copy_n(numbers.begin(), items.size(), items.begin());
    });
    updated.set();
    round_over.wait();  // every reader has printed this update
    updated.clear();
    round_over.wait();  // and none waits for the next before the clear
  }
}

void get_data(std::string name, mp::Array<int> data, mp::Event updated, mp::Barrier round_over) {
  for (int round = 0; round < kRounds; ++round) {
    example::say("%s waiting for list update...\n", name.c_str());
    updated.wait();
    const std::vector<int> items = data.to_vector();
    const std::vector<int> top(items.begin(), items.begin() + 5);
    const std::vector<int> bottom(items.end() - 5, items.end());
    example::say("In %s: top 5 = %s\n\n", name.c_str(), example::list_repr(top).c_str());
    example::say("In %s: bottom 5 = %s\n\n", name.c_str(), example::list_repr(bottom).c_str());
    round_over.wait();
    round_over.wait();
  }
}

}  // namespace

int main(int argc, char** argv) {
  mp::freeze_support(argc, argv);
  example::parse_args(argc, argv);

  mp::Array<int> data(10);
  mp::Event updated;
  mp::Barrier round_over(kReaders + 1);

  std::vector<mp::Process> processes;
  processes.emplace_back(&update_data, data, updated, round_over);
  processes.back().start();
  for (int i = 0; i < kReaders; ++i) {
    processes.emplace_back(&get_data, "Reader-" + std::to_string(i), data, updated, round_over);
    processes.back().start();
  }
  return example::join_all(processes);
}
