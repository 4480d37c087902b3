// Must not compile, naming the value type: a Manager's dict holds picklable values only.
#include <mp/managers.hpp>
#include <string>

struct NotPicklable {
  std::string text;
};

int main() {
  mp::Manager manager;
  auto d = manager.dict<int, NotPicklable>();
  d[1] = NotPicklable{"x"};
}
