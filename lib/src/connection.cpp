// mp::Connection, mp::Pipe and mp::wait: Python's multiprocessing/connection.py.
//
// A message is a frame: its length as 8 bytes in native order (Framing::native), or
// CPython's header (Framing::python, python_frames.hpp), then its bytes. A frame
// goes out in one sendmsg() (header and body as two iovecs) and comes in with two
// reads, the header then the body, so nothing past the current message is ever read:
// poll() and wait() need only ask the kernel, and a Connection has no buffer that a
// fork or a spawn would have to carry.
#include <mp/connection.hpp>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <stdexcept>
#include <string>
#include <system_error>

#include "posix/fd.hpp"
#include "posix/socket.hpp"
#include "python_frames.hpp"
#include "spin.hpp"

namespace mp {

namespace detail {

std::atomic<std::uint64_t> python_long_frame_threshold{kPythonShortFrameMax};

std::size_t python_frame_header(std::uint64_t length, unsigned char* out) noexcept {
  auto put_big_endian = [](std::uint64_t value, unsigned char* to, int bytes) {
    for (int i = bytes - 1; i >= 0; --i, value >>= 8) to[i] = static_cast<unsigned char>(value);
  };
  if (length > python_long_frame_threshold.load(std::memory_order_relaxed) ||
      length > kPythonShortFrameMax) {
    put_big_endian(0xffffffff, out, 4);  // -1
    put_big_endian(length, out + 4, 8);
    return 12;
  }
  put_big_endian(length, out, 4);
  return 4;
}

}  // namespace detail

namespace {

// A frame longer than this is corrupt (Python's limit is the 2**63 of its 8-byte form;
// mp refuses what no process of a real program sends).
constexpr std::uint64_t kMaxFrame = std::uint64_t{1} << 40;  // 1 TiB
// A frame body is first given this much room, then room grows with what has arrived.
constexpr std::size_t kInitialBody = std::size_t{64} << 10;

[[noreturn]] void throw_closed() {
  throw std::invalid_argument("mp::Connection: handle is closed");
}

// std::nullopt: forever; otherwise at least the timeout, rounded up to nanoseconds.
std::optional<std::chrono::nanoseconds> to_nanoseconds(const WaitTimeout& timeout) {
  if (!timeout) return std::nullopt;
  const double seconds = timeout->count();
  if (!(seconds > 0)) return std::chrono::nanoseconds::zero();  // also NaN
  if (seconds > 1e9) return std::nullopt;                       // ~31 years: forever
  return std::chrono::ceil<std::chrono::nanoseconds>(*timeout);
}

}  // namespace

Connection::Connection(int fd, bool readable, bool writable, Framing framing)
    : fd_(fd), readable_(readable), writable_(writable), framing_(framing) {
  if (fd < 0) throw std::invalid_argument("mp::Connection: invalid handle");
  if (!readable && !writable) {
    close();
    throw std::invalid_argument(
        "mp::Connection: at least one of readable and writable must be true");
  }
}

Connection::Connection(Connection&& other) noexcept
    : fd_(std::exchange(other.fd_, -1)),
      readable_(std::exchange(other.readable_, false)),
      writable_(std::exchange(other.writable_, false)),
      framing_(other.framing_),
      unpickling_allowed_(other.unpickling_allowed_),
      is_socket_(other.is_socket_),
      spin_history_(other.spin_history_) {}

Connection& Connection::operator=(Connection&& other) noexcept {
  if (this != &other) {
    close();
    fd_ = std::exchange(other.fd_, -1);
    readable_ = std::exchange(other.readable_, false);
    writable_ = std::exchange(other.writable_, false);
    framing_ = other.framing_;
    unpickling_allowed_ = other.unpickling_allowed_;
    is_socket_ = other.is_socket_;
    spin_history_ = other.spin_history_;
  }
  return *this;
}

Connection::~Connection() { close(); }

void Connection::close() noexcept { posix::unique_fd closing(std::exchange(fd_, -1)); }

int Connection::fileno() const {
  if (fd_ < 0) throw_closed();
  return fd_;
}

void Connection::check_readable() const {
  if (fd_ < 0) throw_closed();
  if (!readable_) throw std::logic_error("mp::Connection: connection is write-only");
}

void Connection::check_writable() const {
  if (fd_ < 0) throw_closed();
  if (!writable_) throw std::logic_error("mp::Connection: connection is read-only");
}

void Connection::check_unpickling_allowed() const {
  if (!unpickling_allowed_)
    throw AuthenticationError(
        "mp::Connection::recv: refusing to unpickle from a peer that was not authenticated "
        "(mp pickles can name code); use an authkey, or allow it explicitly "
        "(allow_unauthenticated_pickles, set_unpickling_allowed); recv_bytes works");
}

void Connection::fail_and_close(int error, const char* what) {
  close();
  throw std::system_error(error, std::generic_category(), what);
}

// ---- sending ----

void Connection::send_bytes(std::string_view buffer, std::size_t offset,
                            std::optional<std::size_t> size) {
  send_bytes(std::as_bytes(std::span<const char>(buffer.data(), buffer.size())), offset, size);
}

void Connection::send_bytes(std::span<const std::byte> buffer, std::size_t offset,
                            std::optional<std::size_t> size) {
  check_writable();
  if (offset > buffer.size())
    throw std::invalid_argument("mp::Connection::send_bytes: buffer length < offset");
  const std::size_t length = size.value_or(buffer.size() - offset);
  if (length > buffer.size() - offset)
    throw std::invalid_argument("mp::Connection::send_bytes: buffer length < offset + size");
  if (length > kMaxFrame)
    throw std::invalid_argument("mp::Connection::send_bytes: message longer than 1 TiB");
  std::uint64_t native_header = length;
  unsigned char python_header[12];
  struct iovec parts[2] = {
      {&native_header, sizeof native_header},
      {const_cast<std::byte*>(buffer.data() + offset), length},  // sendmsg does not write
  };
  if (framing_ == Framing::python)
    parts[0] = {python_header, detail::python_frame_header(length, python_header)};
  if (auto ec = posix::write_all(fd_, parts, is_socket_))
    throw std::system_error(ec, "mp::Connection::send_bytes");
}

// ---- receiving ----

bool Connection::read_header(void* out_bytes, std::size_t size, bool at_boundary) {
  auto* out = static_cast<char*>(out_bytes);
  std::size_t got = 0;
  while (got < size) {
    std::size_t n = 0;
    if (auto ec = posix::read_some(fd_, out + got, size - got, n)) {
      // Linux says ECONNRESET once the data is drained when the peer closed with our
      // messages unread in its socket: between messages that is an end of stream too.
      if (at_boundary && got == 0 && ec == std::errc::connection_reset) return false;
      if (at_boundary && got == 0) throw std::system_error(ec, "mp::Connection::recv");
      close();
      throw std::system_error(ec, "mp::Connection::recv");
    }
    if (n == 0) {
      if (at_boundary && got == 0) return false;
      fail_and_close(EPROTO, "mp::Connection::recv: got end of file during message");
    }
    got += n;
  }
  return true;
}

bool Connection::read_length(std::uint64_t& length) {
  // A peer that answers within microseconds (a request/reply exchange) finds this process
  // still on its CPU: sleeping in read() and being woken by another CPU costs tens of
  // microseconds on each side in a VM, more than the exchange itself. So recv polls
  // briefly first, unless recent polls found nothing (spin.hpp).
  (void)detail::adaptive_spin_until([this] { return posix::readable_now(fd_); }, detail::kPollSpin,
                                    spin_history_);
  if (framing_ == Framing::native) {
    if (!read_header(&length, sizeof length, true)) return false;
  } else {
    unsigned char header[8];
    if (!read_header(header, 4, true)) return false;
    auto big_endian = [&header](int bytes) {
      std::uint64_t value = 0;
      for (int i = 0; i < bytes; ++i) value = (value << 8) | header[i];
      return value;
    };
    const auto short_length = static_cast<std::int32_t>(static_cast<std::uint32_t>(big_endian(4)));
    if (short_length >= 0) {
      length = static_cast<std::uint64_t>(short_length);
    } else if (short_length == -1) {
      read_header(header, 8, false);
      length = big_endian(8);
    } else {
      // CPython would go on reading at a wrong offset; the stream has lost its framing.
      fail_and_close(EPROTO, "mp::Connection::recv: bad message length (negative)");
    }
  }
  if (length > kMaxFrame || length > SIZE_MAX)
    fail_and_close(EMSGSIZE, "mp::Connection::recv: bad message length");
  return true;
}

void Connection::read_body(void* out, std::size_t size) {
  auto* p = static_cast<char*>(out);
  while (size > 0) {
    std::size_t n = 0;
    if (auto ec = posix::read_some(fd_, p, size, n)) {
      close();
      throw std::system_error(ec, "mp::Connection::recv");
    }
    if (n == 0) fail_and_close(EPROTO, "mp::Connection::recv: got end of file during message");
    p += n;
    size -= n;
  }
}

std::string Connection::read_body(std::uint64_t length) {
  // Room grows with what has arrived (at most doubling), never with what the header
  // claims: a corrupt length meets the end of the stream long before memory runs out.
  const auto total = static_cast<std::size_t>(length);
  std::string out;
  std::size_t got = 0;
  while (got < total) {
    if (got == out.size()) out.resize(std::min(total, std::max(kInitialBody, 2 * got)));
    std::size_t n = 0;
    if (auto ec = posix::read_some(fd_, out.data() + got, out.size() - got, n)) {
      close();
      throw std::system_error(ec, "mp::Connection::recv");
    }
    if (n == 0) fail_and_close(EPROTO, "mp::Connection::recv: got end of file during message");
    got += n;
  }
  return out;
}

std::string Connection::recv_bytes(std::optional<std::size_t> maxlength) {
  check_readable();
  std::uint64_t length = 0;
  if (!read_length(length)) throw EOFError("mp::Connection::recv: the other end is closed");
  if (maxlength && length > *maxlength)
    fail_and_close(EMSGSIZE, "mp::Connection::recv_bytes: bad message length");
  return read_body(length);
}

std::size_t Connection::recv_bytes_into(std::span<std::byte> buffer, std::size_t offset) {
  check_readable();
  if (offset > buffer.size())
    throw std::invalid_argument("mp::Connection::recv_bytes_into: offset too large");
  std::uint64_t length = 0;
  if (!read_length(length)) throw EOFError("mp::Connection::recv: the other end is closed");
  if (length > buffer.size() - offset) throw BufferTooShort(read_body(length));
  read_body(buffer.data() + offset, static_cast<std::size_t>(length));
  return static_cast<std::size_t>(length);
}

bool Connection::poll(WaitTimeout timeout) const {
  check_readable();
  struct pollfd fds[1] = {{fd_, POLLIN, 0}};
  int ready = 0;
  if (auto ec = posix::poll_until(fds, to_nanoseconds(timeout), ready))
    throw std::system_error(ec, "mp::Connection::poll");
  return ready > 0;
}

// ---- handles (Python's reduction.send_handle / recv_handle) ----

void send_handle(Connection& connection, int handle) {
  if (connection.closed()) throw_closed();
  if (!connection.writable()) throw std::logic_error("mp::send_handle: connection is read-only");
  // Python sends one byte, the number of fds modulo 256, with the fds (reduction.sendfds).
  if (auto ec = posix::send_fd(connection.fileno(), 1, handle))
    throw std::system_error(ec, "mp::send_handle");
}

int recv_handle(Connection& connection) {
  if (connection.closed()) throw_closed();
  if (!connection.readable()) throw std::logic_error("mp::recv_handle: connection is write-only");
  char count = 0;
  posix::unique_fd received;
  if (auto ec = posix::recv_fd(connection.fileno(), count, received)) {
    if (ec == std::errc::connection_aborted)
      throw EOFError("mp::recv_handle: the other end is closed");
    throw std::system_error(ec, "mp::recv_handle");
  }
  if (count != 1)
    throw std::system_error(EPROTO, std::generic_category(),
                            "mp::recv_handle: expected one file descriptor");
  return received.release();
}

std::pair<Connection, Connection> Pipe(bool duplex) {
  posix::unique_fd first, second;
  if (auto ec = posix::stream_pair(duplex, first, second)) throw std::system_error(ec, "mp::Pipe");
  if (duplex) return {Connection(first.release()), Connection(second.release())};
  return {Connection(first.release(), true, false), Connection(second.release(), false, true)};
}

// ---- wait ----

int Waitable::fileno() const {
  struct Visitor {
    int operator()(const Connection* connection) const { return connection->fileno(); }
    int operator()(const Process* process) const { return process->sentinel(); }
    int operator()(int fd) const { return fd; }
  };
  return std::visit(Visitor{}, object_);
}

std::vector<std::size_t> wait(std::span<const Waitable> objects, WaitTimeout timeout) {
  const auto wait_for = to_nanoseconds(timeout);
  if (objects.empty() && !wait_for)
    throw std::invalid_argument("mp::wait: nothing to wait for, and no timeout");
  std::vector<struct pollfd> fds;
  fds.reserve(objects.size());
  for (const Waitable& object : objects) fds.push_back({object.fileno(), POLLIN, 0});
  int ready = 0;
  if (auto ec = posix::poll_until(fds, wait_for, ready)) throw std::system_error(ec, "mp::wait");
  std::vector<std::size_t> indices;
  for (std::size_t i = 0; i < fds.size(); ++i) {
    if (fds[i].revents & POLLNVAL)
      throw std::system_error(EBADF, std::generic_category(),
                              "mp::wait: fd " + std::to_string(fds[i].fd) + " is not open");
    if (fds[i].revents != 0) indices.push_back(i);
  }
  return indices;
}

std::vector<std::size_t> wait(std::initializer_list<Waitable> objects, WaitTimeout timeout) {
  return wait(std::span<const Waitable>(objects.begin(), objects.size()), timeout);
}

}  // namespace mp
