// Included first by every header of mp: the language check, then MP_API.
//
// mp needs C++20 (concepts, ranges, std::span, <bit>). Without it the first error would
// come from deep inside a detail header, followed by a thousand more: say it at once.
//
// MP_API marks a declaration that libmp (and libmp_listener) export: every non-template
// class, function and variable of mp that a user's program may reach, directly or
// through an inline function or template of a public header. The libraries are built
// with hidden visibility, so anything unmarked stays inside them; in a static build the
// mark changes nothing.
#pragma once

#if !defined(__cplusplus) || __cplusplus < 202002L
#error "mp needs C++20: compile with -std=c++20 or later (pkg-config --cflags mp has it)"
#endif

#if defined(__GNUC__) || defined(__clang__)
#define MP_API __attribute__((visibility("default")))
#else
#define MP_API
#endif
