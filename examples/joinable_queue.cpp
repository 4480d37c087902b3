// JoinableQueue: task_done() and join(). The course notes ("Inbuilt- Queue")
// list them:
//
//   # wait for a element to be pciked
//   q.join()
//
//   # consumer can use this method to to notify producer who is waiting for this value to be
//   consumed q.task_done()
//
// and the Python documentation's example shows them at work (queue module, with threads;
// multiprocessing.JoinableQueue with processes is the same):
//
//   def worker():
//       while True:
//           item = q.get()
//           print(f'Working on {item}')
//           print(f'Finished {item}')
//           q.task_done()
//
//   # Turn-on the worker thread.
//   threading.Thread(target=worker, daemon=True).start()
//
//   # Send thirty task requests to the worker.
//   for item in range(30):
//       q.put(item)
//
//   # Block until all tasks are done.
//   q.join()
//   print('All work completed')
//
// Here the worker is a daemon process (killed when main ends, as the daemon thread is),
// and ten tasks go through an mp::JoinableQueue<int>.
#include <mp/mp.hpp>

#include "example.hpp"

namespace {

void worker(mp::JoinableQueue<int> q) {
  while (true) {
    const int item = q.get();
    example::say("Working on %d\n", item);
    example::say("Finished %d\n", item);
    q.task_done();
  }
}

}  // namespace

int main(int argc, char** argv) {
  mp::freeze_support(argc, argv);
  example::parse_args(argc, argv);

  mp::JoinableQueue<int> q;
  // Turn on the worker process.
  mp::Process consumer({.daemon = true}, &worker, q);
  consumer.start();

  // Send ten task requests to the worker.
  for (int item = 0; item < 10; ++item) q.put(item);

  // Block until all tasks are done.
  q.join();
  example::say("All work completed\n");
  return 0;
}
