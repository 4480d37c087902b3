// Must not compile: a capturing lambda's state cannot cross a process boundary.
#include <mp/pickle.hpp>

int main() {
  int captured = 3;
  auto lambda = [captured](int x) { return x + captured; };
  (void)mp::pickle::dumps(lambda);
}
