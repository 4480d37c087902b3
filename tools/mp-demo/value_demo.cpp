// "Data sharing between process: Value" from the seeds (../shared/seeds/001_*.txt). The
// Python:
//
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
//       value = Value("i", 100)
//       t1 = Process(target=foo, args=(value,))
//       t2 = Process(target=bar, args=(value,))
//       t1.start(); t2.start(); t1.join(); t2.join()
//       print("In main: value =", value.value)
//
// prints "In main: value = 1234", and bar's second line shows 1234: the value lives in
// shared memory. With --unshared the same program passes a plain int, so each child
// changes its own copy and everyone else still sees 100 (the "process" demo's lesson).
//
// The seed relies on its 1 s margin between foo's write and bar's second read, counted
// from each child's own start. A spawned child may take longer to start than `delay`,
// so here both children meet at a Barrier after their first line and count their sleeps
// from there: bar's second read always comes `delay` after foo's write.
#include <cstdio>
#include <string>

#include <mp/mp.hpp>

#include "demos.hpp"

namespace mp_demo {
namespace {

// What --unshared passes instead of a Value: an int that is copied into each child.
struct UnsharedValue {
  int number = 0;
  int value() const { return number; }
  void set_value(int new_value) { number = new_value; }

  template <class Archive>
  void serialize(Archive& ar) {
    ar(number);
  }
};

template <class V>
void foo(V val, mp::Barrier start_together, Options options) {
  const std::string& name = mp::current_process().name();
  std::printf("In foo[%s]: value = %d\n", name.c_str(), val.value());
  std::fflush(stdout);
  start_together.wait();
  pause(options, 2);
  val.set_value(1234);
  std::printf("In foo[%s]: value is set to %d\n", name.c_str(), val.value());
  std::fflush(stdout);
}

template <class V>
void bar(V val, mp::Barrier start_together, Options options) {
  const std::string& name = mp::current_process().name();
  std::printf("In bar[%s]: value = %d\n", name.c_str(), val.value());
  std::fflush(stdout);
  start_together.wait();
  pause(options, 3);
  std::printf("In bar[%s]: value = %d\n", name.c_str(), val.value());
  std::fflush(stdout);
}

template <class V>
int run(const Options& options, V value) {
  mp::Barrier start_together(2);
  mp::Process t1({.start_method = options.start_method}, &foo<V>, value, start_together, options);
  mp::Process t2({.start_method = options.start_method}, &bar<V>, value, start_together, options);
  t1.start();
  t2.start();
  t1.join();
  t2.join();
  std::printf("In main: value = %d\n", value.value());
  return t1.exitcode() == 0 && t2.exitcode() == 0 ? 0 : 1;
}

}  // namespace

int value_demo(const Options& options) {
  if (!options.positional.empty()) throw UsageError{"value takes no arguments"};
  if (options.unshared) return run(options, UnsharedValue{100});
  return run(options, mp::Value<int>(100));
}

}  // namespace mp_demo
