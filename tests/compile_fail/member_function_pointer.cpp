// Must not compile: the raw bytes of a function pointer member mean nothing in a binary
// loaded at another address (a spawned child). The error names the member's type; the
// struct needs serialize(), which pickles the pointer as a code reference.
#include <mp/pickle.hpp>

struct Handler {
  int id;
  void (*callback)(int);
};

int main() { (void)mp::pickle::dumps(Handler{}); }
