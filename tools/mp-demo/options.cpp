#include <algorithm>
#include <charconv>
#include <cmath>

#include <mp/context.hpp>

#include "demos.hpp"

namespace mp_demo {

namespace {
double parse_seconds(const std::string& text) {
  double value = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || end != text.data() + text.size() || !std::isfinite(value) || value < 0 ||
      value > 3600)
    throw UsageError{"--delay needs a number of seconds between 0 and 3600, got '" + text + "'"};
  return value;
}
}  // namespace

std::string start_method_choices() {
  std::string out;
  for (const auto& method : mp::get_all_start_methods()) out += (out.empty() ? "" : "|") + method;
  return out;
}

Options parse_options(const std::vector<std::string>& args) {
  Options options;
  for (std::size_t i = 0; i < args.size(); ++i) {
    const std::string& arg = args[i];
    auto value_of = [&](const std::string& name) -> std::string {
      if (arg.size() > name.size() && arg.compare(0, name.size() + 1, name + "=") == 0)
        return arg.substr(name.size() + 1);
      if (i + 1 >= args.size()) throw UsageError{name + " needs a value"};
      return args[++i];
    };
    if (arg == "--delay" || arg.rfind("--delay=", 0) == 0) {
      options.delay = std::chrono::duration<double>(parse_seconds(value_of("--delay")));
    } else if (arg == "--start-method" || arg.rfind("--start-method=", 0) == 0) {
      options.start_method = value_of("--start-method");
      const auto methods = mp::get_all_start_methods();
      if (std::find(methods.begin(), methods.end(), options.start_method) == methods.end())
        throw UsageError{"--start-method must be one of " + start_method_choices() + ", got '" +
                         options.start_method + "'"};
    } else if (arg == "--unshared") {
      options.unshared = true;
    } else if (arg.size() > 1 && arg[0] == '-' && arg != "-") {
      throw UsageError{"unknown option '" + arg + "'"};
    } else {
      options.positional.push_back(arg);
    }
  }
  return options;
}

}  // namespace mp_demo
