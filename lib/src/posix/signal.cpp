#include "posix/signal.hpp"

#include <signal.h>

namespace mp::posix {

void ignore_signal(int sig) noexcept {
  struct sigaction action = {};
  action.sa_handler = SIG_IGN;
  sigemptyset(&action.sa_mask);
  (void)::sigaction(sig, &action, nullptr);
}

}  // namespace mp::posix
