// Must not compile, naming the element type: std::vector<NotPicklable>.
#include <mp/pickle.hpp>
#include <string>
#include <vector>

struct NotPicklable {
  std::string text;
};

int main() { (void)mp::pickle::dumps(std::vector<NotPicklable>{}); }
