// Fuzzes the Connection frame parser: the input is what the peer wrote into the socket
// before closing it, read back with recv_bytes / recv_bytes(maxlength) /
// recv_bytes_into / recv<T> until the stream ends. The first input byte picks the
// reader and, for the bounded ones, a size.
//
// Allowed outcomes for bad bytes: mp::EOFError at the end of the stream,
// std::system_error (EPROTO: the stream ends inside a frame; EMSGSIZE: a length over
// maxlength or over the 1 TiB cap), mp::BufferTooShort (a message larger than the
// buffer; the stream stays usable), mp::UnpicklingError (recv<T> of bytes that are not
// a pickle of T). Anything else, a crash, a leak or a huge allocation is a finding.
//
// Property: every message received is exactly the next frame of the input as the
// harness itself parses it (8-byte native length, then that many bytes), and nothing is
// received after a frame the harness finds broken.
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
#include <mp/pickle.hpp>

#include "fuzz_support.hpp"

namespace {

// The whole frames of `stream` in order, as the documented format defines them, and the
// length the first incomplete frame declares (if its 8-byte header is complete).
struct Parsed {
  std::vector<std::string_view> frames;
  std::optional<std::uint64_t> broken_length;
};
Parsed expected_frames(std::string_view stream) {
  Parsed parsed;
  while (stream.size() >= sizeof(std::uint64_t)) {
    std::uint64_t length = 0;
    std::memcpy(&length, stream.data(), sizeof length);
    stream.remove_prefix(sizeof length);
    if (!mp_fuzz::take_frame(stream, length, parsed.frames)) {
      parsed.broken_length = length;
      break;
    }
  }
  return parsed;
}

// A connection whose peer wrote `stream` and closed.
mp::Connection connection_over(std::string_view stream) {
  int writer = -1;
  const int reader = mp_fuzz::socket_holding(stream, writer);
  ::close(writer);
  return mp::Connection(reader);
}

enum class Reader : std::uint8_t { bytes, bytes_bounded, bytes_into, objects, count };

void read_all(Reader reader, std::size_t bound, std::string_view stream) {
  const Parsed parsed = expected_frames(stream);
  const std::vector<std::string_view>& frames = parsed.frames;
  mp::Connection connection = connection_over(stream);
  std::vector<char> buffer(bound);
  std::size_t index = 0;
  try {
    for (;; ++index) {
      std::string got;
      bool whole_message = true;
      switch (reader) {
        case Reader::bytes:
          got = connection.recv_bytes();
          break;
        case Reader::bytes_bounded:
          got = connection.recv_bytes(bound);
          break;
        case Reader::bytes_into:
          try {
            const std::size_t n = connection.recv_bytes_into(
                std::as_writable_bytes(std::span<char>(buffer.data(), buffer.size())));
            got.assign(buffer.data(), n);
          } catch (const mp::BufferTooShort& e) {
            got = e.message();  // consumed whole; the stream goes on
          }
          break;
        case Reader::objects:
          try {
            const auto value = connection.recv<std::vector<std::string>>();
            (void)value;
            whole_message = false;  // only the frame boundary is checked below
          } catch (const mp::UnpicklingError&) {
            whole_message = false;
          }
          break;
        case Reader::count:
          return;
      }
      mp_fuzz::check(index < frames.size(), "no message past the last whole frame");
      if (whole_message) mp_fuzz::check(got == frames[index], "a message is its frame's body");
    }
  } catch (const mp::EOFError&) {
    mp_fuzz::check(index == frames.size(), "EOF only after every whole frame");
  } catch (const std::system_error& e) {
    // A broken frame (EPROTO) or one over maxlength (EMSGSIZE): it is the next one.
    const bool expected_error =
        e.code() == std::errc::protocol_error || e.code() == std::errc::message_size;
    mp_fuzz::check(expected_error, "recv fails only with EPROTO or EMSGSIZE");
    if (e.code() == std::errc::message_size) {
      // The length is checked before the body is read: the frame may be incomplete.
      const std::uint64_t declared =
          index < frames.size() ? frames[index].size() : parsed.broken_length.value_or(0);
      const bool over_maxlength = reader == Reader::bytes_bounded && declared > bound;
      const bool over_cap = declared > (std::uint64_t{1} << 40);
      mp_fuzz::check(index <= frames.size() && (over_maxlength || over_cap),
                     "EMSGSIZE only for a frame that declares more than maxlength or 1 TiB");
    } else
      mp_fuzz::check(index >= frames.size(), "EPROTO only for a broken frame");
    mp_fuzz::check(connection.closed(), "a failed frame closes the connection");
  }
}

std::vector<std::string> seeds() {
  auto frame = [](std::string_view body) {
    const std::uint64_t length = body.size();
    std::string out(reinterpret_cast<const char*>(&length), sizeof length);
    out.append(body);
    return out;
  };
  const std::string pickled =
      mp::pickle::dumps(std::vector<std::string>{"alpha", std::string("b\0c", 3), ""});
  std::vector<std::string> streams = {
      frame("hello") + frame("") + frame(std::string(300, 'x')), frame(pickled) + frame(pickled),
      frame("short") + std::string("\xff\xff\xff\xff\xff\xff\xff\x7f", 8),  // huge length
  };
  std::vector<std::string> out;
  // One selector byte per reader; 16 as the bound of the bounded readers.
  for (std::uint8_t r = 0; r < static_cast<std::uint8_t>(Reader::count); ++r)
    for (const std::string& stream : streams)
      out.push_back(std::string(1, static_cast<char>(r | (16 << 2))) + stream);
  return mp_fuzz::with_truncations(out);
}

}  // namespace

MP_FUZZ_SEEDS(seeds);

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  const auto reader = static_cast<Reader>(data[0] % static_cast<std::uint8_t>(Reader::count));
  const std::size_t bound = data[0] >> 2;  // 0..63 bytes
  read_all(reader, bound, std::string_view(reinterpret_cast<const char*>(data) + 1, size - 1));
  return 0;
}
