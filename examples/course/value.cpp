// "Data sharing between process: Value", from the course notes (001): "Use Value class
// in multiprocessing module to share primitive datatype objects. It should be passed in
// constructor if it has to be shared between processes". The Python:
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
// The value lives in shared memory, so bar and main see foo's write. With
// ValueKind::copied_int the same program passes a plain int instead, so each child
// changes its own copy and everyone else still sees 100 (compare with
// process_vs_thread, where each process changes its own copy of a global).
//
// The type is a template argument (Value<int>, not Value("i", ...)). The seed relies on
// bar reading 1 s after foo's write, counted from each child's own start; here both wait
// at a Barrier after their first line, so that a slow start (a spawned child's, say)
// cannot change what is printed.
#include <string>

#include <mp/mp.hpp>

#include "common.hpp"

namespace course {
namespace {

using detail::say;

// What ValueKind::copied_int passes instead of a Value: an int copied into each child.
struct CopiedInt {
  int number = 0;
  int value() const { return number; }
  void set_value(int new_value) { number = new_value; }

  template <class Archive>
  void serialize(Archive& ar) {
    ar(number);
  }
};

// What foo and bar do first: say the value they see, wait for each other, then sleep
// `seconds`. Returns the process's name.
template <class V>
std::string start_together(const char* who, const V& val, mp::Barrier& started,
                           const Settings& settings, int seconds) {
  std::string t = mp::current_process().name();
  say("In %s[%s]: value = %d\n", who, t.c_str(), val.value());
  started.wait();
  detail::sleep(settings, seconds);
  return t;
}

template <class V>
void foo(V val, mp::Barrier started, Settings settings) {
  const std::string t = start_together("foo", val, started, settings, 2);
  val.set_value(1234);
  say("In foo[%s]: value is set to %d\n", t.c_str(), val.value());
}

template <class V>
void bar(V val, mp::Barrier started, Settings settings) {
  const std::string t = start_together("bar", val, started, settings, 3);
  say("In bar[%s]: value = %d\n", t.c_str(), val.value());
}

template <class V>
int run(const Settings& settings, V value) {
  mp::Barrier started(2);
  mp::Process t1({.start_method = settings.start_method}, &foo<V>, value, started, settings);
  mp::Process t2({.start_method = settings.start_method}, &bar<V>, value, started, settings);
  t1.start();
  t2.start();
  t1.join();
  t2.join();
  say("In main: value = %d\n", value.value());
  return t1.exitcode() == 0 && t2.exitcode() == 0 ? 0 : 1;
}

}  // namespace

int value(const Settings& settings, ValueKind kind) {
  if (kind == ValueKind::copied_int) return run(settings, CopiedInt{100});
  return run(settings, mp::Value<int>(100));
}

}  // namespace course
