// Must not compile, with mp's message first (before cereal's): a user's serialize()
// passes a raw data pointer.
#include <mp/pickle.hpp>

struct Holder {
  double* values = nullptr;
  template <class Archive>
  void serialize(Archive& ar) {
    ar(values);
  }
};

int main() { (void)mp::pickle::dumps(Holder{}); }
