// Must not compile: apply_async with a capturing lambda (see pool_capturing_lambda.cpp).
#include <mp/pool.hpp>

int main() {
  mp::Pool pool;
  int offset = 3;
  (void)pool.apply_async([offset](int x) { return x + offset; }, 1);
}
