// "Data sharing between process: Buffer", from the seeds (../shared/seeds/001_*.txt): "to
// share a buffer(contiguous memory chunk of same type) use Array from multiprocessing
// module". The Python:
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
// which runs first. As in the value example, both children wait at a Barrier after their
// first line, so that a slow start cannot let bar print foo's edit. "In main: value ="
// prints the repr without the object's address, which changes from run to run.
//
// Usage: example_array [TEXT...]  (the words are joined with spaces; without any, one
// line is read from standard input after the prompt, as input() does).
#include <iostream>
#include <span>
#include <string>

#include <mp/mp.hpp>

#include "example.hpp"

namespace {

// Python's repr() of a bytes object: b'...' with \t \n \r \\ and \xhh escapes.
std::string bytes_repr(const std::string& bytes) {
  const bool has_single = bytes.find('\'') != std::string::npos;
  const bool has_double = bytes.find('"') != std::string::npos;
  const char quote = has_single && !has_double ? '"' : '\'';
  std::string out = "b";
  out += quote;
  for (unsigned char c : bytes) {
    if (c == static_cast<unsigned char>(quote) || c == '\\') {
      out += '\\';
      out += static_cast<char>(c);
    } else if (c == '\t') {
      out += "\\t";
    } else if (c == '\n') {
      out += "\\n";
    } else if (c == '\r') {
      out += "\\r";
    } else if (c < 0x20 || c >= 0x7f) {
      char hex[5];
      std::snprintf(hex, sizeof hex, "\\x%02x", c);
      out += hex;
    } else {
      out += static_cast<char>(c);
    }
  }
  out += quote;
  return out;
}

void foo(mp::Array<char> arr, mp::Barrier started) {
  const std::string& t = mp::current_process().name();
  example::say("In foo[%s]: array = %s\n", t.c_str(), bytes_repr(arr.raw()).c_str());
  started.wait();
  example::sleep(2);
  arr.update([](std::span<char> text) {  // arr.raw = arr.raw.upper(), under the lock
    for (char& c : text)
      if (c >= 'a' && c <= 'z') c = static_cast<char>(c - 32);
  });
}

void bar(mp::Array<char> arr, mp::Barrier started) {
  const std::string& t = mp::current_process().name();
  example::say("In bar[%s]: value = %s\n", t.c_str(), bytes_repr(arr.raw()).c_str());
  started.wait();
  example::sleep(3);
  arr.update([](std::span<char> text) {  // arr.raw = arr.raw.replace(b' ', b'\n')
    for (char& c : text)
      if (c == ' ') c = '\n';
  });
}

}  // namespace

int main(int argc, char** argv) {
  mp::freeze_support(argc, argv);
  const auto words = example::parse_args(argc, argv, "[TEXT...]");

  std::string s;
  if (!words.empty()) {
    for (const auto& word : words) s += (s.empty() ? "" : " ") + word;
  } else {
    example::say("Enter a string: ");
    std::getline(std::cin, s);
  }
  mp::Array<char> array(s);

  mp::Barrier started(2);
  mp::Process t1(&foo, array, started);
  mp::Process t2(&bar, array, started);
  t1.start();
  t2.start();
  t1.join();
  t2.join();
  example::say(
      "In main: value = <SynchronizedString wrapper for "
      "<multiprocessing.sharedctypes.c_char_Array_%zu object>>\n",
      array.size());
  example::say("String = %s\n", bytes_repr(array.raw()).c_str());
  return t1.exitcode() == 0 && t2.exitcode() == 0 ? 0 : 1;
}
