// Must not compile: Queue<T>::put pickles in the caller, so a queue of a type that
// cannot be pickled is rejected at compile time (Python drops such an item at run time,
// printing the error from its feeder thread).
#include <mp/queues.hpp>
#include <string>

struct NotPicklable {
  std::string text;
};

int main() {
  mp::Queue<NotPicklable> queue;
  queue.put(NotPicklable{"x"});
}
