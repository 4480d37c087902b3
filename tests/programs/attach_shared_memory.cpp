// attach_shared_memory segment NAME EXPECT WRITE [unlink]
// attach_shared_memory list NAME
// A program unrelated to the test's process tree that attaches to a segment by name,
// as a second Python program does with SharedMemory(name=...) / ShareableList(name=...).
//   segment: checks that the segment starts with EXPECT (exit 3 if not), writes WRITE at
//            its start, prints "size=<size>", closes; with "unlink", unlinks it first.
//   list:    prints the list's items, one per line ("int 5", "str <text>", "bytes <n>",
//            "float <x>", "bool 1", "none"), then sets slot 0 to "from attacher".
// Either way it then exits normally: attaching must never remove the segment.
#include <cstdio>
#include <cstring>
#include <exception>
#include <string>

#include <mp/mp.hpp>

namespace {

void print_item(const mp::ShareableItem& item) {
  if (std::holds_alternative<std::monostate>(item)) std::printf("none\n");
  if (auto* i = std::get_if<std::int64_t>(&item))
    std::printf("int %lld\n", static_cast<long long>(*i));
  if (auto* d = std::get_if<double>(&item)) std::printf("float %g\n", *d);
  if (auto* b = std::get_if<bool>(&item)) std::printf("bool %d\n", *b ? 1 : 0);
  if (auto* s = std::get_if<std::string>(&item)) std::printf("str %s\n", s->c_str());
  if (auto* b = std::get_if<mp::ShareableBytes>(&item)) std::printf("bytes %zu\n", b->size());
}

}  // namespace

int main(int argc, char** argv) try {
  mp::freeze_support(argc, argv);
  const std::string mode = argc > 1 ? argv[1] : "";
  if (mode == "segment" && (argc == 5 || argc == 6)) {
    mp::SharedMemory shm(mp::open_only, argv[2]);
    const std::string expect = argv[3], write = argv[4];
    auto buf = shm.buf();
    if (buf.size() < expect.size() || buf.size() < write.size()) return 4;
    if (std::memcmp(buf.data(), expect.data(), expect.size()) != 0) return 3;
    std::memcpy(buf.data(), write.data(), write.size());
    std::printf("size=%zu\n", shm.size());
    if (argc == 6 && std::string(argv[5]) == "unlink") shm.unlink();
    shm.close();
    return 0;
  }
  if (mode == "list" && argc == 3) {
    mp::ShareableList list(mp::open_only, argv[2]);
    for (const auto& item : list.to_vector()) print_item(item);
    list.set(0, "from attacher");
    return 0;
  }
  std::fprintf(stderr,
               "usage: attach_shared_memory segment NAME EXPECT WRITE [unlink] | list NAME\n");
  return 2;
} catch (const std::exception& e) {
  std::fprintf(stderr, "attach_shared_memory: %s\n", e.what());
  return 1;
}
