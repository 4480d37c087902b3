// Must not compile, naming the item type: a Manager's list holds picklable items only.
#include <mp/managers.hpp>
#include <string>

struct NotPicklable {
  std::string text;
};

int main() {
  mp::Manager manager;
  manager.list<NotPicklable>().append(NotPicklable{"x"});
}
