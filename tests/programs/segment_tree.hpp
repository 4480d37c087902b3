// What the segment-tree programs share: their child sends the names of the two segments
// it made (one default, one persistent) and the tree's watchdog pid; the parent prints
// them as "<name> <persistent name> <watchdog pid>".
#pragma once

#include <chrono>
#include <cstdio>
#include <string>
#include <tuple>

#include <mp/connection.hpp>
#include <mp/process.hpp>
#include <mp/shared_memory.hpp>

namespace segment_tree {

using Names = std::tuple<std::string, std::string, int>;

inline void send_names(mp::Connection& conn, const std::string& name,
                       const std::string& persistent) {
  conn.send(Names(name, persistent, static_cast<int>(mp::detail::shared_memory_watchdog_pid())));
}

// Receives the child's names, joins it and prints them; false if the child did not end
// within a minute.
inline bool print_names(mp::Connection& from_child, mp::Process& child) {
  const auto [name, persistent, watchdog] = from_child.recv<Names>();
  if (!child.join(std::chrono::seconds(60))) return false;
  std::printf("%s %s %d\n", name.c_str(), persistent.c_str(), watchdog);
  std::fflush(stdout);
  return true;
}

}  // namespace segment_tree
