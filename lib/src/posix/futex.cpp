#include "posix/futex.hpp"

#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <bit>
#include <cerrno>
#include <climits>

namespace mp::posix {
namespace {

static_assert(std::endian::native == std::endian::little,
              "futex_wait_low assumes the low half of a 64-bit word comes first");
static_assert(sizeof(std::atomic<std::uint32_t>) == 4 && sizeof(std::atomic<std::uint64_t>) == 8);

timespec now_monotonic() noexcept {
  timespec now{};
  ::clock_gettime(CLOCK_MONOTONIC, &now);
  return now;
}

timespec add(timespec t, std::chrono::nanoseconds d) noexcept {
  if (d < std::chrono::nanoseconds::zero()) d = std::chrono::nanoseconds::zero();
  const auto secs = std::chrono::duration_cast<std::chrono::seconds>(d);
  // Far-future deadlines saturate instead of overflowing time_t.
  if (secs.count() > (std::int64_t{1} << 40)) {
    t.tv_sec += std::int64_t{1} << 40;
    return t;
  }
  t.tv_sec += static_cast<time_t>(secs.count());
  t.tv_nsec += static_cast<long>((d - secs).count());
  if (t.tv_nsec >= 1'000'000'000) {
    t.tv_nsec -= 1'000'000'000;
    ++t.tv_sec;
  }
  return t;
}

bool before(const timespec& a, const timespec& b) noexcept {
  return a.tv_sec < b.tv_sec || (a.tv_sec == b.tv_sec && a.tv_nsec < b.tv_nsec);
}

std::error_code wait_on(const void* address, std::uint32_t expected,
                        const Deadline& deadline) noexcept {
  // FUTEX_WAIT_BITSET takes an absolute CLOCK_MONOTONIC time (FUTEX_WAIT a relative
  // one, which would have to be recomputed after every EINTR).
  const timespec* at = deadline.at ? &*deadline.at : nullptr;
  long rc = ::syscall(SYS_futex, address, FUTEX_WAIT_BITSET, expected, at, nullptr,
                      FUTEX_BITSET_MATCH_ANY);
  if (rc == 0) return {};
  switch (errno) {
    case ETIMEDOUT:
      return std::make_error_code(std::errc::timed_out);
    case EAGAIN:
      return std::make_error_code(std::errc::resource_unavailable_try_again);
    case EINTR:
      return std::make_error_code(std::errc::interrupted);
    default:
      return {errno, std::system_category()};
  }
}

int wake(const void* address, int count) noexcept {
  long rc = ::syscall(SYS_futex, address, FUTEX_WAKE, count, nullptr, nullptr, 0);
  return rc < 0 ? 0 : static_cast<int>(rc);
}

}  // namespace

Deadline Deadline::after(std::chrono::nanoseconds timeout) noexcept {
  return Deadline{add(now_monotonic(), timeout)};
}

Deadline Deadline::capped(std::chrono::nanoseconds slice) const noexcept {
  const timespec cap = add(now_monotonic(), slice);
  if (at && before(*at, cap)) return *this;
  return Deadline{cap};
}

bool Deadline::passed() const noexcept { return at && !before(now_monotonic(), *at); }

std::error_code futex_wait(const std::atomic<std::uint32_t>& word, std::uint32_t expected,
                           const Deadline& deadline) noexcept {
  return wait_on(&word, expected, deadline);
}

std::error_code futex_wait_low(const std::atomic<std::uint64_t>& word, std::uint32_t expected,
                               const Deadline& deadline) noexcept {
  return wait_on(&word, expected, deadline);
}

int futex_wake(const std::atomic<std::uint32_t>& word, int count) noexcept {
  return wake(&word, count);
}

int futex_wake_low(const std::atomic<std::uint64_t>& word, int count) noexcept {
  return wake(&word, count);
}

}  // namespace mp::posix
