// The members of <mp/managers.hpp>'s classes that are no templates: compiled once here,
// rather than instantiating the pickling of std::string in every file that includes the
// header.
#include <mp/managers.hpp>

#include <string>
#include <vector>

namespace mp {

std::vector<std::string> Namespace::names() const {
  std::vector<std::string> pickles;
  core_.snapshot(&pickles, nullptr);
  return detail::load_all<std::string>(pickles);
}

const std::string& Namespace::pickled_name(const std::string& name) {
  return detail::pickle_into(detail::manager_key_buffer(), name);
}

SharedValue<std::string> Manager::Value(const char* initial) const {
  return Value(std::string(initial));
}

}  // namespace mp
