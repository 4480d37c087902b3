// "Data sharing between process: Buffer" from the seeds (../shared/seeds/001_*.txt),
// done as it intends. The Python:
//
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
//       t1 = Process(target=foo, args=(array,))
//       t2 = Process(target=bar, args=(array,))
//       t1.start(); t2.start(); t1.join(); t2.join()
//       print("In main: value =", array)
//       print("String =", bytes(array))
//
// The seed means: foo uppercases the text, bar turns its spaces into newlines. As
// written it does neither: Array("i", ...) holds ints (bytes(arr) is their raw 4-byte
// encoding), foo subtracts 32 from every element (spaces become NULs, so bar finds none,
// and bar's b'\n' would not fit an int array anyway), and the outcome hangs on the sleeps.
// Here the array is a char array (Python: Array('c', ...)), foo uppercases only the
// letters a-z, and the children run one after the other, each editing the whole array
// atomically with Array::update(): the output never depends on timing.
//
// The text is TEXT (several arguments are joined with spaces) or else all of stdin,
// without one final newline (as input() drops it). The prompt goes to stderr, and only
// when stdin is a terminal. "In main: value =" prints what Python prints for the array,
// without the object's address (which changes from run to run).
#include <unistd.h>

#include <cstdio>
#include <iostream>
#include <iterator>
#include <span>
#include <string>

#include <mp/mp.hpp>

#include "demos.hpp"

namespace mp_demo {
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

void foo(mp::Array<char> arr, Options options) {
  const std::string& name = mp::current_process().name();
  std::printf("In foo[%s]: array = %s\n", name.c_str(), bytes_repr(arr.raw()).c_str());
  std::fflush(stdout);
  pause(options, 2);
  arr.update([](std::span<char> text) {
    for (char& c : text)
      if (c >= 'a' && c <= 'z') c = static_cast<char>(c - 32);
  });
}

void bar(mp::Array<char> arr, Options options) {
  const std::string& name = mp::current_process().name();
  std::printf("In bar[%s]: value = %s\n", name.c_str(), bytes_repr(arr.raw()).c_str());
  std::fflush(stdout);
  pause(options, 3);
  arr.update([](std::span<char> text) {
    for (char& c : text)
      if (c == ' ') c = '\n';
  });
}

std::string input_text(const Options& options) {
  if (!options.positional.empty()) {
    std::string text = options.positional[0];
    for (std::size_t i = 1; i < options.positional.size(); ++i) text += " " + options.positional[i];
    return text;
  }
  if (::isatty(STDIN_FILENO)) std::fputs("Enter a string: ", stderr);
  std::string text(std::istreambuf_iterator<char>(std::cin), {});
  if (!text.empty() && text.back() == '\n') text.pop_back();
  return text;
}

}  // namespace

int array_demo(const Options& options) {
  if (options.unshared) throw UsageError{"--unshared is an option of the value demo"};
  const std::string text = input_text(options);
  mp::Array<char> array(text);

  mp::Process t1({.start_method = options.start_method}, &foo, array, options);
  mp::Process t2({.start_method = options.start_method}, &bar, array, options);
  t1.start();
  t1.join();  // one after the other: see the top of this file
  t2.start();
  t2.join();
  std::printf(
      "In main: value = <SynchronizedString wrapper for "
      "<multiprocessing.sharedctypes.c_char_Array_%zu object>>\n",
      array.size());
  std::printf("String = %s\n", bytes_repr(array.raw()).c_str());
  return t1.exitcode() == 0 && t2.exitcode() == 0 ? 0 : 1;
}

}  // namespace mp_demo
