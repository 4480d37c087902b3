// Must not compile: a pool worker exists before the task, so the function is pickled,
// and a capturing lambda's state cannot cross a process boundary.
#include <mp/pool.hpp>

#include <vector>

int main() {
  mp::Pool pool;
  int offset = 3;
  (void)pool.map([offset](int x) { return x + offset; }, std::vector<int>{1, 2, 3});
}
