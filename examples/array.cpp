// The course's "Data sharing between process: Buffer": two processes edit a shared char
// array. The program, the Python it reproduces and where it differs are in
// course/array.cpp (mp-demo array runs the same code).
//
// Usage: example_array [TEXT...]  (the words are joined with spaces; without any, one
// line is read from standard input after the prompt, as input() does).
#include <iostream>
#include <string>

#include <mp/mp.hpp>

#include "course.hpp"
#include "example.hpp"

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
  return course::array({.time_scale = example::time_scale()}, s, course::ArrayOrder::together);
}
