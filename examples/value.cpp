// The course's "Data sharing between process: Value": an mp::Value<int> shared by two
// processes. The program, the Python it reproduces and where it differs are in
// course/value.cpp (mp-demo value runs the same code).
#include <mp/mp.hpp>

#include "course.hpp"
#include "example.hpp"

int main(int argc, char** argv) {
  mp::freeze_support(argc, argv);
  example::parse_args(argc, argv);
  return course::value({.time_scale = example::time_scale()});
}
