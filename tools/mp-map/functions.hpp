// mp-map's built-in functions, named after the workloads of the course notes mp grew from:
// each takes one item's text and returns the text of its result. Bad input throws
// std::invalid_argument with a message that says what was expected (mp-map adds the
// item and its line number).
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace mp_map {

using Function = std::string (*)(std::string_view item);

struct NamedFunction {
  std::string_view name;
  std::string_view summary;
  Function function;
};

// Every built-in function, in the order `--help` lists them.
const std::vector<NamedFunction>& functions();

// The function called `name`, or nullptr.
Function find_function(std::string_view name);

// The parts of the built-ins that tests check directly.
bool is_prime(unsigned long long n);
std::vector<unsigned long long> factorize(unsigned long long n);
unsigned long long count_primes_below(unsigned long long n);
std::string fibonacci(unsigned n);  // decimal, exact
std::string sha256_hex(std::string_view text);

}  // namespace mp_map
