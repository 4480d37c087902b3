// Must not compile, naming the element type: std::optional<std::string_view>.
#include <mp/pickle.hpp>
#include <optional>
#include <string_view>

int main() { (void)mp::pickle::dumps(std::optional<std::string_view>{}); }
