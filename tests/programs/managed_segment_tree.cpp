// managed_segment_tree START_METHOD
// A process tree that makes two managed segments and ends without unlinking them: a
// child (START_METHOD fork|spawn) creates one default (non-persistent) and one
// persistent mp::ManagedSharedMemory, constructs the int "answer" = 42 in both, sends
// their names and the tree's watchdog pid to the parent and kills itself (SIGKILL); the
// parent prints "<name> <persistent name> <watchdog pid>" and kills itself too.
// Afterwards the first segment must be gone (once the watchdog has ended) and the
// persistent one must remain, its named object intact.
#include <signal.h>

#include <chrono>
#include <cstdio>
#include <exception>
#include <string>
#include <tuple>
#include <utility>

#include <mp/interprocess.hpp>
#include <mp/mp.hpp>

namespace {

void create_and_die(mp::Connection& conn) {
  mp::ManagedSharedMemory lasting(mp::create_only, 1 << 16);
  mp::ManagedSharedMemory persistent(mp::create_only, 1 << 16, {.persist = true});
  lasting.construct<int>("answer")(42);
  persistent.construct<int>("answer")(42);
  conn.send(std::tuple<std::string, std::string, int>(
      lasting.name(), persistent.name(),
      static_cast<int>(mp::detail::shared_memory_watchdog_pid())));
  ::raise(SIGKILL);
}

}  // namespace

int main(int argc, char** argv) try {
  mp::freeze_support(argc, argv);
  if (argc != 2) {
    std::fprintf(stderr, "usage: managed_segment_tree fork|spawn\n");
    return 2;
  }
  auto [receiver, sender] = mp::Pipe(false);
  mp::Process child({.start_method = argv[1]}, &create_and_die, std::move(sender));
  child.start();
  const auto [name, persistent, watchdog] =
      receiver.recv<std::tuple<std::string, std::string, int>>();
  if (!child.join(std::chrono::seconds(60))) return 5;
  std::printf("%s %s %d\n", name.c_str(), persistent.c_str(), watchdog);
  std::fflush(stdout);
  ::raise(SIGKILL);
  return 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "managed_segment_tree: %s\n", e.what());
  return 1;
}
