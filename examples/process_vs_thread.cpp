// The course's "Process vs Thread": the same program with threads, which share a
// global, then with processes, which each change their own copy. The program, the Python
// it reproduces and where it differs are in course/process_vs_thread.cpp (mp-demo
// process runs its second half).
#include <mp/mp.hpp>

#include "course.hpp"
#include "example.hpp"

int main(int argc, char** argv) {
  mp::freeze_support(argc, argv);
  example::parse_args(argc, argv);
  const course::Settings settings{.time_scale = example::time_scale()};
  const int threads_status = course::process_vs_thread_with_threads(settings);
  const int processes_status = course::process_vs_thread_with_processes(settings);
  return threads_status != 0 ? threads_status : processes_status;
}
