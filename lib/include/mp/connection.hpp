// mp::Pipe, mp::Connection and mp::wait: message channels between processes.
// Mirrors Python's `multiprocessing.connection` (Pipe, Connection, wait).
//
// Differences from Python, on purpose:
//   - Pipe(duplex=false) is a socket pair shut down in one direction, not os.pipe(), so
//     that both kinds of pipe behave the same: a send to a closed peer throws
//     std::system_error(EPIPE) (Python: BrokenPipeError) and never raises SIGPIPE.
//   - Pipe's frames are an 8-byte length in native byte order, then the bytes (Python: 4
//     bytes big-endian, with an escape for large messages); not wire-compatible with Python.
//     Connections made with Framing::python (those of mp::Listener and mp::Client, see
//     <mp/listener.hpp>) use Python's frames exactly; there a negative length other than
//     Python's -1 escape is a protocol error (EPROTO; Python silently loses its framing).
//     A frame longer than 1 TiB, or one whose bytes stop early, is an error, and the body
//     is read as it arrives: a bogus length costs memory only for bytes actually sent.
//   - Misuse is a logic error, not OSError: any use after close() (or after a broken
//     frame closed the connection) throws std::invalid_argument("handle is closed"), as
//     mp::Process does after close(); recv on a send-only end and send on a receive-only
//     end throw std::logic_error. std::system_error is kept for what the OS reports.
//   - A broken frame (end of file inside a message, a length over the cap) closes the
//     connection, since the stream has lost its framing; Python leaves it open (it closes
//     only when recv_bytes' maxlength is exceeded, which mp does too).
//   - The peer closing while data we sent was still unread in its socket makes Linux
//     report ECONNRESET; at a message boundary recv() throws mp::EOFError for it, like a
//     clean close (Python: ConnectionResetError).
//   - A Connection reaches a child as a Process argument: inherited with fork, sent with
//     its fd (SCM_RIGHTS) through the spawn bootstrap with spawn. The target takes it as
//     `mp::Connection&`. Pickling it anywhere else (a Queue message, say) throws
//     mp::PicklingError; Python can send connections through queues.
//   - mp::wait returns the indices of the ready objects (Python returns the objects), and
//     refuses to wait forever on an empty list (Python hangs).
//   - Listener/Client (sockets with an authkey) are in <mp/listener.hpp>, a separate
//     target (mp::listener), because they need OpenSSL's libcrypto.
//   - recv<T>() can be refused on a connection (set_unpickling_allowed(false)): mp pickles
//     name code, so Listener/Client connections without an authkey refuse them by default
//     (Python unpickles whatever arrives). send_bytes/recv_bytes always work.
//   - send_handle/recv_handle are functions of this header (Python: reduction module).
//
// As in Python, a Connection is not thread-safe, and two processes that both send large
// messages on a duplex pair without reading deadlock once both socket buffers are full
// (about 200 KiB each way on Linux): one side must read while the other sends.
#pragma once

#include <mp/detail/export.hpp>

#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include <mp/detail/chrono.hpp>
#include <mp/detail/fd_passing.hpp>
#include <mp/errors.hpp>
#include <mp/pickle.hpp>
#include <mp/process.hpp>
#include <mp/python_pickle.hpp>

namespace mp {

// A timeout in seconds (any std::chrono duration converts); std::nullopt waits forever.
using WaitTimeout = std::optional<std::chrono::duration<double>>;

// How a Connection frames its messages. native: Pipe's (8-byte native length). python:
// CPython's multiprocessing.connection (4-byte big-endian signed length; -1 then an
// 8-byte big-endian length for bodies over 0x7fffffff), to talk to Python processes.
enum class Framing : std::uint8_t { native, python };

// One end of a Pipe: sends and receives whole messages (pickled objects or bytes).
// Move-only; the destructor closes it. Python: multiprocessing.connection.Connection.
class MP_API Connection {
 public:
  // A closed connection (every operation but close() and closed() throws).
  Connection() noexcept = default;
  // Takes ownership of `fd`, a connected stream socket (or a pipe end: then a send to a
  // closed reader raises SIGPIPE, as for any pipe). Throws std::invalid_argument if both
  // flags are false. Python: Connection(handle, readable, writable) with Framing::python.
  explicit Connection(int fd, bool readable = true, bool writable = true,
                      Framing framing = Framing::native);
  // Takes over `other`'s fd and flags; `other` is left closed.
  Connection(Connection&& other) noexcept;
  // Closes this connection's fd, then takes over `other`'s; `other` is left closed.
  Connection& operator=(Connection&& other) noexcept;
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;
  ~Connection();

  // Pickles `obj` and sends it as one message; blocks while the socket is full.
  // Compile-time error if T cannot be pickled. Throws what pickling throws,
  // std::system_error (EPIPE when the other end is closed), as send_bytes.
  // Python: send(obj).
  template <class T>
  void send(const T& obj) {
    const std::string bytes = pickle::dumps(obj);
    send_bytes(std::string_view(bytes));
  }

  // Receives one message and unpickles it as T; blocks until one arrives. Throws
  // mp::EOFError if the other end is closed and nothing is left, mp::UnpicklingError if
  // the message is not a pickle of T (it is consumed), else as recv_bytes.
  // Python: recv().
  // Throws mp::AuthenticationError, reading nothing, if unpickling is not allowed here
  // (see set_unpickling_allowed).
  template <class T>
  T recv() {
    check_unpickling_allowed();
    const std::string bytes = recv_bytes();
    return pickle::loads<T>(bytes);
  }

  // Sends bytes [offset, offset + size) of `buffer` (size: to the end) as one message; 0
  // bytes is a valid message. Throws std::invalid_argument if the range is outside the
  // buffer, std::logic_error on a receive-only end, std::invalid_argument if closed,
  // std::system_error if the OS fails (EPIPE: the other end is closed).
  // Python: send_bytes(buf, offset=0, size=None).
  void send_bytes(std::span<const std::byte> buffer, std::size_t offset = 0,
                  std::optional<std::size_t> size = std::nullopt);
  // The same for the characters of a string. Python: send_bytes(b"...").
  void send_bytes(std::string_view buffer, std::size_t offset = 0,
                  std::optional<std::size_t> size = std::nullopt);

  // Receives one message; blocks until one arrives. Throws mp::EOFError if the other end
  // is closed and nothing is left; std::system_error(EMSGSIZE, "bad message length") if
  // the message is longer than `maxlength` or than 1 TiB (an impossible length), and
  // closes the connection (Python: OSError, the same); std::system_error(EPROTO) if the
  // stream ends inside a message or, with Framing::python, declares a negative length
  // other than -1 (closes the connection); std::logic_error on a
  // send-only end.
  // Python: recv_bytes(maxlength=None).
  std::string recv_bytes(std::optional<std::size_t> maxlength = std::nullopt);

  // Receives one message into `buffer` from `offset` on; returns its size. Blocks until
  // one arrives. If it does not fit, throws mp::BufferTooShort holding the whole message
  // (consumed; the connection stays usable). Throws std::invalid_argument if offset >
  // buffer.size(), else as recv_bytes. Python: recv_bytes_into(buf, offset=0).
  std::size_t recv_bytes_into(std::span<std::byte> buffer, std::size_t offset = 0);

  // Whether a message (or the end of the stream) is ready to be received, waiting at most
  // `timeout` (default: not at all; nullopt: forever). Never returns false before the
  // timeout has passed. Throws std::logic_error on a send-only end, std::invalid_argument
  // if closed. Python: poll(timeout=0.0).
  bool poll(WaitTimeout timeout = std::chrono::duration<double>::zero()) const;

  // Closes the fd; further calls are no-ops. Python: close().
  void close() noexcept;
  // The fd; throws std::invalid_argument if closed. Python: fileno().
  int fileno() const;
  // Whether close() was called (or this is default-constructed or moved from).
  // Python: closed.
  bool closed() const noexcept { return fd_ < 0; }
  // Whether this end may receive (recv and recv_bytes throw otherwise). Python: readable.
  bool readable() const noexcept { return readable_; }
  // Whether this end may send (send and send_bytes throw otherwise). Python: writable.
  bool writable() const noexcept { return writable_; }
  // How the messages are framed, fixed at construction (Python has only Framing::python).
  Framing framing() const noexcept { return framing_; }

  // Whether recv<T>() unpickles (default: true). mp pickles can name functions of this
  // binary, so a peer that is not authenticated must not send them: mp::Listener and
  // mp::Client without an authkey turn this off unless told otherwise.
  bool unpickling_allowed() const noexcept { return unpickling_allowed_; }
  // Allows or refuses recv<T>() from now on (a refused recv<T>() throws
  // mp::AuthenticationError); send_bytes/recv_bytes are unaffected.
  void set_unpickling_allowed(bool allowed) noexcept { unpickling_allowed_ = allowed; }

  // Pickling support for mp::pickle: valid only while pickling the arguments of a
  // spawned child, which then receives a duplicate of the fd (see the header comment).
  template <class Archive>
  void save(Archive& ar) const {
    const std::uint32_t index = detail::register_fd_for_child(fileno(), "a Connection");
    const bool readable = readable_;
    const bool writable = writable_;
    const bool python_framing = framing_ == Framing::python;
    const bool unpickling_allowed = unpickling_allowed_;
    ar(index, readable, writable, python_framing, unpickling_allowed);
  }
  // The child's half: takes the duplicated fd with the same flags and framing. Throws
  // mp::UnpicklingError if the fd was not passed to this process.
  template <class Archive>
  void load(Archive& ar) {
    std::uint32_t index = 0;
    bool readable = false;
    bool writable = false;
    bool python_framing = false;
    bool unpickling_allowed = false;
    ar(index, readable, writable, python_framing, unpickling_allowed);
    *this = Connection(detail::take_inherited_fd(index), readable, writable,
                       python_framing ? Framing::python : Framing::native);
    unpickling_allowed_ = unpickling_allowed;
  }

  // Sends `obj` as a Python pickle (protocol 4, see <mp/python_pickle.hpp>), the message a
  // Python peer's Connection.recv() unpickles (given Python's framing on this Connection).
  // Throws mp::PicklingError for a str that is not UTF-8, else as send_bytes.
  template <class T>
  void send_python(const T& obj) {
    send_bytes(std::string_view(pickle::python::dumps(obj)));
  }

  // Receives one message holding a Python pickle of plain data (what a Python peer's
  // Connection.send(obj) writes) as T. Never runs code from the pickle. Throws
  // mp::UnpicklingError for a bad pickle or one that is not a T (consumed), else as
  // recv_bytes.
  template <class T = pickle::python::Object>
  T recv_python() {
    return pickle::python::loads<T>(recv_bytes());
  }

 private:
  void check_readable() const;
  void check_writable() const;
  void check_unpickling_allowed() const;
  // Reads exactly `size` header bytes; false at a clean end of stream before the first.
  bool read_header(void* out, std::size_t size, bool at_boundary);
  // Reads the next frame's length; false at a clean end of stream.
  bool read_length(std::uint64_t& length);
  // Reads `size` bytes of the current frame into `out`.
  void read_body(void* out, std::size_t size);
  // Reads the current frame's body of `length` bytes, growing the buffer as bytes arrive.
  std::string read_body(std::uint64_t length);
  [[noreturn]] void fail_and_close(int error, const char* what);

  int fd_ = -1;
  bool readable_ = false;
  bool writable_ = false;
  Framing framing_ = Framing::native;
  bool unpickling_allowed_ = true;
  bool is_socket_ = true;  // false after sendmsg() said ENOTSOCK: a pipe, written with writev
  std::uint16_t spin_history_ = 0;  // what recv's brief polls learned (connection.cpp)
};

// Sends a duplicate of the file descriptor `handle` over `connection`, which must be an
// AF_UNIX socket (one byte with SCM_RIGHTS, as Python's reduction.send_handle, so a
// Python peer's recv_handle takes it). Blocks while the socket is full. Throws
// std::system_error if the OS refuses (ENOTSOCK, EPIPE, EBADF, ...), else as send_bytes.
// Python: multiprocessing.reduction.send_handle(conn, handle, destination_pid).
MP_API void send_handle(Connection& connection, int handle);

// Receives a file descriptor sent by send_handle (or Python's) and returns it; the
// caller owns it (close-on-exec). Blocks until it arrives. Throws mp::EOFError if the
// other end is closed, std::system_error(EPROTO) if a byte came without a descriptor,
// else as recv_bytes. Python: multiprocessing.reduction.recv_handle(conn).
MP_API int recv_handle(Connection& connection);

// A connected pair of Connections. duplex: both ends send and receive (a socket pair);
// else (receive end, send end). Throws std::system_error if the OS refuses.
// Python: Pipe(duplex=True).
MP_API std::pair<Connection, Connection> Pipe(bool duplex = true);

// Something mp::wait can watch: a Connection (ready when recv() would not block: a
// message or the end of the stream), a Process (ready once it has ended: its sentinel),
// or a raw fd (ready when readable or hung up). Refers to the object; does not own it.
class MP_API Waitable {
 public:
  // A Connection, ready when a message or the end of the stream is there to read.
  Waitable(const Connection& connection) noexcept : object_(&connection) {}  // NOLINT
  // A Process, ready once it has ended (its sentinel).
  Waitable(const Process& process) noexcept : object_(&process) {}  // NOLINT
  // A file descriptor, ready when readable or hung up.
  Waitable(int fd) noexcept : object_(fd) {}  // NOLINT

  // The fd to watch. Throws as Connection::fileno() and Process::sentinel() do.
  int fileno() const;

 private:
  std::variant<const Connection*, const Process*, int> object_;
};

// Waits until at least one of `objects` is ready, at most `timeout` (nullopt: forever),
// and returns the indices of the ready ones in increasing order; empty only when the
// timeout passed. Never returns early. Throws std::invalid_argument for an empty list
// without a timeout (it would never return) and for a closed Connection or an unstarted
// Process, std::system_error if poll(2) fails. Python: multiprocessing.connection.wait.
MP_API std::vector<std::size_t> wait(std::span<const Waitable> objects,
                                     WaitTimeout timeout = std::nullopt);
// The same with the objects in braces: mp::wait({reader, process}, 1s). Throws as above.
MP_API std::vector<std::size_t> wait(std::initializer_list<Waitable> objects,
                                     WaitTimeout timeout = std::nullopt);

// A Connection moved into a Process belongs to the child once it is started: start()
// closes the parent's copy (see detail::release_after_start in <mp/process.hpp>), so
// the parent sees EOF when the child's end closes. Python: users close it by hand.
inline void release_after_start(Connection& connection, detail::after_start_tag) noexcept {
  connection.close();
}

}  // namespace mp
