// The example of README.md, kept here so that ctest compiles and runs it (it must stay
// identical to the README's).

#include <cstdio>
#include <string>
#include <vector>

#include <mp/mp.hpp>

int main(int argc, char** argv) {
  mp::freeze_support(argc, argv);  // first thing in main: needed by the spawn method

  mp::Pool pool;  // cpu_count() worker processes
  std::vector<int> inputs = {1, 2, 3, 4, 5};
  auto squares = pool.map([](int x) { return x * x; }, inputs);  // {1, 4, 9, 16, 25}

  mp::Manager manager;  // a dict in shared memory, no server process
  auto d = manager.dict<std::string, int>();
  mp::Process p([](mp::SharedDict<std::string, int> shared) { shared["answer"] = 42; }, d);
  p.start();
  p.join();  // exitcode(): 0, 1 after an exception, -N after signal N
  std::printf("%d %d\n", squares[4], d.at("answer"));  // 25 42
}
