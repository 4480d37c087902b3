// The course's "Data sharing between process: dict or list": two processes read and
// change a manager's dict. The program, the Python it reproduces and where it differs
// are in course/manager_dict.cpp (mp-demo dict runs the same code).
#include <mp/mp.hpp>

#include "course.hpp"
#include "example.hpp"

int main(int argc, char** argv) {
  mp::freeze_support(argc, argv);
  example::parse_args(argc, argv);
  return course::manager_dict({.time_scale = example::time_scale()});
}
