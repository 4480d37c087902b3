// exit_with_children daemon|nondaemon fork|spawn PATH
// Starts one child and returns from main() without joining it, as a Python script
// that ends with children running. Python's exit handler joins non-daemon children
// and terminates daemon ones; mp must do the same.
//   nondaemon: the child writes "done" to PATH after a while; when this program has
//              exited, PATH must hold "done".
//   daemon:    the child sleeps forever; its pid goes to PATH; when this program has
//              exited, the child must be gone.
#include <fcntl.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <fstream>
#include <string>
#include <thread>

#include <mp/mp.hpp>

namespace {

void write_file(const std::string& path, const std::string& text) {
  std::ofstream(path + ".tmp") << text;
  std::rename((path + ".tmp").c_str(), path.c_str());
}

void write_after_a_while(std::string path) {
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  write_file(path, "done");
}

void sleep_forever() {
  for (;;) ::pause();
}

}  // namespace

int main(int argc, char** argv) {
  mp::freeze_support(argc, argv);
  if (argc != 4) return 2;
  const bool daemon = std::strcmp(argv[1], "daemon") == 0;
  const std::string method = argv[2];
  const std::string path = argv[3];
  // Children must not hold the test's output pipes open: the test would then wait
  // for them, whatever this program's exit does.
  int devnull = ::open("/dev/null", O_WRONLY);
  ::dup2(devnull, STDOUT_FILENO);
  ::dup2(devnull, STDERR_FILENO);
  ::close(devnull);
  if (daemon) {
    mp::Process child({.daemon = true, .start_method = method}, &sleep_forever);
    child.start();
    write_file(path, std::to_string(child.pid()));
  } else {
    mp::Process child({.start_method = method}, &write_after_a_while, path);
    child.start();
  }
  return 0;  // no join: the exit handler's job
}
