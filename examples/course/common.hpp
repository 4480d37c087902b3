// What the course programs share inside the library: printing (the examples' say())
// and sleeping.
#pragma once

#include "../example.hpp"
#include "course.hpp"

namespace course::detail {

// printf, then flush (see example.hpp).
using example::say;

// Sleeps where the Python program sleeps `python_seconds`, scaled by the settings.
void sleep(const Settings& settings, double python_seconds);

}  // namespace course::detail
