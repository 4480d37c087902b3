// The subcommands: each checks what only mp-demo's command line can get wrong, then
// runs the course program that the examples run too (examples/course).
#include <unistd.h>

#include <cstdio>
#include <iostream>
#include <iterator>
#include <string>

#include "course.hpp"
#include "demos.hpp"

namespace mp_demo {
namespace {

// The seeds sleep 2 s and 3 s; the demos sleep 2*delay and 3*delay.
course::Settings settings_of(const Options& options) {
  return {.start_method = options.start_method, .time_scale = options.delay.count()};
}

void take_no_arguments(const Options& options, const std::string& demo) {
  if (!options.positional.empty()) throw UsageError{demo + " takes no arguments"};
}

void refuse_unshared(const Options& options) {
  if (options.unshared) throw UsageError{"--unshared is an option of the value demo"};
}

// TEXT (several arguments are joined with spaces) or else all of stdin, without one
// final newline (as input() drops it). The prompt goes to stderr, and only when stdin is
// a terminal, so that what is printed stays the program's output.
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

// Processes only: the threads' half of the lesson is the example's.
int process_demo(const Options& options) {
  take_no_arguments(options, "process");
  refuse_unshared(options);
  return course::process_vs_thread_with_processes(settings_of(options));
}

int value_demo(const Options& options) {
  take_no_arguments(options, "value");
  return course::value(settings_of(options), options.unshared ? course::ValueKind::copied_int
                                                              : course::ValueKind::shared_value);
}

// One child after the other, so that bar prints foo's edit.
int array_demo(const Options& options) {
  refuse_unshared(options);
  return course::array(settings_of(options), input_text(options),
                       course::ArrayOrder::one_after_the_other);
}

int dict_demo(const Options& options) {
  take_no_arguments(options, "dict");
  return course::manager_dict(settings_of(options));
}

}  // namespace mp_demo
