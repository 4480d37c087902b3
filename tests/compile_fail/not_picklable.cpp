// Must not compile: a class with a std::string member and no serialize() is neither a
// trivially copyable aggregate nor serializable.
#include <mp/pickle.hpp>
#include <string>

struct NotPicklable {
  std::string text;
};

int main() { (void)mp::pickle::dumps(NotPicklable{"x"}); }
