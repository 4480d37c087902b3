#include "functions.hpp"

#include <openssl/evp.h>

#include <algorithm>
#include <charconv>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <numeric>
#include <stdexcept>
#include <thread>
#include <type_traits>

namespace mp_map {
namespace {

using u64 = unsigned long long;
__extension__ typedef unsigned __int128 u128;  // GCC's, exact for 64x64 bits

std::string_view trim(std::string_view text) {
  const auto space = [](char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; };
  while (!text.empty() && space(text.front())) text.remove_prefix(1);
  while (!text.empty() && space(text.back())) text.remove_suffix(1);
  return text;
}

template <class Int>
Int parse_integer(std::string_view item, const char* what) {
  const std::string_view text = trim(item);
  // Exactly an optional sign and decimal digits: from_chars alone would take the '-' of
  // "+-5" after a '+' removed here.
  std::string_view digits = text;
  const bool negative = !digits.empty() && digits.front() == '-';
  if (!digits.empty() && (digits.front() == '+' || negative)) digits.remove_prefix(1);
  if (digits.empty() || digits.find_first_not_of("0123456789") != std::string_view::npos)
    throw std::invalid_argument(std::string("not ") + what);
  if (negative && !std::is_signed_v<Int>) {
    if (digits.find_first_not_of('0') == std::string_view::npos) return Int{0};  // "-0"
    throw std::invalid_argument(std::string("not ") + what);
  }
  Int value{};
  const auto [end, ec] =
      std::from_chars(negative ? text.data() : digits.data(), digits.data() + digits.size(), value);
  if (ec == std::errc::invalid_argument || end != digits.data() + digits.size())
    throw std::invalid_argument(std::string("not ") + what);
  if (ec == std::errc::result_out_of_range)
    throw std::invalid_argument(std::string("out of range (") + what + ")");
  return value;
}

std::string to_decimal(u128 value) {
  if (value <= static_cast<u128>(~u64{0})) {  // the common case: no 128-bit division
    char digits[24];
    const auto end = std::to_chars(digits, digits + sizeof digits, static_cast<u64>(value)).ptr;
    return std::string(digits, end);
  }
  std::string out;
  while (value != 0) {
    out.push_back(static_cast<char>('0' + static_cast<int>(value % 10)));
    value /= 10;
  }
  std::reverse(out.begin(), out.end());
  return out;
}

u64 mul_mod(u64 a, u64 b, u64 m) { return static_cast<u64>(static_cast<u128>(a) * b % m); }

u64 pow_mod(u64 base, u64 exponent, u64 m) {
  u64 result = 1 % m;
  base %= m;
  while (exponent != 0) {
    if (exponent & 1) result = mul_mod(result, base, m);
    base = mul_mod(base, base, m);
    exponent >>= 1;
  }
  return result;
}

// Pollard's rho (Brent's variant) for an odd composite n.
u64 find_divisor(u64 n) {
  for (u64 c = 1;; ++c) {
    u64 x = 2, y = 2, d = 1;
    auto f = [&](u64 v) { return (mul_mod(v, v, n) + c) % n; };
    while (d == 1) {
      x = f(x);
      y = f(f(y));
      d = std::gcd(x > y ? x - y : y - x, n);
    }
    if (d != n) return d;
  }
}

void factor_into(u64 n, std::vector<u64>& out) {
  if (n == 1) return;
  if (is_prime(n)) {
    out.push_back(n);
    return;
  }
  const u64 d = find_divisor(n);
  factor_into(d, out);
  factor_into(n / d, out);
}

// ---- the functions ----

std::string square(std::string_view item) {
  const long long x = parse_integer<long long>(item, "an integer");
  const u128 magnitude = x < 0 ? u128{0} - static_cast<u128>(x) : static_cast<u128>(x);
  return to_decimal(magnitude * magnitude);
}

std::string isprime(std::string_view item) {
  return is_prime(parse_integer<u64>(item, "a non-negative integer")) ? "true" : "false";
}

std::string count_primes(std::string_view item) {
  const u64 n = parse_integer<u64>(item, "a non-negative integer");
  if (n > 100'000'000'000ULL) throw std::invalid_argument("too large (at most 10^11)");
  return std::to_string(count_primes_below(n));
}

std::string fib(std::string_view item) {
  const u64 n = parse_integer<u64>(item, "a non-negative integer");
  if (n > 100'000) throw std::invalid_argument("too large (at most 100000)");
  return fibonacci(static_cast<unsigned>(n));
}

std::string factor(std::string_view item) {
  const u64 n = parse_integer<u64>(item, "a positive integer");
  if (n == 0) throw std::invalid_argument("not a positive integer");
  std::string out;
  for (u64 p : factorize(n)) {
    if (!out.empty()) out.push_back(' ');
    out += std::to_string(p);
  }
  return out;  // "" for 1, as coreutils' factor prints nothing after "1:"
}

std::string sha256(std::string_view item) { return sha256_hex(item); }

std::string sleep_seconds(std::string_view item) {
  const std::string text(trim(item));
  // A plain decimal: an optional '+', digits and an optional fraction (from_chars alone
  // would also take "1e3", "inf" and "-0").
  std::string_view number = text;
  if (!number.empty() && number.front() == '+') number.remove_prefix(1);
  const std::size_t point = number.find('.');
  const std::string_view whole = number.substr(0, point);
  const std::string_view fraction =
      point == std::string_view::npos ? std::string_view() : number.substr(point + 1);
  const auto digits_only = [](std::string_view part) {
    return part.find_first_not_of("0123456789") == std::string_view::npos;
  };
  if (whole.size() + fraction.size() == 0 || !digits_only(whole) || !digits_only(fraction))
    throw std::invalid_argument("not a number of seconds between 0 and 86400");
  double seconds = 0;
  const auto [end, ec] = std::from_chars(number.data(), number.data() + number.size(), seconds);
  if (ec != std::errc() || end != number.data() + number.size() || !std::isfinite(seconds) ||
      seconds < 0 || seconds > 86'400)
    throw std::invalid_argument("not a number of seconds between 0 and 86400");
  std::this_thread::sleep_for(std::chrono::duration<double>(seconds));
  return text;
}

}  // namespace

bool is_prime(u64 n) {
  if (n < 2) return false;
  for (u64 p : {2ULL, 3ULL, 5ULL, 7ULL, 11ULL, 13ULL, 17ULL, 19ULL, 23ULL, 29ULL, 31ULL, 37ULL}) {
    if (n % p == 0) return n == p;
  }
  u64 d = n - 1;
  int r = 0;
  while ((d & 1) == 0) {
    d >>= 1;
    ++r;
  }
  // These bases decide every n < 2^64 (deterministic Miller-Rabin).
  for (u64 a : {2ULL, 3ULL, 5ULL, 7ULL, 11ULL, 13ULL, 17ULL, 19ULL, 23ULL, 29ULL, 31ULL, 37ULL}) {
    u64 x = pow_mod(a, d, n);
    if (x == 1 || x == n - 1) continue;
    bool composite = true;
    for (int i = 1; i < r && composite; ++i) {
      x = mul_mod(x, x, n);
      if (x == n - 1) composite = false;
    }
    if (composite) return false;
  }
  return true;
}

std::vector<u64> factorize(u64 n) {
  std::vector<u64> out;
  for (u64 p : {2ULL, 3ULL, 5ULL, 7ULL}) {
    while (n % p == 0) {
      out.push_back(p);
      n /= p;
    }
  }
  factor_into(n, out);
  std::sort(out.begin(), out.end());
  return out;
}

u64 count_primes_below(u64 n) {
  if (n <= 2) return 0;
  // A segmented sieve of Eratosthenes over the odd numbers: memory ~ sqrt(n).
  const u64 limit = n - 1;  // count primes <= limit
  const auto root = static_cast<u64>(std::sqrt(static_cast<double>(limit))) + 1;
  std::vector<u64> small_primes;
  {
    std::vector<bool> composite(root + 1, false);
    for (u64 i = 3; i <= root; i += 2) {
      if (composite[i]) continue;
      small_primes.push_back(i);
      for (u64 j = i * i; j <= root; j += 2 * i) composite[j] = true;
    }
  }
  u64 count = 1;                     // 2
  constexpr u64 kSegment = 1 << 18;  // odd numbers per segment
  std::vector<char> segment(kSegment);
  for (u64 low = 3; low <= limit; low += 2 * kSegment) {
    const u64 high = std::min(limit, low + 2 * kSegment - 2);  // odd, inclusive
    const u64 size = (high - low) / 2 + 1;
    std::fill(segment.begin(), segment.begin() + static_cast<std::ptrdiff_t>(size), 1);
    for (u64 p : small_primes) {
      if (p * p > high) break;
      u64 start = std::max(p * p, (low + p - 1) / p * p);
      if (start % 2 == 0) start += p;
      for (u64 j = start; j <= high; j += 2 * p) segment[(j - low) / 2] = 0;
    }
    count += static_cast<u64>(
        std::count(segment.begin(), segment.begin() + static_cast<std::ptrdiff_t>(size), 1));
  }
  return count;
}

std::string fibonacci(unsigned n) {
  // Decimal big numbers in base 10^18 limbs, least significant first.
  constexpr u64 kBase = 1'000'000'000'000'000'000ULL;
  std::vector<u64> a{0}, b{1};
  for (unsigned i = 0; i < n; ++i) {
    // (a, b) = (b, a + b): a += b in place (b is never shorter than a), then swap.
    a.resize(b.size(), 0);
    u64 carry = 0;
    for (std::size_t k = 0; k < b.size(); ++k) {
      u64 v = a[k] + b[k] + carry;  // < 2 * kBase: no overflow, no division
      carry = v >= kBase ? 1 : 0;
      a[k] = v - carry * kBase;
    }
    if (carry != 0) a.push_back(carry);
    std::swap(a, b);
  }
  std::string out = std::to_string(a.back());
  for (std::size_t k = a.size() - 1; k-- > 0;) {
    const std::string limb = std::to_string(a[k]);
    out.append(18 - limb.size(), '0');
    out += limb;
  }
  return out;
}

std::string sha256_hex(std::string_view text) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int length = 0;
  if (EVP_Digest(text.data(), text.size(), digest, &length, EVP_sha256(), nullptr) != 1)
    throw std::runtime_error("OpenSSL's SHA-256 failed");
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  out.reserve(2 * length);
  for (unsigned int i = 0; i < length; ++i) {
    out.push_back(kHex[digest[i] >> 4]);
    out.push_back(kHex[digest[i] & 15]);
  }
  return out;
}

const std::vector<NamedFunction>& functions() {
  static const std::vector<NamedFunction> all = {
      {"square", "the square of an integer", &square},
      {"isprime", "true or false: is the integer prime", &isprime},
      {"count-primes", "the number of primes below n", &count_primes},
      {"fib", "the n-th Fibonacci number, exact (n <= 100000)", &fib},
      {"factor", "the prime factors of a positive integer, space-separated", &factor},
      {"sha256", "the SHA-256 of the item's text, in hex", &sha256},
      {"sleep", "sleeps that many seconds, prints the item (shows concurrency)", &sleep_seconds},
  };
  return all;
}

Function find_function(std::string_view name) {
  for (const auto& f : functions())
    if (f.name == name) return f.function;
  return nullptr;
}

}  // namespace mp_map
