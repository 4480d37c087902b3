// The packaging tests' consumer: a program that uses mp the way a user's would, built
// against an installed mp (find_package, pkg-config) and against mp's source tree
// (add_subdirectory). It checks that the headers, the library and its dependencies
// arrive together: a pickle round trip instantiates cereal in user code, and children
// started with fork and with spawn run code from this binary.
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <stdexcept>
#include <string>
#include <vector>

#include <mp/context.hpp>
#include <mp/pickle.hpp>
#include <mp/process.hpp>

namespace {

// A user type made picklable the cereal way.
struct Order {
  std::string customer;
  std::map<std::string, std::vector<int>> lines;

  template <class Archive>
  void serialize(Archive& archive) {
    archive(customer, lines);
  }

  bool operator==(const Order&) const = default;
};

// The child's target. An uncaught exception makes the child's exitcode 1.
void check_in_child(int expected, std::string text) {
  if (expected != 42 || text != "hello") {
    throw std::runtime_error("the child received the wrong arguments");
  }
}

int fail(const std::string& what) {
  std::fprintf(stderr, "packaging consumer: FAILED: %s\n", what.c_str());
  return EXIT_FAILURE;
}

// Starts `process`, joins it with a timeout and checks that it exited with 0.
bool run_to_success(mp::Process& process, const std::string& label) {
  process.start();
  if (!process.join(std::chrono::seconds(60))) {
    process.kill();
    process.join();
    std::fprintf(stderr, "packaging consumer: %s: the child did not end within 60 s\n",
                 label.c_str());
    return false;
  }
  if (process.exitcode() != 0) {
    std::fprintf(stderr, "packaging consumer: %s: exitcode %d\n", label.c_str(),
                 process.exitcode().value_or(-999));
    return false;
  }
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  // A spawned child re-executes this binary: freeze_support turns it into the child.
  mp::freeze_support(argc, argv);

  const Order order{"ada", {{"apples", {1, 2, 3}}, {"pears", {}}}};
  const std::string bytes = mp::pickle::dumps(order);
  if (mp::pickle::loads<Order>(bytes) != order) return fail("pickle round trip");

  for (const std::string& method : mp::get_all_start_methods()) {
    mp::Process process = mp::get_context(method).process(check_in_child, 42, std::string("hello"));
    if (!run_to_success(process, method + " with a free function")) {
      return fail("a child started with " + method);
    }
  }
  mp::Process lambda_process(
      [](int value) {
        if (value != 7) throw std::runtime_error("wrong value");
      },
      7);
  if (!run_to_success(lambda_process, "default method with a captureless lambda")) {
    return fail("a child running a captureless lambda");
  }

  std::puts("packaging consumer: ok");
  return EXIT_SUCCESS;
}
