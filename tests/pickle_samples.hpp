// The representative value types that the pickle bad-input sweep (reliability_test.cpp)
// and the pickle fuzzer (fuzz/pickle_loads_fuzzer.cpp) load from damaged bytes.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <tuple>
#include <variant>
#include <vector>

namespace pickle_samples {

// A user type with serialize(), as users write them.
struct Account {
  std::string owner;
  std::vector<std::int64_t> history;
  std::optional<double> limit;
  template <class Archive>
  void serialize(Archive& ar) {
    ar(owner, history, limit);
  }
};

using Callback = void (*)(int);
using Int = int;
using String = std::string;
using Strings = std::vector<std::string>;
using Table = std::map<std::string, std::vector<int>>;
using MaybeChoice = std::optional<std::variant<int, std::string>>;
using Record = std::tuple<double, std::string, std::vector<std::uint8_t>>;

}  // namespace pickle_samples
