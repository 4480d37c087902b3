// Shared by mp's libFuzzer targets (fuzz/<name>_fuzzer.cpp). A target file defines
// LLVMFuzzerTestOneInput and registers its seeds with MP_FUZZ_SEEDS; fuzz_support.cpp
// adds the rest:
//   <name>_fuzzer -mp_write_seeds=DIR   writes the registered seeds into DIR, checks that
//                                       each one runs cleanly, and exits (this is how
//                                       fuzz/corpus/<name>/ is generated; see README.md)
//   <name>_fuzzer [libFuzzer flags] CORPUS...   fuzzes, as any libFuzzer binary
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <string>
#include <string_view>
#include <typeinfo>
#include <vector>

namespace mp_fuzz {

// Returns the inputs a target starts from: valid encodings of sample values, usually
// passed through with_truncations().
using SeedFunction = std::vector<std::string> (*)();

struct SeedRegistration {
  explicit SeedRegistration(SeedFunction seeds);
};

// Each seed, then for each also its prefixes cut at a few places (the empty input, one
// byte, half, all but one byte): the shapes of a short read.
std::vector<std::string> with_truncations(const std::vector<std::string>& seeds);

// Runs `body`. An exception of type Expected is the documented outcome for bad bytes;
// any other exception is a finding: it is reported and the process aborts, so that
// libFuzzer saves the input (an uncaught exception would abort too, with less said).
template <class Expected, class Body>
void expect_only(Body&& body) {
  try {
    body();
  } catch (const Expected&) {
  } catch (const std::exception& e) {
    std::fprintf(stderr, "mp_fuzz: unexpected exception %s: %s\n", typeid(e).name(), e.what());
    std::abort();
  } catch (...) {
    std::fprintf(stderr, "mp_fuzz: unexpected exception of a non-standard type\n");
    std::abort();
  }
}

// For the frame parsers that state what a stream must hold: takes a body of `length`
// bytes off the front of `stream` into `frames`, or returns false (taking nothing) when
// fewer bytes are left.
inline bool take_frame(std::string_view& stream, std::uint64_t length,
                       std::vector<std::string_view>& frames) {
  if (length > stream.size()) return false;
  frames.push_back(stream.substr(0, length));
  stream.remove_prefix(length);
  return true;
}

// A property the target checks on an input that was accepted; a failure aborts (a
// finding, saved by libFuzzer).
inline void check(bool condition, const char* what) {
  if (!condition) {
    std::fprintf(stderr, "mp_fuzz: property violated: %s\n", what);
    std::abort();
  }
}

// A connected pair of Unix stream sockets (close-on-exec) with all of `stream` written
// into `writer`, waiting to be read at the returned end. libFuzzer's inputs (4 KiB by
// default, -max_len bounds them) fit in a socket buffer, so the write never blocks; a
// failure aborts.
int socket_holding(std::string_view stream, int& writer);

// An input's first byte picks one of `targets` (modulo their count); the target gets the
// rest of the input. The empty input runs none.
template <class Targets>
void run_selected(const Targets& targets, const std::uint8_t* data, std::size_t size) {
  if (size == 0) return;
  const std::string_view bytes(reinterpret_cast<const char*>(data) + 1, size - 1);
  targets[data[0] % targets.size()](bytes);
}

}  // namespace mp_fuzz

#define MP_FUZZ_CONCAT_INNER(a, b) a##b
#define MP_FUZZ_CONCAT(a, b) MP_FUZZ_CONCAT_INNER(a, b)
// MP_FUZZ_SEEDS(function): registers the seed generator of this target (one per target).
#define MP_FUZZ_SEEDS(function) \
  static const ::mp_fuzz::SeedRegistration MP_FUZZ_CONCAT(mp_fuzz_seeds_, __LINE__)(function)
