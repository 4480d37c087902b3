// Must not compile, with mp's message first (before cereal's): a user's serialize()
// passes a member that cannot be pickled.
#include <mp/pickle.hpp>
#include <string_view>

struct Holder {
  std::string_view view;
  template <class Archive>
  void serialize(Archive& ar) {
    ar(view);
  }
};

int main() { (void)mp::pickle::dumps(Holder{}); }
