// The course programs that both the examples (example_array, ...) and mp-demo's
// subcommands run: one implementation each, called by the examples' main() and by
// mp-demo with their own command lines. Each program's file quotes the Python it
// reproduces and says where and why it differs.
#pragma once

#include <string>

namespace course {

// How a program runs, as its caller's command line says; passed to the children as an
// argument, so that every start method sees the same settings.
struct Settings {
  std::string start_method{};  // empty: mp's default (the caller may have set it)
  double time_scale = 0.05;    // seconds slept for each second the Python sleeps

  template <class Archive>
  void serialize(Archive& ar) {
    ar(start_method, time_scale);
  }
};

// "Process vs Thread": the same two functions as threads (which share the global
// value), then as processes (each has its own copy). Both return the exit status.
int process_vs_thread_with_threads(const Settings& settings);
int process_vs_thread_with_processes(const Settings& settings);

// "Data sharing between process: Value". shared_value passes an mp::Value<int>, so bar
// and main see foo's write; copied_int passes a plain int that each child copies.
enum class ValueKind { shared_value, copied_int };
int value(const Settings& settings, ValueKind kind = ValueKind::shared_value);

// "Data sharing between process: Buffer": foo uppercases `text` in a shared char
// array, bar turns its spaces into newlines. together runs both at once (bar prints
// the text before foo's edit); one_after_the_other runs foo to its end before bar starts
// (bar prints foo's edit). Either way the output never depends on timing.
enum class ArrayOrder { together, one_after_the_other };
int array(const Settings& settings, const std::string& text, ArrayOrder order);

// "Data sharing between process: dict or list": two processes read and change a
// manager's dict.
int manager_dict(const Settings& settings);

// Python's repr() of a bytes object: b'...' with \t \n \r \\ and \xhh escapes.
std::string bytes_repr(const std::string& bytes);

}  // namespace course
