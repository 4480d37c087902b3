// Signal dispositions (pool workers ignore SIGINT so that Ctrl-C reaches only the parent).
#pragma once

namespace mp::posix {

// Sets the disposition of `sig` to SIG_IGN in the calling process. Never fails for a
// valid signal number.
void ignore_signal(int sig) noexcept;

}  // namespace mp::posix
