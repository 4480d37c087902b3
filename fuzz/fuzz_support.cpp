// The parts of every fuzz target that are not about what it fuzzes: seed writing
// (-mp_write_seeds=DIR) through libFuzzer's LLVMFuzzerInitialize hook.
#include "fuzz_support.hpp"

#include <sys/socket.h>
#include <unistd.h>

#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string_view>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size);

namespace mp_fuzz {
namespace {

SeedFunction registered_seeds = nullptr;

// Seed file names: a hash of the content, so that rewriting the corpus with unchanged
// seeds changes no file (libFuzzer names its own finds by SHA-1; any name works).
std::string content_name(std::string_view bytes) {
  std::uint64_t hash = 14695981039346656037ull;  // 64-bit FNV-1a
  for (char c : bytes) {
    hash ^= static_cast<unsigned char>(c);
    hash *= 1099511628211ull;
  }
  char name[32];
  std::snprintf(name, sizeof name, "seed-%016llx", static_cast<unsigned long long>(hash));
  return name;
}

int write_seeds(const std::filesystem::path& dir) {
  if (registered_seeds == nullptr) {
    std::fprintf(stderr, "mp_fuzz: this target registers no seeds (MP_FUZZ_SEEDS)\n");
    return 1;
  }
  std::filesystem::create_directories(dir);
  const std::vector<std::string> seeds = registered_seeds();
  for (const std::string& seed : seeds) {
    // A seed that crashes the target is a bug in the target or in mp: find it here.
    LLVMFuzzerTestOneInput(reinterpret_cast<const std::uint8_t*>(seed.data()), seed.size());
    std::ofstream out(dir / content_name(seed), std::ios::binary | std::ios::trunc);
    out.write(seed.data(), static_cast<std::streamsize>(seed.size()));
    if (!out) {
      std::fprintf(stderr, "mp_fuzz: cannot write into %s\n", dir.c_str());
      return 1;
    }
  }
  std::printf("mp_fuzz: wrote %zu seeds into %s\n", seeds.size(), dir.c_str());
  return 0;
}

}  // namespace

SeedRegistration::SeedRegistration(SeedFunction seeds) { registered_seeds = seeds; }

std::vector<std::string> with_truncations(const std::vector<std::string>& seeds) {
  std::vector<std::string> out;
  for (const std::string& seed : seeds) {
    out.push_back(seed);
    for (std::size_t cut : {std::size_t{0}, std::size_t{1}, seed.size() / 2, seed.size() - 1})
      if (cut < seed.size()) out.push_back(seed.substr(0, cut));
  }
  return out;
}

int socket_holding(std::string_view stream, int& writer) {
  int fds[2];
  check(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) == 0, "socketpair");
  std::size_t written = 0;
  while (written < stream.size()) {
    const ssize_t n = ::write(fds[1], stream.data() + written, stream.size() - written);
    check(n > 0, "the whole input fits in the socket buffer");
    written += static_cast<std::size_t>(n);
  }
  writer = fds[1];
  return fds[0];
}

}  // namespace mp_fuzz

// libFuzzer calls this before it parses its own flags.
extern "C" int LLVMFuzzerInitialize(int* argc, char*** argv) {
  constexpr std::string_view kFlag = "-mp_write_seeds=";
  for (int i = 1; i < *argc; ++i) {
    const std::string_view arg = (*argv)[i];
    if (arg.substr(0, kFlag.size()) == kFlag)
      std::exit(mp_fuzz::write_seeds(arg.substr(kFlag.size())));
  }
  return 0;
}
