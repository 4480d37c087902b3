// Process pools, from the course notes ("Process Pools"):
//
//   import multiprocessing
//
//   def do_work(data):
//       return data**2
//
//   def start_process():
//       print('starting', multiprocessing.current_process().name)
//
//   if _name_ == '__main__':
//       pool_size = multiprocessing.cpu_count() * 2
//       pool = multiprocessing.Pool(processes=pool_size, initializer=start_process)
//       inputs=list(range(10))
//       outputs=pool.map(do_work, inputs)
//       print('Outputs:', outputs)
//
//       pool.close() # no more tasks
//       pool.join() # wait for the worker processes to exit
//
// prints (on 2 CPUs, with fork)
//   starting ForkPoolWorker-1
//   starting ForkPoolWorker-2
//   starting ForkPoolWorker-3
//   starting ForkPoolWorker-4
//   Outputs: [0, 1, 4, 9, 16, 25, 36, 49, 64, 81]
//
// The same with mp: the initializer and the task are plain functions (a captureless
// lambda would do as well) and work with fork and spawn workers alike. (The seed's
// `_name_` is a typo for `__name__`.)
#include <vector>

#include <mp/mp.hpp>

#include "example.hpp"

namespace {

int do_work(int data) { return data * data; }

void start_process() { example::say("starting %s\n", mp::current_process().name().c_str()); }

}  // namespace

int main(int argc, char** argv) {
  mp::freeze_support(argc, argv);
  example::parse_args(argc, argv);

  const int pool_size = mp::cpu_count() * 2;
  mp::Pool pool({.processes = pool_size, .initializer = mp::initializer(&start_process)});
  std::vector<int> inputs;
  for (int i = 0; i < 10; ++i) inputs.push_back(i);
  const std::vector<int> outputs = pool.map(&do_work, inputs);
  example::say("Outputs: %s\n", example::list_repr(outputs).c_str());

  pool.close();  // no more tasks
  pool.join();   // wait for the worker processes to exit
  return 0;
}
