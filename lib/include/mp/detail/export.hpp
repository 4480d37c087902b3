// MP_API marks a declaration that libmp (and libmp_listener) export: every non-template
// class, function and variable of mp that a user's program may reach, directly or
// through an inline function or template of a public header. The libraries are built
// with hidden visibility, so anything unmarked stays inside them; in a static build the
// mark changes nothing.
#pragma once

#if defined(__GNUC__) || defined(__clang__)
#define MP_API __attribute__((visibility("default")))
#else
#define MP_API
#endif
