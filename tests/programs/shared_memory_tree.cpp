// shared_memory_tree START_METHOD CHILD_END PARENT_END [NAME]
// A process tree that creates segments and ends without unlinking them. The parent
// starts a child (START_METHOD fork|spawn) that creates two segments of 4096 bytes,
// one default (non-persistent) and one with persist = true, writes "tree data" into
// both, sends their names and the tree's watchdog pid to the parent, and then ends:
// CHILD_END exit (std::exit(0), no destructor runs) or kill (SIGKILL). The parent joins
// it, prints "<name> <persistent name> <watchdog pid>" and ends: PARENT_END exit or
// kill (SIGKILL). Afterwards the first segment must be gone (once the watchdog has
// ended) and the persistent one must remain.
// With NAME, the child also creates the segments NAME-gone and NAME (both
// non-persistent, by name), then removes NAME behind mp's back (shm_unlink) and creates
// a new, persistent NAME holding "replaced": afterwards NAME-gone must be gone and the
// new NAME must remain (the watchdog removes only the segment the tree created).
#include <signal.h>
#include <sys/mman.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <string>
#include <utility>

#include <mp/mp.hpp>

#include "segment_tree.hpp"

namespace {

void create_and_end(mp::Connection& conn, std::string child_end, std::string name) {
  if (!name.empty()) {
    mp::SharedMemory gone(mp::create_only, name + "-gone", 4096);
    mp::SharedMemory replaced(mp::create_only, name, 4096);
    ::shm_unlink(("/" + name).c_str());
    mp::SharedMemory renewed(mp::create_only, name, 4096, {.persist = true});
    std::memcpy(renewed.buf().data(), "replaced", 8);
  }
  mp::SharedMemory lasting(mp::create_only, 4096);
  mp::SharedMemory persistent(mp::create_only, 4096, {.persist = true});
  std::memcpy(lasting.buf().data(), "tree data", 9);
  std::memcpy(persistent.buf().data(), "tree data", 9);
  segment_tree::send_names(conn, lasting.name(), persistent.name());
  if (child_end == "kill") ::raise(SIGKILL);
  std::exit(0);
}

}  // namespace

int main(int argc, char** argv) try {
  mp::freeze_support(argc, argv);
  if (argc != 4 && argc != 5) {
    std::fprintf(stderr, "usage: shared_memory_tree fork|spawn exit|kill exit|kill [NAME]\n");
    return 2;
  }
  const std::string parent_end = argv[3];
  auto [receiver, sender] = mp::Pipe(false);
  mp::Process child({.start_method = argv[1]}, &create_and_end, std::move(sender),
                    std::string(argv[2]), std::string(argc == 5 ? argv[4] : ""));
  child.start();
  if (!segment_tree::print_names(receiver, child)) return 5;
  if (parent_end == "kill") ::raise(SIGKILL);
  return 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "shared_memory_tree: %s\n", e.what());
  return 1;
}
