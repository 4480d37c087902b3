// "Data sharing between process: Buffer", from the course notes (001): "to share a
// buffer(contiguous memory chunk of same type) use Array from multiprocessing module".
// The Python:
//
//   # Buffer example
//   from multiprocessing import Process, Array, current_process
//   from time import sleep
//
//   def foo(arr):
//       t = current_process()
//       print(f"In foo[{t.name}]: array = {bytes(arr)}")
//       sleep(2)
//       for i, v in enumerate(arr):
//           arr[i] = v - 32
//
//   def bar(arr):
//       t = current_process()
//       print(f"In bar[{t.name}]: value = {bytes(arr)}")
//       sleep(3)
//       for i, v in enumerate(arr):
//           if v == 32:
//               arr[i] = b'\n'
//
//   if __name__ == '__main__':
//       s = input("Enter a string: ")
//       array = Array("i", bytes(s, "utf8"))
//
//       t1 = Process(target=foo, args=(array,))
//       t2 = Process(target=bar, args=(array,))
//       t1.start()
//       t2.start()
//       t1.join()
//       t2.join()
//       print("In main: value =", array)
//       print("String =", bytes(array))
//
// The seed means: foo uppercases the text, bar turns its spaces into newlines. As written
// it does neither: Array("i", ...) holds ints, so bytes(arr) is their raw 4-byte encoding;
// foo subtracts 32 from every element, spaces included (they become NULs, so bar finds
// none, and b'\n' would not fit an int array anyway); and each element is locked alone,
// so the result would hang on the sleeps if the edits overlapped. Done right, in Python:
//
//   def foo(arr):
//       t = current_process()
//       print(f"In foo[{t.name}]: array = {arr.raw}")
//       sleep(2)
//       with arr.get_lock():
//           arr.raw = arr.raw.upper()
//
//   def bar(arr):
//       t = current_process()
//       print(f"In bar[{t.name}]: value = {arr.raw}")
//       sleep(3)
//       with arr.get_lock():
//           arr.raw = arr.raw.replace(b' ', b'\n')
//
//   ... array = Array("c", bytes(s, "utf8")) ... print("String =", array.raw)
//
// which, for "hello world from mp", prints
//   Enter a string: hello world from mp
//   In foo[Process-1]: array = b'hello world from mp'
//   In bar[Process-2]: value = b'hello world from mp'
//   In main: value = <SynchronizedString wrapper for <multiprocessing.sharedctypes.
//   c_char_Array_19 object at 0x7f...>>
//   String = b'HELLO\nWORLD\nFROM\nMP'
// (the line with the repr is one line, cut here).
// This program does that: a char array, each edit of the whole array made under the
// array's lock with Array::update(). The two edits commute, so the result never depends on
// which runs first. Run together, both children wait at a Barrier after their first line,
// as in the value program, so that a slow start cannot let bar print foo's edit; run one
// after the other, bar starts once foo has finished and prints its edit. "In main: value
// =" prints the repr without the object's address, which changes from run to run.
#include <span>
#include <string>

#include <mp/mp.hpp>

#include "common.hpp"

namespace course {
namespace {

using detail::say;

void foo(mp::Array<char> arr, mp::Barrier started, Settings settings) {
  const std::string& t = mp::current_process().name();
  say("In foo[%s]: array = %s\n", t.c_str(), bytes_repr(arr.raw()).c_str());
  started.wait();
  detail::sleep(settings, 2);
  arr.update([](std::span<char> text) {  // arr.raw = arr.raw.upper(), under the lock
    for (char& c : text)
      if (c >= 'a' && c <= 'z') c = static_cast<char>(c - 32);
  });
}

void bar(mp::Array<char> arr, mp::Barrier started, Settings settings) {
  const std::string& t = mp::current_process().name();
  say("In bar[%s]: value = %s\n", t.c_str(), bytes_repr(arr.raw()).c_str());
  started.wait();
  detail::sleep(settings, 3);
  arr.update([](std::span<char> text) {  // arr.raw = arr.raw.replace(b' ', b'\n')
    for (char& c : text)
      if (c == ' ') c = '\n';
  });
}

}  // namespace

int array(const Settings& settings, const std::string& text, ArrayOrder order) {
  mp::Array<char> array(text);
  // One after the other, each child is alone at its barrier.
  mp::Barrier started(order == ArrayOrder::together ? 2 : 1);
  mp::Process t1({.start_method = settings.start_method}, &foo, array, started, settings);
  mp::Process t2({.start_method = settings.start_method}, &bar, array, started, settings);
  t1.start();
  if (order == ArrayOrder::one_after_the_other) t1.join();
  t2.start();
  t1.join();
  t2.join();
  say("In main: value = <SynchronizedString wrapper for "
      "<multiprocessing.sharedctypes.c_char_Array_%zu object>>\n",
      array.size());
  say("String = %s\n", bytes_repr(array.raw()).c_str());
  return t1.exitcode() == 0 && t2.exitcode() == 0 ? 0 : 1;
}

}  // namespace course
