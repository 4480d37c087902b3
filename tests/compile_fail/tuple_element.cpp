// Must not compile, naming the element type: std::tuple<int, NotPicklable>.
#include <mp/pickle.hpp>
#include <string>
#include <tuple>

struct NotPicklable {
  std::string text;
};

int main() { (void)mp::pickle::dumps(std::tuple<int, NotPicklable>{}); }
