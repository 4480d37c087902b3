// Emptying a queue in a test: shared by the queue tests and the queue's fault-injection
// participant.
#pragma once

#include <type_traits>
#include <vector>

#include <mp/errors.hpp>

namespace mp_test {

// Every item `queue` holds now, in the order get_nowait() returns them (until mp::Empty).
template <class Queue>
auto drain_nowait(Queue& queue) {
  std::vector<std::decay_t<decltype(queue.get_nowait())>> items;
  for (;;) {
    try {
      items.push_back(queue.get_nowait());
    } catch (const mp::Empty&) {
      return items;
    }
  }
}

}  // namespace mp_test
