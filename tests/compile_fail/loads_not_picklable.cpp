// Must not compile: loads of a type that cannot be pickled.
#include <mp/pickle.hpp>
#include <string>

struct NotPicklable {
  std::string text;
};

int main() { (void)mp::pickle::loads<NotPicklable>(""); }
