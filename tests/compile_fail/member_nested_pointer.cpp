// Must not compile: a pointer two plain structs down, inside a container, is still a
// pointer. The error names the innermost member's type.
#include <mp/pickle.hpp>
#include <vector>

struct Node {
  int id;
  char name[8];
  Node* next;
};
struct Entry {
  double weight;
  Node node;
};

int main() { (void)mp::pickle::dumps(std::vector<Entry>{}); }
