// Tests for <mp/connection.hpp>: Pipe, Connection and wait. Tests with a child run once
// per start method (fork, spawn); children report through the connection under test
// and through their exit codes, and every child is joined with a bound.
#include <fcntl.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <system_error>
#include <thread>
#include <tuple>
#include <utility>
#include <variant>
#include <vector>

#include <mp/connection.hpp>
#include <mp/context.hpp>
#include <mp/detail/fd_passing.hpp>
#include <mp/process.hpp>

#include "test_util.hpp"

using namespace std::chrono_literals;

namespace {

constexpr auto kJoinLimit = 60s;

using Clock = std::chrono::steady_clock;

// A user type with serialize(), sent across.
struct Order {
  std::string item;
  int quantity = 0;
  std::vector<double> prices;
  bool operator==(const Order&) const = default;
  template <class Archive>
  void serialize(Archive& ar) {
    ar(item, quantity, prices);
  }
};

using Mixed = std::variant<int, std::string, std::vector<int>>;

std::string pattern_bytes(std::size_t size, unsigned seed) {
  std::string out(size, '\0');
  for (std::size_t i = 0; i < size; ++i) out[i] = static_cast<char>((i * 131 + seed) & 0xFF);
  return out;
}

std::span<const std::byte> as_bytes(std::string_view text) {
  return std::as_bytes(std::span<const char>(text.data(), text.size()));
}

// Writes raw bytes into a connection's fd, bypassing framing.
void write_raw(int fd, const void* data, std::size_t size) {
  const char* p = static_cast<const char*>(data);
  while (size > 0) {
    ssize_t n = ::send(fd, p, size, MSG_NOSIGNAL);
    ASSERT_GT(n, 0) << std::strerror(errno);
    p += n;
    size -= static_cast<std::size_t>(n);
  }
}

// ---- child-side functions (free functions taking Connection&: they work with spawn) ----

// Receives values of several types and sends each back, then a last transformed one.
void echo_types(mp::Connection& conn) {
  conn.send(conn.recv<int>());
  conn.send(conn.recv<double>());
  conn.send(conn.recv<std::string>());
  conn.send(conn.recv<std::vector<int>>());
  conn.send(conn.recv<std::map<std::string, int>>());
  conn.send(conn.recv<std::optional<std::string>>());
  conn.send(conn.recv<Mixed>());
  conn.send(conn.recv<Order>());
  conn.send(conn.recv<std::tuple<int, std::string, bool>>());
  conn.send_bytes(conn.recv_bytes());  // an empty message
  const auto number = conn.recv<long>();
  conn.send(number * 2);
}

// Echoes objects until it receives nullopt (the benchmark's pipe_echo).
void echo_until_none(mp::Connection& conn) {
  for (;;) {
    auto value = conn.recv<std::optional<std::int64_t>>();
    if (!value) return;
    conn.send(*value);
  }
}

// Sends three messages, then ends (its end closes).
void send_three_and_exit(mp::Connection& conn) {
  conn.send(std::string("one"));
  conn.send(std::string("two"));
  conn.send_bytes(std::string_view("three"));
}

// Receives one big message and sends it back.
void bounce_bytes(mp::Connection& conn) { conn.send_bytes(conn.recv_bytes()); }

// Waits for "go" on `control`, sends on `data`, waits for "exit", ends.
void signal_when_told(mp::Connection& control, mp::Connection& data) {
  if (control.recv<std::string>() != "go") std::exit(3);
  data.send(42);
  if (control.recv<std::string>() != "exit") std::exit(4);
}

// Receives on a receive-only end; exits with the value (checks the direction works).
void exit_with_received(mp::Connection& receive_end) {
  const int value = receive_end.recv<int>();
  std::exit(receive_end.writable() ? 99 : value);
}

class ConnectionProcessTest : public ::testing::TestWithParam<std::string> {
 protected:
  mp::ProcessOptions options() const { return {.start_method = GetParam()}; }

  // Joins with a bound; kills the child if it is still running.
  static void join_checked(mp::Process& p) {
    if (!p.join(kJoinLimit)) {
      p.kill();
      p.join();
      FAIL() << p.repr() << " did not end within the limit";
    }
  }
  // join_checked, then expects exit code `code`.
  static void join_exits_with(mp::Process& p, int code) {
    join_checked(p);
    EXPECT_EQ(p.exitcode(), code) << p.repr();
  }

  // Starts f(args...) in a child with this test's start method.
  template <class F, class... Args>
  mp::Process start(F f, Args&&... args) const {
    mp::Process p(options(), f, std::forward<Args>(args)...);
    p.start();
    return p;
  }
};

// ---- within one process ----

TEST(ConnectionTest, DuplexPairSendsBothWays) {
  auto [a, b] = mp::Pipe();
  EXPECT_TRUE(a.readable());
  EXPECT_TRUE(a.writable());
  EXPECT_TRUE(b.readable());
  EXPECT_TRUE(b.writable());
  EXPECT_FALSE(a.closed());
  EXPECT_NE(a.fileno(), b.fileno());
  // Close-on-exec, so spawned programs do not inherit them by accident.
  EXPECT_TRUE(::fcntl(a.fileno(), F_GETFD) & FD_CLOEXEC);
  EXPECT_TRUE(::fcntl(b.fileno(), F_GETFD) & FD_CLOEXEC);

  a.send(7);
  a.send(std::string("hello"));
  a.send(Order{"tea", 3, {1.5, 2.25}});
  a.send(Mixed(std::vector<int>{1, 2, 3}));
  EXPECT_EQ(b.recv<int>(), 7);
  EXPECT_EQ(b.recv<std::string>(), "hello");
  EXPECT_EQ(b.recv<Order>(), (Order{"tea", 3, {1.5, 2.25}}));
  EXPECT_EQ(b.recv<Mixed>(), Mixed(std::vector<int>{1, 2, 3}));
  b.send(std::vector<std::string>{"x", "", "z"});
  EXPECT_EQ(a.recv<std::vector<std::string>>(), (std::vector<std::string>{"x", "", "z"}));
}

TEST(ConnectionTest, ZeroByteMessagesAreMessages) {
  auto [a, b] = mp::Pipe();
  a.send_bytes(std::string_view());
  a.send_bytes(std::span<const std::byte>());
  a.send(std::string());
  EXPECT_TRUE(b.poll());
  EXPECT_EQ(b.recv_bytes(), "");
  std::array<std::byte, 4> buffer{};
  EXPECT_EQ(b.recv_bytes_into(buffer, 4), 0u);
  EXPECT_EQ(b.recv<std::string>(), "");
  EXPECT_FALSE(b.poll());
}

TEST(ConnectionTest, SendBytesOffsetAndSize) {
  auto [a, b] = mp::Pipe();
  const std::string text = "0123456789";
  a.send_bytes(text, 3);
  a.send_bytes(text, 2, 4);
  a.send_bytes(as_bytes(text), 10);
  a.send_bytes(as_bytes(text), 0, 10);
  EXPECT_EQ(b.recv_bytes(), "3456789");
  EXPECT_EQ(b.recv_bytes(), "2345");
  EXPECT_EQ(b.recv_bytes(), "");
  EXPECT_EQ(b.recv_bytes(), text);
  EXPECT_THROW(a.send_bytes(text, 11), std::invalid_argument);
  EXPECT_THROW(a.send_bytes(text, 5, 6), std::invalid_argument);
  EXPECT_THROW(a.send_bytes(as_bytes(text), 0, 11), std::invalid_argument);
  // Huge values must not wrap around into a valid-looking range.
  EXPECT_THROW(a.send_bytes(text, 2, SIZE_MAX), std::invalid_argument);
  EXPECT_FALSE(b.poll());  // nothing was sent by the failed calls
}

TEST(ConnectionTest, OneWayPipeDirections) {
  auto [receive_end, send_end] = mp::Pipe(false);
  EXPECT_TRUE(receive_end.readable());
  EXPECT_FALSE(receive_end.writable());
  EXPECT_FALSE(send_end.readable());
  EXPECT_TRUE(send_end.writable());
  send_end.send(5);
  EXPECT_EQ(receive_end.recv<int>(), 5);
  EXPECT_THROW(receive_end.send(1), std::logic_error);
  EXPECT_THROW(receive_end.send_bytes(std::string_view("x")), std::logic_error);
  EXPECT_THROW(send_end.recv<int>(), std::logic_error);
  EXPECT_THROW(send_end.recv_bytes(), std::logic_error);
  std::array<std::byte, 8> buffer{};
  EXPECT_THROW(send_end.recv_bytes_into(buffer), std::logic_error);
  EXPECT_THROW(send_end.poll(), std::logic_error);
  // Not a std::invalid_argument: that one means "closed".
  try {
    receive_end.send(1);
  } catch (const std::invalid_argument&) {
    ADD_FAILURE() << "direction misuse reported as a closed handle";
  } catch (const std::logic_error&) {
  }
  // The OS agrees: even a raw write on the receive end fails.
  EXPECT_LT(::send(receive_end.fileno(), "x", 1, MSG_NOSIGNAL), 0);
}

TEST(ConnectionTest, UseAfterCloseThrowsInvalidArgument) {
  auto [a, b] = mp::Pipe();
  a.close();
  EXPECT_TRUE(a.closed());
  a.close();  // a no-op
  EXPECT_THROW(a.send(1), std::invalid_argument);
  EXPECT_THROW(a.recv<int>(), std::invalid_argument);
  EXPECT_THROW(a.recv_bytes(), std::invalid_argument);
  EXPECT_THROW(a.poll(), std::invalid_argument);
  EXPECT_THROW(a.fileno(), std::invalid_argument);
  mp::Connection moved = std::move(b);
  EXPECT_TRUE(b.closed());  // NOLINT(bugprone-use-after-move): moved-from is closed
  EXPECT_FALSE(moved.closed());
  mp::Connection empty;
  EXPECT_TRUE(empty.closed());
  EXPECT_THROW(empty.send(1), std::invalid_argument);
}

TEST(ConnectionTest, RecvBytesMaxlengthClosesAsPython) {
  auto [a, b] = mp::Pipe();
  a.send_bytes(std::string_view("12345"));
  a.send_bytes(std::string_view("123456"));
  EXPECT_EQ(b.recv_bytes(5), "12345");  // exactly maxlength is fine
  try {
    (void)b.recv_bytes(5);
    FAIL() << "no exception for a message longer than maxlength";
  } catch (const std::system_error& e) {
    EXPECT_EQ(e.code(), std::errc::message_size) << e.what();
  }
  EXPECT_TRUE(b.closed());
  EXPECT_THROW(b.recv_bytes(), std::invalid_argument);
}

TEST(ConnectionTest, RecvBytesIntoAndBufferTooShortKeepsTheMessage) {
  auto [a, b] = mp::Pipe();
  std::array<std::byte, 8> buffer{};
  a.send_bytes(std::string_view("abc"));
  EXPECT_EQ(b.recv_bytes_into(buffer, 5), 3u);
  EXPECT_EQ(static_cast<char>(buffer[5]), 'a');
  EXPECT_EQ(static_cast<char>(buffer[7]), 'c');

  const std::string big = pattern_bytes(100'000, 7);
  a.send_bytes(big);
  a.send_bytes(std::string_view("next"));
  try {
    (void)b.recv_bytes_into(buffer, 1);
    FAIL() << "no BufferTooShort";
  } catch (const mp::BufferTooShort& e) {
    EXPECT_EQ(e.message(), big);
  }
  // The message was consumed; the connection is still usable.
  EXPECT_FALSE(b.closed());
  EXPECT_EQ(b.recv_bytes_into(buffer), 4u);
  EXPECT_EQ(std::string(reinterpret_cast<const char*>(buffer.data()), 4), "next");
  EXPECT_THROW(b.recv_bytes_into(buffer, 9), std::invalid_argument);
  // A message that fills the buffer exactly fits.
  a.send_bytes(std::string_view("12345678"));
  EXPECT_EQ(b.recv_bytes_into(buffer), 8u);
}

TEST(ConnectionTest, RecvOfAnotherTypeIsUnpicklingError) {
  auto [a, b] = mp::Pipe();
  a.send(std::string("text"));
  EXPECT_THROW(b.recv<int>(), mp::UnpicklingError);
  a.send_bytes(std::string_view("definitely not a pickle"));
  EXPECT_THROW(b.recv<std::string>(), mp::UnpicklingError);
  a.send(3);  // the stream is still in step
  EXPECT_EQ(b.recv<int>(), 3);
}

TEST(ConnectionTest, PollWaitsAtLeastTheTimeout) {
  auto [a, b] = mp::Pipe();
  EXPECT_FALSE(b.poll());
  for (auto timeout : {std::chrono::duration<double>(0.0005), std::chrono::duration<double>(0.03),
                       std::chrono::duration<double>(0.1)}) {
    const auto start = Clock::now();
    EXPECT_FALSE(b.poll(timeout));
    EXPECT_GE(Clock::now() - start, timeout);
  }
  const auto start = Clock::now();
  EXPECT_FALSE(b.poll(std::chrono::milliseconds(20)));
  EXPECT_GE(Clock::now() - start, 20ms);
  a.send(1);
  EXPECT_TRUE(b.poll());
  EXPECT_TRUE(b.poll(std::nullopt));
  EXPECT_TRUE(b.poll(10s));
  EXPECT_EQ(b.recv<int>(), 1);
  EXPECT_FALSE(b.poll(-1s));  // negative: do not wait
}

TEST(ConnectionTest, EOFErrorOnlyAfterTheDataIsDrained) {
  auto [a, b] = mp::Pipe();
  a.send(1);
  a.send(std::string("two"));
  a.close();
  EXPECT_TRUE(b.poll());
  EXPECT_EQ(b.recv<int>(), 1);
  EXPECT_EQ(b.recv<std::string>(), "two");
  EXPECT_TRUE(b.poll());  // the end of the stream is "ready" too
  EXPECT_THROW(b.recv<int>(), mp::EOFError);
  EXPECT_THROW(b.recv_bytes(), mp::EOFError);
  EXPECT_FALSE(b.closed());
}

TEST(ConnectionTest, EOFErrorWhenThePeerLeftOurMessagesUnread) {
  // Linux reports ECONNRESET when a socket is closed with unread data in it.
  auto [a, b] = mp::Pipe();
  b.send(1);
  a.send(2);
  a.close();  // b's message to a was never read
  EXPECT_EQ(b.recv<int>(), 2);
  EXPECT_THROW(b.recv<int>(), mp::EOFError);
}

// Runs `body` in a forked child and returns the status the child exits with: body's
// return value, 3 if it threw. A child killed by a signal fails the test and gives -1.
template <class Body>
int exit_code_in_child(Body body) {
  const pid_t pid = ::fork();
  if (pid < 0) {
    ADD_FAILURE() << "fork failed";
    return -1;
  }
  if (pid == 0) {
    int code = 3;
    try {
      code = body();
    } catch (...) {
    }
    ::_exit(code);
  }
  int status = 0;
  if (::waitpid(pid, &status, 0) != pid) {
    ADD_FAILURE() << "waitpid failed";
    return -1;
  }
  if (!WIFEXITED(status)) {
    ADD_FAILURE() << "killed by signal " << WTERMSIG(status);
    return -1;
  }
  return WEXITSTATUS(status);
}

// Sends to a closed peer in a forked child: it must get EPIPE, not die of SIGPIPE.
void expect_epipe_without_sigpipe(bool duplex) {
  EXPECT_EQ(exit_code_in_child([duplex] {
              ::signal(SIGPIPE, SIG_DFL);
              auto [first, second] = mp::Pipe(duplex);
              mp::Connection& sender = duplex ? first : second;
              mp::Connection& other = duplex ? second : first;
              other.close();
              try {
                sender.send(std::string(100'000, 'x'));
              } catch (const std::system_error& e) {
                return e.code() == std::errc::broken_pipe ? 0 : 2;
              }
              return 1;
            }),
            0);
}

TEST(ConnectionTest, SendToClosedPeerIsEPIPENotSIGPIPE) {
  expect_epipe_without_sigpipe(true);
  expect_epipe_without_sigpipe(false);
}

// The largest extra address space a corrupt-frame read may use.
constexpr std::size_t kAllocationAllowance = 256u << 20;

// This process's virtual size in bytes, from /proc/self/status.
std::size_t virtual_size() {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line))
    if (line.rfind("VmSize:", 0) == 0) return std::stoull(line.substr(7)) * 1024;
  return 0;
}

// Feeds `raw` then end of file into a connection and receives, in a forked child whose
// address space may grow by at most kAllocationAllowance (so a read that trusts a bogus
// length fails). The child exits 0 if recv_bytes threw std::system_error with `expected`
// and closed the connection.
void expect_frame_error(const std::string& raw, std::errc expected) {
  const int status = exit_code_in_child([&raw, expected] {
    int code = 1;
    auto [a, b] = mp::Pipe();
    // A thread writes, since `raw` may not fit in the socket's buffer.
    // An init-capture: clang++ 14 cannot capture a structured binding.
    std::thread writer([&raw, &a = a] {
      const int fd = a.fileno();
      std::size_t done = 0;
      while (done < raw.size()) {
        ssize_t n = ::send(fd, raw.data() + done, raw.size() - done, MSG_NOSIGNAL);
        if (n <= 0) break;  // the reader gave up
        done += static_cast<std::size_t>(n);
      }
      a.close();
    });
    struct rlimit limit = {};
    limit.rlim_cur = limit.rlim_max = virtual_size() + kAllocationAllowance;
    if (::setrlimit(RLIMIT_AS, &limit) != 0) ::_exit(6);
    try {
      (void)b.recv_bytes();
    } catch (const std::system_error& e) {
      code = e.code() == expected ? (b.closed() ? 0 : 7) : 2;
    } catch (const std::bad_alloc&) {
      code = 4;
    }
    b.close();  // unblocks the writer if the read stopped early
    writer.join();
    return code;
  });
  EXPECT_EQ(status, 0) << "2: wrong error, 3: another exception, 4: bad_alloc, 7: not closed "
                          "(frame of "
                       << raw.size() << " bytes)";
}

std::string frame_header(std::uint64_t length) {
  return std::string(reinterpret_cast<const char*>(&length), sizeof length);
}

TEST(ConnectionTest, CorruptFramesAreErrorsWithoutHugeAllocations) {
  // A length past the 1 TiB cap.
  expect_frame_error(frame_header(std::uint64_t{1} << 60) + "junk", std::errc::message_size);
  expect_frame_error(frame_header(UINT64_MAX), std::errc::message_size);
  // Plausible lengths whose bodies never come: end of file inside the message.
  expect_frame_error(frame_header(std::uint64_t{1} << 39) + std::string(100, 'x'),
                     std::errc::protocol_error);
  expect_frame_error(frame_header(std::uint64_t{1} << 30) + std::string(300'000, 'y'),
                     std::errc::protocol_error);
  expect_frame_error(frame_header(1000) + std::string(999, 'z'), std::errc::protocol_error);
  // A truncated length.
  expect_frame_error(std::string("\x05\x00\x00", 3), std::errc::protocol_error);
}

TEST(ConnectionTest, BogusLengthWithRecvBytesIntoIsAnError) {
  auto [a, b] = mp::Pipe();
  const std::string raw = frame_header(std::uint64_t{1} << 38) + "abc";
  write_raw(a.fileno(), raw.data(), raw.size());
  a.close();
  std::array<std::byte, 16> buffer{};
  EXPECT_THROW((void)b.recv_bytes_into(buffer), std::system_error);
  EXPECT_TRUE(b.closed());
}

TEST(ConnectionTest, PicklingOutsideASpawnIsPicklingError) {
  auto [a, b] = mp::Pipe();
  try {
    (void)mp::pickle::dumps(a);
    FAIL() << "a Connection was pickled into a plain message";
  } catch (const mp::PicklingError& e) {
    EXPECT_NE(std::string(e.what()).find("can only be passed as a Process argument"),
              std::string::npos)
        << e.what();
  }
  EXPECT_THROW((void)mp::pickle::dumps(std::tuple<int, mp::Connection>(1, std::move(b))),
               mp::PicklingError);
}

TEST(ConnectionTest, FdPassingCollectsAndRestoresConnections) {
  auto [a, b] = mp::Pipe();
  auto [receive_end, send_end] = mp::Pipe(false);
  std::string bytes;
  std::vector<int> collected;
  {
    mp::detail::FdCollector collector;
    using Args = std::tuple<int, mp::Connection, mp::Connection>;
    Args args(5, std::move(b), std::move(send_end));
    bytes = mp::pickle::dumps(args);
    ASSERT_EQ(collector.collected().size(), 2u);
    EXPECT_EQ(collector.collected()[0], std::get<1>(args).fileno());
    EXPECT_EQ(collector.collected()[1], std::get<2>(args).fileno());
    // What the child receives: duplicates of the fds (SCM_RIGHTS makes new ones).
    for (int fd : collector.collected()) collected.push_back(::fcntl(fd, F_DUPFD_CLOEXEC, 0));
  }
  // The "child" side.
  mp::detail::set_inherited_fds(collected);
  auto [number, child_end, child_send_end] =
      mp::pickle::loads<std::tuple<int, mp::Connection, mp::Connection>>(bytes);
  EXPECT_EQ(number, 5);
  EXPECT_TRUE(child_end.readable() && child_end.writable());
  EXPECT_FALSE(child_send_end.readable());
  EXPECT_TRUE(child_send_end.writable());
  child_end.send(std::string("through a passed fd"));
  EXPECT_EQ(a.recv<std::string>(), "through a passed fd");
  child_send_end.send(9);
  EXPECT_EQ(receive_end.recv<int>(), 9);
  // Each fd can be taken once.
  using Args = std::tuple<int, mp::Connection, mp::Connection>;
  EXPECT_THROW(mp::pickle::loads<Args>(bytes), mp::UnpicklingError);
  mp::detail::close_inherited_fds();
  EXPECT_THROW((void)mp::detail::take_inherited_fd(7), mp::UnpicklingError);
}

TEST(ConnectionTest, TheLargestTimeoutWaits) {
  // now() + the largest timeout overflows into the past: poll and wait must wait.
  auto [a, b] = mp::Pipe();
  std::thread sender([&sender_end = a] {
    std::this_thread::sleep_for(200ms);
    sender_end.send(1);
  });
  const auto largest = std::chrono::duration<double>(std::chrono::nanoseconds::max());
  EXPECT_TRUE(b.poll(largest));
  EXPECT_EQ(mp::wait({b}, largest), std::vector<std::size_t>{0});
  sender.join();
}

TEST(ConnectionTest, WaitTimesOutWithoutReturningEarly) {
  auto [a, b] = mp::Pipe();
  auto start = Clock::now();
  EXPECT_TRUE(mp::wait({a, b}, 50ms).empty());
  EXPECT_GE(Clock::now() - start, 50ms);
  start = Clock::now();
  EXPECT_TRUE(mp::wait({}, 20ms).empty());
  EXPECT_GE(Clock::now() - start, 20ms);
  EXPECT_THROW(mp::wait({}), std::invalid_argument);
  EXPECT_TRUE(mp::wait({a, b}, 0s).empty());
  a.send(1);
  EXPECT_EQ(mp::wait({a, b}, 0s), std::vector<std::size_t>{1});
  EXPECT_EQ(mp::wait({a, b}), std::vector<std::size_t>{1});
  // Raw fds, and a vector of Waitables.
  int fds[2];
  ASSERT_EQ(::pipe2(fds, O_CLOEXEC), 0);
  std::vector<mp::Waitable> objects = {fds[0], a, b};
  EXPECT_EQ(mp::wait(objects, 0s), std::vector<std::size_t>{2});
  ASSERT_EQ(::write(fds[1], "x", 1), 1);
  EXPECT_EQ(mp::wait(objects, 0s), (std::vector<std::size_t>{0, 2}));
  ::close(fds[0]);
  ::close(fds[1]);
  mp::Connection closed;
  EXPECT_THROW(mp::wait({closed}, 0s), std::invalid_argument);
}

// ---- with a child, per start method ----

TEST_P(ConnectionProcessTest, SendsManyTypesToAChildAndBack) {
  auto [parent_end, child_end] = mp::Pipe();
  mp::Process p = start(&echo_types, std::move(child_end));
  parent_end.send(-17);
  EXPECT_EQ(parent_end.recv<int>(), -17);
  parent_end.send(2.5);
  EXPECT_EQ(parent_end.recv<double>(), 2.5);
  parent_end.send(std::string("h\0llo", 5));
  EXPECT_EQ(parent_end.recv<std::string>(), std::string("h\0llo", 5));
  parent_end.send(std::vector<int>{1, 2, 3});
  EXPECT_EQ(parent_end.recv<std::vector<int>>(), (std::vector<int>{1, 2, 3}));
  parent_end.send(std::map<std::string, int>{{"a", 1}, {"b", 2}});
  EXPECT_EQ((parent_end.recv<std::map<std::string, int>>()),
            (std::map<std::string, int>{{"a", 1}, {"b", 2}}));
  parent_end.send(std::optional<std::string>());
  EXPECT_EQ(parent_end.recv<std::optional<std::string>>(), std::nullopt);
  parent_end.send(Mixed(std::string("v")));
  EXPECT_EQ(parent_end.recv<Mixed>(), Mixed(std::string("v")));
  const Order order{"coffee", 2, {3.5}};
  parent_end.send(order);
  EXPECT_EQ(parent_end.recv<Order>(), order);
  parent_end.send(std::tuple<int, std::string, bool>(1, "t", true));
  EXPECT_EQ((parent_end.recv<std::tuple<int, std::string, bool>>()),
            (std::tuple<int, std::string, bool>(1, "t", true)));
  parent_end.send_bytes(std::string_view());
  EXPECT_EQ(parent_end.recv_bytes(), "");
  parent_end.send(21L);
  EXPECT_EQ(parent_end.recv<long>(), 42L);
  join_exits_with(p, 0);
}

TEST_P(ConnectionProcessTest, EchoChildManyRoundTrips) {
  auto [parent_end, child_end] = mp::Pipe();
  mp::Process p = start(&echo_until_none, std::move(child_end));
  for (std::int64_t i = 0; i < 2000; ++i) {
    parent_end.send(std::optional<std::int64_t>(i));
    ASSERT_EQ(parent_end.recv<std::int64_t>(), i);
  }
  parent_end.send(std::optional<std::int64_t>());
  join_exits_with(p, 0);
}

// What send_three_and_exit sends.
void expect_three_messages(mp::Connection& from_child) {
  EXPECT_EQ(from_child.recv<std::string>(), "one");
  EXPECT_EQ(from_child.recv<std::string>(), "two");
  EXPECT_EQ(from_child.recv_bytes(), "three");
}

TEST_P(ConnectionProcessTest, EOFErrorAfterTheChildsMessages) {
  auto [parent_end, child_end] = mp::Pipe();
  {
    mp::Process p = start(&send_three_and_exit, std::move(child_end));
    join_exits_with(p, 0);
    p.close();
  }
  expect_three_messages(parent_end);
  EXPECT_THROW(parent_end.recv<std::string>(), mp::EOFError);
}

// The parent's copy of a Connection moved into a Process is closed by start(), as
// Python drops a started Process's arguments: EOF arrives while the Process object
// still exists, without join() or close().
TEST_P(ConnectionProcessTest, EOFWhileTheProcessObjectStillExists) {
  auto [parent_end, child_end] = mp::Pipe();
  mp::Process p = start(&send_three_and_exit, std::move(child_end));
  expect_three_messages(parent_end);
  ASSERT_TRUE(parent_end.poll(std::chrono::seconds(30))) << "EOF never came";
  EXPECT_THROW(parent_end.recv<std::string>(), mp::EOFError);
  join_exits_with(p, 0);
}

TEST_P(ConnectionProcessTest, OneWayPipeToAChild) {
  auto [receive_end, send_end] = mp::Pipe(false);
  mp::Process p = start(&exit_with_received, std::move(receive_end));
  send_end.send(23);
  join_exits_with(p, 23);
}

TEST_P(ConnectionProcessTest, SixtyFourMiBBothWays) {
  auto [parent_end, child_end] = mp::Pipe();
  mp::Process p = start(&bounce_bytes, std::move(child_end));
  const std::string big = pattern_bytes(64u << 20, 3);
  parent_end.send_bytes(big);
  const std::string back = parent_end.recv_bytes();
  EXPECT_EQ(back.size(), big.size());
  EXPECT_TRUE(back == big);
  join_exits_with(p, 0);
}

TEST_P(ConnectionProcessTest, WaitReturnsTheReadyConnectionsAndSentinels) {
  auto [idle_parent, idle_child] = mp::Pipe();
  auto [data_parent, data_child] = mp::Pipe();
  auto [control_parent, control_child] = mp::Pipe();
  mp::Process p = start(&signal_when_told, std::move(control_child), std::move(data_child));
  EXPECT_TRUE(mp::wait({idle_parent, data_parent, p}, 50ms).empty());
  control_parent.send(std::string("go"));
  EXPECT_EQ(mp::wait({idle_parent, data_parent, p}, kJoinLimit), std::vector<std::size_t>{1});
  EXPECT_EQ(data_parent.recv<int>(), 42);
  control_parent.send(std::string("exit"));
  // The child's exit makes `data` reach end of file (start() closed the parent's copy of
  // the child's end) and the sentinel ready, in either order; never `idle`.
  std::vector<std::size_t> ready;
  const auto deadline = std::chrono::steady_clock::now() + kJoinLimit;
  while (std::count(ready.begin(), ready.end(), 2u) == 0 &&
         std::chrono::steady_clock::now() < deadline) {
    ready = mp::wait({idle_parent, data_parent, p}, kJoinLimit);
    ASSERT_FALSE(ready.empty());
    EXPECT_EQ(std::count(ready.begin(), ready.end(), 0u), 0);
  }
  EXPECT_EQ(std::count(ready.begin(), ready.end(), 2u), 1) << "the sentinel never became ready";
  join_exits_with(p, 0);
  (void)idle_child;
}

INSTANTIATE_TEST_SUITE_P(StartMethods, ConnectionProcessTest,
                         ::testing::ValuesIn(mp_test::start_methods()), mp_test::method_name);

}  // namespace
