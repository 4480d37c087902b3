// JSON result lines in exactly the text Python's json.dumps prints for
// bench/python/mp_bench.py, so that the two outputs can be diffed as well as parsed.
#include <algorithm>
#include <array>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <type_traits>

#include <signal.h>
#include <string.h>
#include <sys/wait.h>

#include "../json_string.hpp"
#include "bench.hpp"

namespace mp_bench {
namespace {

// Python: float(f"{x:.6g}").
double round_6_significant(double x) {
  if (!std::isfinite(x)) return x;
  char buffer[64];
  std::snprintf(buffer, sizeof buffer, "%.6g", x);
  return std::strtod(buffer, nullptr);
}

// Python's repr(float): the shortest digits that round-trip, in positional notation
// when the decimal exponent is in [-4, 16), else as d.ddde+XX; integral values end
// in ".0". json.dumps writes NaN and Infinity as such (not strict JSON, as Python).
std::string python_float_repr(double x) {
  if (std::isnan(x)) return "NaN";
  if (std::isinf(x)) return x > 0 ? "Infinity" : "-Infinity";
  std::array<char, 64> buffer{};
  auto [end, ec] =
      std::to_chars(buffer.data(), buffer.data() + buffer.size(), x, std::chars_format::scientific);
  std::string scientific(buffer.data(), end);  // "-1.2345e+06"
  std::string sign;
  if (scientific.front() == '-') {
    sign = "-";
    scientific.erase(0, 1);
  }
  const auto e_pos = scientific.find('e');
  const int exponent = std::atoi(scientific.c_str() + e_pos + 1);
  std::string digits = scientific.substr(0, e_pos);
  digits.erase(std::remove(digits.begin(), digits.end(), '.'), digits.end());
  const int digit_count = static_cast<int>(digits.size());

  if (exponent < -4 || exponent >= 16) {
    std::string mantissa = digits.substr(0, 1);
    if (digit_count > 1) mantissa.append(".").append(digits, 1);
    char exponent_text[16];
    std::snprintf(exponent_text, sizeof exponent_text, "e%c%02d", exponent < 0 ? '-' : '+',
                  std::abs(exponent));
    return sign + mantissa + exponent_text;
  }
  if (exponent < 0) return sign + "0." + std::string(-exponent - 1, '0') + digits;
  if (digit_count <= exponent + 1) {
    return sign + digits + std::string(exponent + 1 - digit_count, '0') + ".0";
  }
  return sign + digits.substr(0, exponent + 1) + "." + digits.substr(exponent + 1);
}

using mp_tools::json_string;

std::string json_value(const JsonValue& value) {
  return std::visit(
      [](const auto& v) -> std::string {
        using T = std::decay_t<decltype(v)>;
        if constexpr (std::is_same_v<T, std::nullptr_t>) {
          return "null";
        } else if constexpr (std::is_same_v<T, bool>) {
          return v ? "true" : "false";
        } else if constexpr (std::is_same_v<T, std::int64_t>) {
          return std::to_string(v);
        } else if constexpr (std::is_same_v<T, double>) {
          return python_float_repr(v);
        } else {
          return json_string(v);
        }
      },
      value);
}

// Python's separators: ", " and ": ".
void append_members(std::string& out, const JsonObject& object) {
  for (const auto& [key, value] : object) {
    if (out.back() != '{') out += ", ";
    out += json_string(key) + ": " + json_value(value);
  }
}

}  // namespace

double median(std::vector<double> values) {
  if (values.empty()) throw BenchError("median of no values");
  std::sort(values.begin(), values.end());
  const std::size_t mid = values.size() / 2;
  return values.size() % 2 ? values[mid] : (values[mid - 1] + values[mid]) / 2;
}

std::string describe_exit(std::optional<int> exitcode) {
  if (!exitcode) return "still running";
  if (*exitcode >= 0) return "exit code " + std::to_string(*exitcode);
  const int signal_number = -*exitcode;
  if (const char* abbrev = sigabbrev_np(signal_number))
    return std::string("killed by SIG") + abbrev;
  return "killed by signal " + std::to_string(signal_number);
}

std::string describe_wait_status(int status) {
  if (WIFEXITED(status)) return describe_exit(WEXITSTATUS(status));
  if (WIFSIGNALED(status)) return describe_exit(-WTERMSIG(status));
  return "stopped";
}

void Row::emit(const JsonObject& params, std::string_view metric, const std::vector<double>& runs,
               std::string_view unit, const JsonObject& extra) const {
  std::string line = "{";
  append_members(line, {{"impl", std::string(impl_)}, {"bench", std::string(name_)}});
  line += ", \"params\": {";
  append_members(line, params);
  line += "}, ";
  std::string runs_text = "[";
  for (double run : runs) {
    if (runs_text.size() > 1) runs_text += ", ";
    runs_text += python_float_repr(round_6_significant(run));
  }
  runs_text += "]";
  line += json_string("metric") + ": " + json_string(metric) + ", " + json_string("value") + ": " +
          python_float_repr(round_6_significant(median(runs))) + ", " + json_string("unit") + ": " +
          json_string(unit) + ", " + json_string("runs") + ": " + runs_text;
  append_members(line, extra);
  line += "}\n";
  std::fwrite(line.data(), 1, line.size(), stdout);
  std::fflush(stdout);
}

}  // namespace mp_bench
