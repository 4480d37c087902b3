// Semaphore producer/consumer, from the course notes ("## ThreadSync:
// Semaphore": "Semaphore, is used for bandwidth management ... Semaphore don't have
// ownership, it can be acquired by one and other can release"). The Python:
//
//   # Producer consumer using Semaphore
//   from threading import Thread, Semaphore, Lock
//   from time import sleep
//   from random import randint
//   from collections import deque
//
//
//   class SimpleQueue:
//       def __init__(self, size):
//           self.queue = deque()
//           self.reader = Semaphore(0)
//           self.writer = Semaphore(size)
//           self.lock = Lock()
//
//       def show(self):
//           print(self.queue)
//
//       def put(self, v):
//
//           self.writer.acquire()
//
//           self.queue.append(v)
//
//           self.reader.release()
//
//       def get(self):
//           self.reader.acquire()
//
//           v = self.queue.popleft()
//
//           self.writer.release()
//
//           return v
//
//
//   queue = SimpleQueue(10)
//
//
//   def producer():
//       while True:
//           v = randint(1, 100)
//           print("Produced: ", v)
//           queue.put(v)
//           sleep(v/100.0)
//
//
//   def consumer():
//       while True:
//           v = queue.get()
//           print("Consumed: ", v)
//           sleep((v/100.0) + 0.3)
//
//
//   p = Thread(target=producer)
//   c = Thread(target=consumer)
//
//   p.start()
//   c.start()
//
//   while True:
//       queue.show()
//       sleep(0.5)
//
// which prints lines such as
//   Produced:  57
//   Consumed:  57
//   deque([])
//   Produced:  12
//   deque([12])
//
// The writer semaphore is the bandwidth limit: at most `size` values wait in the queue,
// and the producer blocks on a full one. The producer acquires it and the consumer
// releases it (no ownership, unlike a Lock). Here the producer and the consumer are
// processes, the deque lives in shared memory (an example::Deque in an mp::RawValue), and:
//   - The deque is changed under self.lock (the seed makes the lock but never takes it;
//     CPython's deque is thread-safe, a shared-memory one is not).
//   - The writer is an mp::BoundedSemaphore (the seed's `from threading import
//     BoundedSemaphore as Semaphore`): it is never released above `size`, so a stray
//     release would throw instead of raising the limit.
//   - It ends: kItems values, and main shows the queue until both processes are done.
#include <mutex>
#include <random>
#include <vector>

#include <mp/mp.hpp>

#include "example.hpp"

namespace {

constexpr int kSize = 10;
constexpr int kItems = 12;

class SimpleQueue {
 public:
  SimpleQueue() = default;  // for unpickling in a spawned child
  explicit SimpleQueue(int size) : reader_(0), writer_(size) {}

  void show() const {
    std::scoped_lock guard(lock_);
    example::say("%s\n", queue_.value().repr().c_str());
  }

  // Blocks while `size` values wait in the queue.
  void put(int v) {
    writer_.acquire();
    {
      std::scoped_lock guard(lock_);
      auto queue = queue_.value();
      queue.append(v);
      queue_.set_value(queue);
    }
    reader_.release();
  }

  // Blocks while the queue is empty.
  int get() {
    reader_.acquire();
    int v = 0;
    {
      std::scoped_lock guard(lock_);
      auto queue = queue_.value();
      v = queue.popleft();
      queue_.set_value(queue);
    }
    writer_.release();
    return v;
  }

  template <class Archive>
  void serialize(Archive& ar) {
    ar(queue_, reader_, writer_, lock_);
  }

 private:
  mp::RawValue<example::Deque<kSize>> queue_;
  mp::Semaphore reader_{0};
  mp::BoundedSemaphore writer_{kSize};
  mutable mp::Lock lock_;
};

void producer(SimpleQueue queue) {
  std::mt19937 random{std::random_device{}()};
  std::uniform_int_distribution<int> randint(1, 100);
  for (int i = 0; i < kItems; ++i) {
    const int v = randint(random);
    example::say("Produced:  %d\n", v);
    queue.put(v);
    example::sleep(v / 100.0);
  }
}

void consumer(SimpleQueue queue) {
  for (int i = 0; i < kItems; ++i) {
    const int v = queue.get();
    example::say("Consumed:  %d\n", v);
    example::sleep((v / 100.0) + 0.3);
  }
}

}  // namespace

int main(int argc, char** argv) {
  mp::freeze_support(argc, argv);
  example::parse_args(argc, argv);

  SimpleQueue queue(kSize);
  mp::Process p(&producer, queue);
  mp::Process c(&consumer, queue);
  p.start();
  c.start();

  while (p.is_alive() || c.is_alive()) {
    queue.show();
    example::sleep(0.5);
  }
  p.join();
  c.join();
  return p.exitcode() == 0 && c.exitcode() == 0 ? 0 : 1;
}
