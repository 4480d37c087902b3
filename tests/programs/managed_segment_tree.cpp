// managed_segment_tree START_METHOD
// A process tree that makes two managed segments and ends without unlinking them: a
// child (START_METHOD) creates one default (non-persistent) and one
// persistent mp::ManagedSharedMemory, constructs the int "answer" = 42 in both, sends
// their names and the tree's watchdog pid to the parent and kills itself (SIGKILL); the
// parent prints "<name> <persistent name> <watchdog pid>" and kills itself too.
// Afterwards the first segment must be gone (once the watchdog has ended) and the
// persistent one must remain, its named object intact.
#include <signal.h>

#include <cstdio>
#include <string>
#include <utility>

#include <mp/interprocess.hpp>
#include <mp/mp.hpp>

#include "method_main.hpp"
#include "segment_tree.hpp"

namespace {

void create_and_die(mp::Connection& conn) {
  mp::ManagedSharedMemory lasting(mp::create_only, 1 << 16);
  mp::ManagedSharedMemory persistent(mp::create_only, 1 << 16, {.persist = true});
  lasting.construct<int>("answer")(42);
  persistent.construct<int>("answer")(42);
  segment_tree::send_names(conn, lasting.name(), persistent.name());
  ::raise(SIGKILL);
}

int run(const std::string& method) {
  auto [receiver, sender] = mp::Pipe(false);
  mp::Process child({.start_method = method}, &create_and_die, std::move(sender));
  child.start();
  if (!segment_tree::print_names(receiver, child)) return 5;
  ::raise(SIGKILL);
  return 0;
}

}  // namespace

int main(int argc, char** argv) { return method_main("managed_segment_tree", argc, argv, &run); }
