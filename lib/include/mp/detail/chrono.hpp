// std::chrono's durations, time points and clocks, for mp's public headers. In C++20,
// libstdc++'s <chrono> also holds the calendar, the time zones and chrono::parse, and
// includes <sstream> for them: a tenth of what including <mp/mp.hpp> costs the compiler.
// What mp's headers use (and the chrono literals) is in its <bits/chrono.h>, which its
// own <thread> and <mutex> include; with another standard library, <chrono>. A program
// that uses the rest of std::chrono includes <chrono> itself, as it should anyway.
#pragma once

#include <mp/detail/export.hpp>

#include <version>

#if defined(_GLIBCXX_RELEASE) && _GLIBCXX_RELEASE >= 11 && __has_include(<bits/chrono.h>)
#include <bits/chrono.h>
#else
#include <chrono>
#endif
