// Producer and consumer with a Queue, from the course notes ("Inbuilt- Queue"):
//
//   # Queue example
//   from threading import Thread
//   import time
//   from Queue import Queue
//
//   class Send(Thread):
//       def __init__(self, queue):
//           Thread.__init__(self)
//           self.queue = queue
//           self.count = 0
//       def run(self):
//           while True:
//               self.count += 1
//               self.queue.put(self.count)
//               time.sleep(1)
//
//   class Recieve(Thread):
//       def __init__(self, queue):
//           Thread.__init__(self)
//           self.queue = queue
//       def run(self):
//           while True:
//               print "Count: ", self.queue.get()
//               time.sleep(1)
//
//   def test():
//       data_queue = Queue(10)
//       sender = Send(data_queue)
//       reciever = Recieve(data_queue)
//       sender.start()
//       reciever.start()
//
// prints "Count:  1", "Count:  2", ... one a second, forever.
//
// Here the sender and the receiver are processes sharing an mp::Queue<int>(10) (Python:
// multiprocessing.Queue), and they stop after COUNT items (default 5) so that the
// example ends. The receiver gets the items in the order they were put.
#include <cstdlib>
#include <string>

#include <mp/mp.hpp>

#include "example.hpp"

namespace {

void send(mp::Queue<int> queue, int items) {
  for (int count = 1; count <= items; ++count) {
    queue.put(count);
    example::sleep(1);
  }
}

void receive(mp::Queue<int> queue, int items) {
  for (int i = 0; i < items; ++i) {
    example::say("Count:  %d\n", queue.get());
    example::sleep(1);
  }
}

}  // namespace

int main(int argc, char** argv) {
  mp::freeze_support(argc, argv);
  const auto args = example::parse_args(argc, argv, "[COUNT]");
  const int items = args.empty() ? 5 : std::atoi(args[0].c_str());

  mp::Queue<int> data_queue(10);
  mp::Process sender(&send, data_queue, items);
  mp::Process receiver(&receive, data_queue, items);
  sender.start();
  receiver.start();
  sender.join();
  receiver.join();
  return sender.exitcode() == 0 && receiver.exitcode() == 0 ? 0 : 1;
}
