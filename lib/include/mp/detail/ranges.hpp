// What mp's public headers use of <ranges> and <algorithm>, at a fraction of their
// compile time: the range concepts and accessors (std::ranges::input_range, sized_range,
// view, range_value_t, begin, end, size...) and the classic algorithms (std::find,
// std::stable_sort...). Never the views, range adaptors or constrained algorithms, which
// are most of what <ranges> and <algorithm> cost every file that includes <mp/mp.hpp>
// (with libstdc++ 12, <ranges> alone is a tenth of it). libstdc++ declares what mp uses
// in the two headers below; another standard library gets the standard headers. Code that
// uses views includes <ranges> itself.
#pragma once

#include <mp/detail/export.hpp>

#if __has_include(<bits/ranges_base.h>) && __has_include(<bits/stl_algo.h>)
// What libstdc++'s internal headers below expect their includers to have included.
#include <initializer_list>
#include <iterator>

#include <bits/ranges_base.h>
#include <bits/stl_algo.h>
#include <bits/stl_algobase.h>
#else
#include <algorithm>
#include <ranges>
#endif
