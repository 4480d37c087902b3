// Must not compile: a data pointer would dangle in the other process.
#include <mp/pickle.hpp>

int main() {
  static const int value = 1;
  const int* pointer = &value;
  (void)mp::pickle::dumps(pointer);
}
