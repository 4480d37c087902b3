// CPython's multiprocessing.connection frame header (Framing::python), shared by
// connection.cpp and the tests. A frame is a 4-byte big-endian signed length, then the
// body; a body longer than 0x7fffffff is announced by -1 and an 8-byte big-endian length.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>

namespace mp::detail {

// Bodies longer than this are sent with the -1 escape; CPython's value. Tests lower it
// to exercise the escape without 2 GiB messages; nothing else changes it.
inline constexpr std::uint64_t kPythonShortFrameMax = 0x7fffffff;
extern std::atomic<std::uint64_t> python_long_frame_threshold;

// Writes the header of a body of `length` bytes into `out` (12 bytes of room); returns
// its size (4 or 12).
std::size_t python_frame_header(std::uint64_t length, unsigned char* out) noexcept;

}  // namespace mp::detail
