// Must not compile, naming the mapped type: std::map<int, NotPicklable>.
#include <map>
#include <mp/pickle.hpp>
#include <string>

struct NotPicklable {
  std::string text;
};

int main() { (void)mp::pickle::dumps(std::map<int, NotPicklable>{}); }
