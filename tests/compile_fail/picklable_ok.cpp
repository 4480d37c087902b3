// Control for the compile-fail tests: everything here is picklable and must compile
// with the same flags and include paths.
#include <map>
#include <mp/pickle.hpp>
#include <optional>
#include <string>
#include <tuple>
#include <vector>

struct Plain {
  int x;
  double y;
};

struct WithSerialize {
  std::string name;
  template <class Archive>
  void serialize(Archive& ar) {
    ar(name);
  }
};

int main() {
  auto captureless = [](int x) { return x; };
  const auto bytes = mp::pickle::dumps(std::make_tuple(captureless, Plain{1, 2}, WithSerialize{"w"},
                                                       std::vector<std::optional<std::string>>{},
                                                       std::map<int, Plain>{}, &main));
  (void)mp::pickle::loads<decltype(std::make_tuple(captureless, Plain{1, 2}, WithSerialize{"w"},
                                                   std::vector<std::optional<std::string>>{},
                                                   std::map<int, Plain>{}, &main))>(bytes);
}
