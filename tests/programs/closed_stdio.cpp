// closed_stdio fork|spawn <result-file>
// Run by the tests with stdin, stdout or stderr closed. mp's own fds (the shared heap's
// memfd, the pool's sockets, the spawn bootstrap's socket, pidfds) must then stay off
// the numbers 0, 1 and 2, or the program's own output goes into the shared heap and a
// child's redirect of stdin to /dev/null closes the heap's fd. Uses the heap (a Value
// and a Queue), a child started with the given method that starts a spawned grandchild,
// and a Pool, writes to stdout and stderr in between, and writes what it saw to
// <result-file> ("ok" on the first line when everything worked).
#include <fcntl.h>
#include <unistd.h>

#include <cstdio>
#include <exception>
#include <numeric>
#include <string>
#include <vector>

#include <mp/mp.hpp>

namespace {

void add_one(mp::Value<int> counter) {
  counter.update([](int& n) { ++n; });
}

// The child: counts itself, starts a spawned grandchild that counts too, then reports
// through the queue.
void child(mp::Value<int> counter, mp::Queue<int> results) {
  add_one(counter);
  mp::Process grandchild({.start_method = "spawn"}, &add_one, counter);
  grandchild.start();
  const bool ended = grandchild.join(std::chrono::seconds(60));
  results.put(ended && grandchild.exitcode() == 0 ? 42 : 1000 + grandchild.exitcode().value_or(-1));
}

int square(int x) { return x * x; }

// Output on the stdio numbers, as any program does; with a library fd there this would
// land in the library's object.
void print_some(const char* when) {
  std::printf("stdout: %s\n", when);
  std::fflush(stdout);
  std::fprintf(stderr, "stderr: %s\n", when);
  std::fflush(stderr);
}

void write_result(const std::string& path, const std::string& text) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) ::_exit(3);
  (void)!::write(fd, text.data(), text.size());
  ::close(fd);
}

}  // namespace

int main(int argc, char** argv) {
  mp::freeze_support(argc, argv);
  if (argc != 3) return 2;
  const std::string method = argv[1];
  const std::string result_path = argv[2];
  std::string report;
  bool ok = true;
  try {
    mp::Value<int> counter(0);
    mp::Queue<int> results;
    print_some("heap made");

    mp::Process p({.start_method = method}, &child, counter, results);
    p.start();
    print_some("child started");
    const bool ended = p.join(std::chrono::seconds(120));
    const int from_child = results.get(std::chrono::seconds(60));
    report += "child ended=" + std::to_string(ended) +
              " exitcode=" + std::to_string(p.exitcode().value_or(-1000)) +
              " queue=" + std::to_string(from_child) + "\n";
    ok = ok && ended && p.exitcode() == 0 && from_child == 42;

    int sum = 0;
    {
      mp::Pool pool({.processes = 2, .start_method = method});
      print_some("pool made");
      std::vector<int> inputs(20);
      std::iota(inputs.begin(), inputs.end(), 1);
      const auto squares = pool.map(square, inputs);
      sum = std::accumulate(squares.begin(), squares.end(), 0);
      pool.close();
      pool.join();
    }
    print_some("pool done");
    report += "pool sum=" + std::to_string(sum) + "\n";
    ok = ok && sum == 2870;  // 1 + 4 + ... + 400

    report += "counter=" + std::to_string(counter.value()) + "\n";
    ok = ok && counter.value() == 2;
  } catch (const std::exception& e) {
    report += std::string("exception: ") + e.what() + "\n";
    ok = false;
  }
  write_result(result_path, (ok ? "ok\n" : "failed\n") + report);
  return ok ? 0 : 1;
}
