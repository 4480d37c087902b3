// Futexes shared between processes (not FUTEX_PRIVATE: the word lives in a MAP_SHARED
// mapping, which the kernel keys by file and offset, so every process may map it at
// another address).
#pragma once

#include <time.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <optional>
#include <system_error>

namespace mp::posix {

// An absolute CLOCK_MONOTONIC time (the clock of std::chrono::steady_clock on Linux).
struct Deadline {
  std::optional<timespec> at;  // nullopt: never

  static Deadline never() noexcept { return {}; }
  // now + timeout (a negative timeout counts as zero).
  static Deadline after(std::chrono::nanoseconds timeout) noexcept;
  // The earlier of this deadline and now + `slice`.
  Deadline capped(std::chrono::nanoseconds slice) const noexcept;
  bool passed() const noexcept;
};

// Sleeps while `*word == expected`, until woken, the deadline or a signal.
// Returns {} when woken (or spuriously), std::errc::timed_out at the deadline (never
// earlier: the deadline is absolute), std::errc::resource_unavailable_try_again if
// `*word != expected` on entry, std::errc::interrupted on a signal.
[[nodiscard]] std::error_code futex_wait(const std::atomic<std::uint32_t>& word,
                                         std::uint32_t expected, const Deadline& deadline) noexcept;
// The same on the low 32 bits of a 64-bit word (little-endian only).
[[nodiscard]] std::error_code futex_wait_low(const std::atomic<std::uint64_t>& word,
                                             std::uint32_t expected,
                                             const Deadline& deadline) noexcept;

// Wakes at most `count` waiters of `word`; returns how many were woken.
int futex_wake(const std::atomic<std::uint32_t>& word, int count) noexcept;
int futex_wake_low(const std::atomic<std::uint64_t>& word, int count) noexcept;

// A hint to the CPU inside a spin loop.
inline void cpu_relax() noexcept {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield" ::: "memory");
#endif
}

}  // namespace mp::posix
