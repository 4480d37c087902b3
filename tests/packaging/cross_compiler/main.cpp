// The cross-compiler consumer: built by the other compiler than the installed libmp
// (clang++ against a g++-built library, g++ against a clang++-built one), it uses the
// parts where the library and the program's code exchange pickles: Pool's tasks (the
// library pickles the task trampoline's type, the program loads it), map, imap and
// imap_unordered, a Queue, children started with every start method, and a Python
// pickle compared with Object's operator== (compiled into the library). The packaging
// test `shared` builds it against a shared libmp: it then also checks that libmp
// exports what these need.
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <mp/context.hpp>
#include <mp/pool.hpp>
#include <mp/process.hpp>
#include <mp/python_pickle.hpp>
#include <mp/queues.hpp>
#include <numeric>
#include <stdexcept>
#include <string>
#include <vector>

namespace {

struct Order {
  std::string customer;
  std::map<std::string, std::vector<long>> lines;

  template <class Archive>
  void serialize(Archive& archive) {
    archive(customer, lines);
  }
};

long square(long x) { return x * x; }

long count_lines(Order order) { return static_cast<long>(order.lines.size()); }

void put_in_queue(mp::Queue<std::string> queue, std::string text, unsigned long count) {
  queue.put(text + ":" + std::to_string(count));
}

int fail(const std::string& what) {
  std::fprintf(stderr, "cross-compiler consumer: FAILED: %s\n", what.c_str());
  return EXIT_FAILURE;
}

}  // namespace

int main(int argc, char** argv) {
  mp::freeze_support(argc, argv);
  const std::vector<long> xs{1, 2, 3, 4, 5, 6, 7};
  const long expected = 1 + 4 + 9 + 16 + 25 + 36 + 49;
  for (const std::string& method : mp::get_all_start_methods()) {
    try {
      mp::Pool pool({.processes = 2, .start_method = method});
      const std::vector<long> mapped = pool.map(square, xs);
      if (std::accumulate(mapped.begin(), mapped.end(), 0L) != expected)
        return fail(method + ": Pool::map");
      long sum = 0;
      for (long r : pool.imap(square, xs, 2)) sum += r;
      if (sum != expected) return fail(method + ": Pool::imap");
      sum = 0;
      for (long r : pool.imap_unordered(square, xs)) sum += r;
      if (sum != expected) return fail(method + ": Pool::imap_unordered");
      const Order order{"ada", {{"apples", {1, 2}}, {"pears", {}}}};
      if (pool.apply(count_lines, order) != 2) return fail(method + ": Pool::apply");

      mp::Queue<std::string> queue;
      mp::Process child =
          mp::get_context(method).process(put_in_queue, queue, std::string("hello"), 42ul);
      child.start();
      const std::string got = queue.get(std::chrono::seconds(60));
      if (!child.join(std::chrono::seconds(60))) {
        child.kill();
        child.join();
        return fail(method + ": the child did not end within 60 s");
      }
      if (child.exitcode() != 0 || got != "hello:42") return fail(method + ": Queue via a child");
    } catch (const std::exception& e) {
      return fail(method + ": " + e.what());
    }
  }
  namespace py = mp::pickle::python;
  const py::Object list = py::Object::list({py::Object::str("ada"), py::Object::floating(1.5)});
  if (py::loads(py::dumps(list)) != list) return fail("a Python pickle round trip");
  std::puts("cross-compiler consumer: ok");
  return EXIT_SUCCESS;
}
