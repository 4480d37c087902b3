// Must not compile: a std::string_view member of a plain struct would dangle in the
// other process. The error names the member's type.
#include <mp/pickle.hpp>
#include <string_view>

struct Labelled {
  int id;
  std::string_view label;
};

int main() { (void)mp::pickle::loads<Labelled>(""); }
