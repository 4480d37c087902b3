// Must not compile: a std::string_view would dangle once its bytes are gone.
#include <mp/pickle.hpp>
#include <string_view>

int main() { (void)mp::pickle::dumps(std::string_view("text")); }
