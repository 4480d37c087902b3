// Condition producer/consumer, from the course notes ("## ThreadSync:
// Condition": "Condition, another method of flow control sync"). The Python:
//
//   # Producer consumer example using condition
//
//   from threading import Thread, Condition, Lock
//   from random import randint, random
//   from time import sleep
//   from collections import deque
//
//   class SynchronizedQueue:
//       def __init__(self, capacity):
//           self.capacity = capacity
//           self.queue = deque()
//           self.full = Condition()
//           self.empty = Condition()
//           self.qlock = Lock()
//
//
//       def __str__(self):
//           with self.qlock:
//               s = str(self.queue)
//           return s
//
//       def put(self, value):
//           with self.full:
//               if len(self.queue) >= self.capacity:
//                   self.full.wait()
//
//           with self.empty, self.qlock:
//               self.queue.append(value)
//               self.empty.notify()
//
//       def get(self):
//           with self.empty:
//               if not self.queue:
//                   self.empty.wait()
//
//           with self.full, self.qlock:
//               v = self.queue.popleft()
//               self.full.notify()
//
//           return v
//
//   data = SynchronizedQueue(10)
//
//   def producer():
//       while True:
//           v = randint(10, 99)
//           print("producer: adding {}, queue = {}".format(v, data))
//           data.put(v)
//           sleep(random() / 4)
//
//   def consumer():
//       while True:
//           v = data.get()
//           print("consumer: fetched {}, queue = {}".format(v, data))
//           sleep(random())
//
//   if __name__ == '__main__':
//       p = Thread(target=producer)
//       p.start()
//
//       for i in range(4):
//           Thread(target=consumer).start()
//
// which prints lines such as
//   producer: adding 42, queue = deque([])
//   consumer: fetched 42, queue = deque([])
//   producer: adding 17, queue = deque([])
//
// Here the producer and the four consumers are processes and the queue lives in shared
// memory (an example::Deque in an mp::RawValue, guarded by an mp::Lock). Changes:
//   - The seed checks the queue's length with `if` under one lock and changes it under
//     another, so two consumers woken for one item both pop it (IndexError from an empty
//     deque), and a put can overfill the queue. Done right, both conditions share the
//     queue's lock and wait in a loop:
//         self.qlock = Lock()
//         self.full = Condition(self.qlock)
//         self.empty = Condition(self.qlock)
//         def put(self, value):
//             with self.full:
//                 while len(self.queue) >= self.capacity:
//                     self.full.wait()
//                 self.queue.append(value)
//                 self.empty.notify()
//     and get() likewise (Condition.wait_for is that loop).
//   - It ends: the producer adds kItems values and each consumer fetches kItems / 4.
#include <mutex>
#include <random>
#include <string>
#include <vector>

#include <mp/mp.hpp>

#include "example.hpp"

namespace {

constexpr int kCapacity = 10;
constexpr int kConsumers = 4;
constexpr int kItems = 12;

using Ring = example::Deque<kCapacity>;

class SynchronizedQueue {
 public:
  SynchronizedQueue() = default;  // for unpickling in a spawned child
  explicit SynchronizedQueue(int capacity) : capacity_(capacity), full_(qlock_), empty_(qlock_) {}

  std::string str() const {
    std::scoped_lock guard(qlock_);
    return queue_.value().repr();
  }

  // Blocks while the queue is full.
  void put(int value) {
    std::scoped_lock guard(full_);
    full_.wait_for([&] { return queue_.value().size < capacity_; });
    Ring ring = queue_.value();
    ring.append(value);
    queue_.set_value(ring);
    empty_.notify();
  }

  // Blocks while the queue is empty.
  int get() {
    std::scoped_lock guard(empty_);
    empty_.wait_for([&] { return queue_.value().size > 0; });
    Ring ring = queue_.value();
    const int value = ring.popleft();
    queue_.set_value(ring);
    full_.notify();
    return value;
  }

  template <class Archive>
  void serialize(Archive& ar) {
    ar(capacity_, queue_, qlock_, full_, empty_);
  }

 private:
  int capacity_ = kCapacity;
  mp::RawValue<Ring> queue_;
  mutable mp::Lock qlock_;
  mp::Condition full_;
  mp::Condition empty_;
};

void producer(SynchronizedQueue data) {
  std::mt19937 random{std::random_device{}()};
  std::uniform_int_distribution<int> randint(10, 99);
  std::uniform_real_distribution<double> uniform(0, 1);
  for (int i = 0; i < kItems; ++i) {
    const int v = randint(random);
    example::say("producer: adding %d, queue = %s\n", v, data.str().c_str());
    data.put(v);
    example::sleep(uniform(random) / 4);
  }
}

void consumer(SynchronizedQueue data) {
  std::mt19937 random{std::random_device{}()};
  std::uniform_real_distribution<double> uniform(0, 1);
  for (int i = 0; i < kItems / kConsumers; ++i) {
    const int v = data.get();
    example::say("consumer: fetched %d, queue = %s\n", v, data.str().c_str());
    example::sleep(uniform(random));
  }
}

}  // namespace

int main(int argc, char** argv) {
  mp::freeze_support(argc, argv);
  example::parse_args(argc, argv);

  SynchronizedQueue data(kCapacity);
  std::vector<mp::Process> processes;
  processes.emplace_back(&producer, data);
  processes.back().start();
  for (int i = 0; i < kConsumers; ++i) {
    processes.emplace_back(&consumer, data);
    processes.back().start();
  }
  return example::join_all(processes);
}
