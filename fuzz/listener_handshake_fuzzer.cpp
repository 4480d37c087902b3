// Fuzzes what a Listener/Client connection parses from its peer: Python's frames
// (Framing::python: 4-byte big-endian signed length, -1 then an 8-byte length) and the
// authentication handshake (answer_challenge, deliver_challenge). The input is what the
// peer wrote before it stopped writing; the first byte picks the reader:
//   0  recv_bytes until the stream ends
//   1  answer_challenge (the input holds the challenge and the verdict)
//   2  deliver_challenge (the input holds the peer's response)
//
// Allowed outcomes for bad bytes: frames: mp::EOFError at the end, std::system_error
// EPROTO (the stream ends inside a frame, or a negative length other than -1) or
// EMSGSIZE (a length over the 1 TiB cap); handshakes: mp::AuthenticationError (or
// success, for an input that holds a challenge and "#WELCOME#"). Anything else, a
// crash, a leak or a huge allocation is a finding.
//
// Property (frames): every message received is exactly the next frame of the input as
// the harness parses Python's format, and nothing is received after a broken frame.
#include <sys/socket.h>
#include <unistd.h>

#include <cstdint>
#include <cstring>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

#include <mp/connection.hpp>
#include <mp/errors.hpp>
#include <mp/listener.hpp>

#include "fuzz_support.hpp"

namespace {

constexpr std::string_view kKey = "fuzz key";

std::uint64_t big_endian(std::string_view bytes) {
  std::uint64_t value = 0;
  for (unsigned char c : bytes) value = (value << 8) | c;
  return value;
}

// The whole frames of `stream` as Python's format defines them; `broken` when the stream
// ends inside a frame or declares a negative length other than -1.
struct Parsed {
  std::vector<std::string_view> frames;
  bool broken = false;
  bool oversized = false;
};
Parsed expected_frames(std::string_view stream) {
  Parsed parsed;
  while (!stream.empty()) {
    if (stream.size() < 4) {
      parsed.broken = true;
      break;
    }
    const auto short_length =
        static_cast<std::int32_t>(static_cast<std::uint32_t>(big_endian(stream.substr(0, 4))));
    stream.remove_prefix(4);
    std::uint64_t length = 0;
    if (short_length >= 0) {
      length = static_cast<std::uint64_t>(short_length);
    } else if (short_length == -1) {
      if (stream.size() < 8) {
        parsed.broken = true;
        break;
      }
      length = big_endian(stream.substr(0, 8));
      stream.remove_prefix(8);
    } else {
      parsed.broken = true;
      break;
    }
    if (length > (std::uint64_t{1} << 40)) {
      parsed.oversized = true;
      break;
    }
    if (!mp_fuzz::take_frame(stream, length, parsed.frames)) {
      parsed.broken = true;
      break;
    }
  }
  return parsed;
}

// A Python-framed connection whose peer wrote `stream` and then shut down its writing;
// the peer's socket stays open (`peer`), so what this side sends is accepted.
mp::Connection connection_over(std::string_view stream, int& peer) {
  const int reader = mp_fuzz::socket_holding(stream, peer);
  ::shutdown(peer, SHUT_WR);
  return mp::Connection(reader, true, true, mp::Framing::python);
}

void read_frames(std::string_view stream) {
  const Parsed parsed = expected_frames(stream);
  int peer = -1;
  mp::Connection connection = connection_over(stream, peer);
  std::size_t index = 0;
  try {
    for (;; ++index) {
      const std::string got = connection.recv_bytes();
      mp_fuzz::check(index < parsed.frames.size(), "no message past the last whole frame");
      mp_fuzz::check(got == parsed.frames[index], "a message is its frame's body");
    }
  } catch (const mp::EOFError&) {
    mp_fuzz::check(index == parsed.frames.size() && !parsed.broken && !parsed.oversized,
                   "EOF only after every whole frame");
  } catch (const std::system_error& e) {
    mp_fuzz::check(index == parsed.frames.size(), "an error only at the first bad frame");
    if (e.code() == std::errc::message_size)
      mp_fuzz::check(parsed.oversized, "EMSGSIZE only for a length over the cap");
    else
      mp_fuzz::check(e.code() == std::errc::protocol_error && parsed.broken,
                     "EPROTO only for a broken frame");
    mp_fuzz::check(connection.closed(), "a failed frame closes the connection");
  }
  ::close(peer);
}

void handshake(bool answer, std::string_view stream) {
  int peer = -1;
  mp::Connection connection = connection_over(stream, peer);
  mp_fuzz::expect_only<mp::AuthenticationError>([&] {
    if (answer)
      mp::answer_challenge(connection, kKey);
    else
      mp::deliver_challenge(connection, kKey);
  });
  ::close(peer);
}

std::string frame(std::string_view body) {
  const auto n = static_cast<std::uint32_t>(body.size());
  std::string out = {static_cast<char>(n >> 24), static_cast<char>(n >> 16),
                     static_cast<char>(n >> 8), static_cast<char>(n)};
  return out.append(body);
}

std::string escaped_frame(std::string_view body) {
  std::string out("\xff\xff\xff\xff", 4);
  for (int shift = 56; shift >= 0; shift -= 8)
    out += static_cast<char>(static_cast<std::uint64_t>(body.size()) >> shift);
  return out.append(body);
}

std::vector<std::string> seeds() {
  const std::string random40(40, '\x5a');
  const std::string challenge = "#CHALLENGE#{sha256}" + random40;
  std::vector<std::string> out = {
      std::string(1, '\0') + frame("hello") + frame("") + frame(std::string(300, 'x')) +
          escaped_frame("long form"),
      std::string(1, '\0') + frame("ok") + std::string("\xff\xff\xff\xfe", 4),  // -2
      std::string(1, '\0') + std::string("\xff\xff\xff\xff\x7f\xff\xff\xff\xff\xff\xff\xff", 12),
      std::string(1, '\1') + frame(challenge) + frame("#WELCOME#"),
      std::string(1, '\1') + frame("#CHALLENGE#" + std::string(20, 'a')) + frame("#FAILURE#"),
      std::string(1, '\1') + frame("#CHALLENGE#{sha3_384}" + random40) + frame("#WELCOME#"),
      std::string(1, '\1') + frame("#CHALLENGE#{bogus}" + random40),
      std::string(1, '\2') + frame("{sha256}" + std::string(32, 'h')),
      std::string(1, '\2') + frame(std::string(16, 'm')),
      std::string(1, '\2') + frame("{md5}" + std::string(16, 'm')),
      std::string(1, '\2') + frame(std::string(300, 'x')),
  };
  return mp_fuzz::with_truncations(out);
}

}  // namespace

MP_FUZZ_SEEDS(seeds);

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  const std::string_view stream(reinterpret_cast<const char*>(data) + 1, size - 1);
  switch (data[0] % 3) {
    case 0:
      read_frames(stream);
      break;
    case 1:
      handshake(true, stream);
      break;
    default:
      handshake(false, stream);
      break;
  }
  return 0;
}
