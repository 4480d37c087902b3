// "Data sharing between process: Value", from the seeds (../shared/seeds/001_*.txt):
// "Use Value class in multiprocessing module to share primitive datatype objects. It
// should be passed in constructor if it has to be shared between processes". The Python:
//
//   # value example
//   from multiprocessing import Process, Value, current_process
//   from time import sleep
//
//   def foo(val):
//       t = current_process()
//       print(f"In foo[{t.name}]: value = {val.value}")
//       sleep(2)
//       val.value = 1234
//       print(f"In foo[{t.name}]: value is set to {val.value}")
//
//   def bar(val):
//       t = current_process()
//       print(f"In bar[{t.name}]: value = {val.value}")
//       sleep(3)
//       print(f"In bar[{t.name}]: value = {val.value}")
//
//   if __name__ == '__main__':
//       # here 'i' is the ctype argument telling Value class of which type the argument is
//       value = Value("i", 100)
//       # value has to be passed as an argument
//       t1 = Process(target=foo, args=(value,))
//       t2 = Process(target=bar, args=(value,))
//       t1.start()
//       t2.start()
//       t1.join()
//       t2.join()
//       print("In main: value =", value.value)
//
// prints
//   In foo[Process-1]: value = 100
//   In bar[Process-2]: value = 100
//   In foo[Process-1]: value is set to 1234
//   In bar[Process-2]: value = 1234
//   In main: value = 1234
// The value lives in shared memory, so bar and main see foo's write (compare with
// process_vs_thread, where each process changes its own copy).
//
// The type is a template argument (Value<int>, not Value("i", ...)). The seed relies on
// bar reading 1 s after foo's write, counted from each child's own start; here both wait
// at a Barrier after their first line, so that a slow start (a spawned child's, say)
// cannot change what is printed.
#include <string>

#include <mp/mp.hpp>

#include "example.hpp"

namespace {

void foo(mp::Value<int> val, mp::Barrier started) {
  const std::string& t = mp::current_process().name();
  example::say("In foo[%s]: value = %d\n", t.c_str(), val.value());
  started.wait();
  example::sleep(2);
  val.set_value(1234);
  example::say("In foo[%s]: value is set to %d\n", t.c_str(), val.value());
}

void bar(mp::Value<int> val, mp::Barrier started) {
  const std::string& t = mp::current_process().name();
  example::say("In bar[%s]: value = %d\n", t.c_str(), val.value());
  started.wait();
  example::sleep(3);
  example::say("In bar[%s]: value = %d\n", t.c_str(), val.value());
}

}  // namespace

int main(int argc, char** argv) {
  mp::freeze_support(argc, argv);
  example::parse_args(argc, argv);

  mp::Value<int> value(100);
  mp::Barrier started(2);
  mp::Process t1(&foo, value, started);
  mp::Process t2(&bar, value, started);
  t1.start();
  t2.start();
  t1.join();
  t2.join();
  example::say("In main: value = %d\n", value.value());
  return t1.exitcode() == 0 && t2.exitcode() == 0 ? 0 : 1;
}
