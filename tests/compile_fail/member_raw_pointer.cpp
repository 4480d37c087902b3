// Must not compile: a plain struct is pickled as its raw bytes, and a data pointer
// member would dangle in the other process. The error names the member's type.
#include <mp/pickle.hpp>

struct Samples {
  int count;
  const double* values;
};

int main() { (void)mp::pickle::dumps(Samples{}); }
