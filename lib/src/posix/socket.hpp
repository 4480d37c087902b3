// Stream sockets for mp::Connection: pairs, vectored writes without SIGPIPE, reads and
// waiting on several fds. OS calls only; failures are std::error_code.
#pragma once

#include <poll.h>
#include <sys/uio.h>

#include <chrono>
#include <cstddef>
#include <optional>
#include <span>
#include <system_error>

#include "posix/fd.hpp"

namespace mp::posix {

// A connected AF_UNIX stream socket pair, both ends close-on-exec. Unless `duplex`,
// `first` is shut down for writing and `second` for reading, so data flows one way only.
[[nodiscard]] std::error_code stream_pair(bool duplex, unique_fd& first,
                                          unique_fd& second) noexcept;

// Writes every byte of `parts`, in order, in as few calls as the kernel allows:
// sendmsg(MSG_NOSIGNAL) on a socket (a closed peer gives EPIPE, never SIGPIPE), writev
// otherwise (`is_socket` is cleared when sendmsg says ENOTSOCK). Retries on EINTR and
// short writes. Modifies `parts` as it goes.
[[nodiscard]] std::error_code write_all(int fd, std::span<struct iovec> parts,
                                        bool& is_socket) noexcept;

// Reads at most `size` bytes into `out`; `got` is 0 at end of file. Retries on EINTR.
[[nodiscard]] std::error_code read_some(int fd, void* out, std::size_t size,
                                        std::size_t& got) noexcept;

// Polls `fd` for input without blocking; true if it is readable (or hung up, or in
// error: the read that follows reports it).
bool readable_now(int fd) noexcept;

// poll(2) on `fds` until one has events or `timeout` passed (nullopt: forever); `ready`
// is the number of fds with events (0: timed out). Retries on EINTR with the remaining
// time and never reports a timeout before it has passed.
[[nodiscard]] std::error_code poll_until(std::span<struct pollfd> fds,
                                         std::optional<std::chrono::nanoseconds> timeout,
                                         int& ready) noexcept;

}  // namespace mp::posix
