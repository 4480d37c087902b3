// Tests for <mp/shared_memory.hpp>. Tests that start processes run once per start method
// (fork, spawn). Unrelated processes are separate programs (tests/programs/): one that
// attaches by name, one process tree that ends without unlinking. Children are joined
// with a bound; the end of a process tree is awaited through its watchdog's pid.
#include <gtest/gtest.h>

#include <signal.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <system_error>
#include <vector>

#include <mp/pickle.hpp>
#include <mp/process.hpp>
#include <mp/shared_memory.hpp>
#include <mp/synchronize.hpp>

#include "test_util.hpp"

using namespace std::chrono_literals;

namespace {

constexpr auto kJoinLimit = 60s;

bool segment_exists(const std::string& name) {
  struct stat st {};
  return ::stat(("/dev/shm/" + name).c_str(), &st) == 0;
}

std::string text_at(const mp::SharedMemory& shm, std::size_t length) {
  return std::string(reinterpret_cast<const char*>(shm.buf().data()), length);
}

void put_text(const mp::SharedMemory& shm, const std::string& text) {
  std::memcpy(shm.buf().data(), text.data(), text.size());
}

// How many of the mapping's pages are resident (mincore).
std::size_t resident_pages(const mp::SharedMemory& shm) {
  const std::size_t page = static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
  std::vector<unsigned char> flags((shm.size() + page - 1) / page);
  if (::mincore(shm.buf().data(), shm.size(), flags.data()) != 0) return 0;
  std::size_t resident = 0;
  for (unsigned char flag : flags) resident += flag & 1;
  return resident;
}

// Removes a segment at the end of a test, whatever happened.
struct Unlinker {
  std::string name;
  ~Unlinker() {
    if (!name.empty()) ::shm_unlink(("/" + name).c_str());
  }
};

mp::ShareableBytes bytes_of(const std::string& text) {
  const auto* data = reinterpret_cast<const std::byte*>(text.data());
  return mp::ShareableBytes(data, data + text.size());
}

// ---- SharedMemory in one process and unrelated programs ----

TEST(SharedMemoryTest, DefaultNamesAreRandomAndModeIs0600WhateverTheUmask) {
  const mode_t old_umask = ::umask(0);
  mp::SharedMemory first(mp::create_only, 100);
  ::umask(old_umask);
  mp::SharedMemory second(mp::create_only, 100);
  Unlinker cleanup1{first.name()}, cleanup2{second.name()};
  for (const auto* shm : {&first, &second}) {
    ASSERT_EQ(shm->name().size(), 3u + 16u) << shm->name();
    EXPECT_EQ(shm->name().substr(0, 3), "mp-");
    EXPECT_EQ(shm->name().find_first_not_of("0123456789abcdef", 3), std::string::npos);
    struct stat st {};
    ASSERT_EQ(::stat(("/dev/shm/" + shm->name()).c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 07777, 0600u) << std::oct << st.st_mode;
    EXPECT_EQ(shm->size(), 100u);
    EXPECT_EQ(shm->buf().size(), 100u);
  }
  EXPECT_NE(first.name(), second.name());
  for (std::byte b : first.buf()) ASSERT_EQ(b, std::byte{0});
  first.unlink();
  second.unlink();
  EXPECT_FALSE(segment_exists(first.name()));
}

TEST(SharedMemoryTest, OneWatchdogPerTree) {
  mp::SharedMemory first(mp::create_only, 10);
  const pid_t watchdog = mp::detail::shared_memory_watchdog_pid();
  mp::SharedMemory second(mp::create_only, 10);
  EXPECT_GT(watchdog, 0);
  EXPECT_EQ(mp::detail::shared_memory_watchdog_pid(), watchdog);
  EXPECT_EQ(::kill(watchdog, 0), 0) << "the watchdog is not running";
  first.unlink();
  second.unlink();
}

TEST(SharedMemoryTest, NamedCreateAttachAndErrors) {
  const std::string name = "mp-test-" + std::to_string(::getpid()) + "-named";
  Unlinker cleanup{name};
  mp::SharedMemory created(mp::create_only, "/" + name, 5000);
  EXPECT_EQ(created.name(), name);  // no leading slash, as Python
  put_text(created, "abc");
  try {
    mp::SharedMemory again(mp::create_only, name, 10);
    ADD_FAILURE() << "creating an existing name must fail";
  } catch (const std::system_error& e) {
    EXPECT_EQ(e.code(), std::errc::file_exists);
  }
  mp::SharedMemory attached(mp::open_only, name);
  EXPECT_EQ(attached.size(), 5000u);
  EXPECT_EQ(text_at(attached, 3), "abc");
  try {
    mp::SharedMemory missing(mp::open_only, name + "-missing");
    ADD_FAILURE() << "attaching to a missing name must fail";
  } catch (const std::system_error& e) {
    EXPECT_EQ(e.code(), std::errc::no_such_file_or_directory);
  }
  EXPECT_THROW(mp::SharedMemory(mp::create_only, 0), std::invalid_argument);
  EXPECT_THROW(mp::SharedMemory(mp::create_only, "", 10), std::invalid_argument);
  EXPECT_THROW(mp::SharedMemory(mp::create_only, "a/b", 10), std::invalid_argument);
  EXPECT_THROW(mp::SharedMemory(mp::create_only, std::string(256, 'x'), 10), std::invalid_argument);
  EXPECT_THROW(mp::SharedMemory(mp::open_only, name, {.persist = true}), std::invalid_argument);
  created.unlink();
  EXPECT_FALSE(segment_exists(name));
  try {
    attached.unlink();
    ADD_FAILURE() << "unlinking twice must fail";
  } catch (const std::system_error& e) {
    EXPECT_EQ(e.code(), std::errc::no_such_file_or_directory);
  }
  // The mapping outlives the name.
  EXPECT_EQ(text_at(attached, 3), "abc");
}

TEST(SharedMemoryTest, CloseUnmapsEveryCopyButKeepsTheSegment) {
  mp::SharedMemory shm(mp::create_only, 64);
  Unlinker cleanup{shm.name()};
  mp::SharedMemory copy = shm;
  put_text(copy, "shared");
  EXPECT_EQ(text_at(shm, 6), "shared");
  shm.close();
  shm.close();  // idempotent
  EXPECT_TRUE(copy.buf().empty());
  EXPECT_TRUE(segment_exists(shm.name()));
  mp::SharedMemory again(mp::open_only, shm.name());
  EXPECT_EQ(text_at(again, 6), "shared");
  copy.unlink();  // after close, as Python allows
  EXPECT_FALSE(segment_exists(shm.name()));
}

TEST(SharedMemoryTest, UnrelatedProgramAttachesAndNeverUnlinks) {
  mp::SharedMemory shm(mp::create_only, 8192);
  Unlinker cleanup{shm.name()};
  put_text(shm, "from creator");
  auto result = mp_test::run_command(
      {MP_ATTACH_SHARED_MEMORY_PATH, "segment", shm.name(), "from creator", "FROM ATTACHER"});
  ASSERT_EQ(result.exit_status, 0) << result.err;
  EXPECT_EQ(result.out, "size=8192\n");
  EXPECT_TRUE(segment_exists(shm.name())) << "an attacher that closed and exited removed it";
  EXPECT_EQ(text_at(shm, 13), "FROM ATTACHER");
  mp::SharedMemory reattached(mp::open_only, shm.name());
  EXPECT_EQ(text_at(reattached, 13), "FROM ATTACHER");
  // An unrelated process may unlink, as in Python.
  result = mp_test::run_command(
      {MP_ATTACH_SHARED_MEMORY_PATH, "segment", shm.name(), "FROM ATTACHER", "x", "unlink"});
  ASSERT_EQ(result.exit_status, 0) << result.err;
  EXPECT_FALSE(segment_exists(shm.name()));
}

TEST(SharedMemoryTest, PrefaultMakesEveryPageResidentUpFront) {
  constexpr std::size_t kSize = 8 << 20;
  mp::SharedMemory lazy(mp::create_only, kSize);
  mp::SharedMemory prefaulted(mp::create_only, kSize, {.prefault = true});
  Unlinker cleanup1{lazy.name()}, cleanup2{prefaulted.name()};
  const std::size_t pages = kSize / static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
  EXPECT_EQ(resident_pages(lazy), 0u);
  EXPECT_EQ(resident_pages(prefaulted), pages);
  for (std::size_t i = 0; i < kSize; i += 4096) ASSERT_EQ(prefaulted.buf()[i], std::byte{0});
  // Attaching with prefault populates too, and keeps the contents.
  put_text(lazy, "kept");
  mp::SharedMemory attached(mp::open_only, lazy.name(), {.prefault = true});
  EXPECT_EQ(resident_pages(attached), pages);
  EXPECT_EQ(text_at(attached, 4), "kept");
  lazy.unlink();
  prefaulted.unlink();
}

// What the kernel will do with MADV_HUGEPAGE on /dev/shm (see SharedMemoryOptions).
bool huge_pages_expected() {
  std::ifstream mounts("/proc/self/mounts");
  std::string line;
  std::string huge = "never";
  while (std::getline(mounts, line)) {
    std::istringstream fields(line);
    std::string device, mount_point, type, options;
    fields >> device >> mount_point >> type >> options;
    if (mount_point != "/dev/shm") continue;
    for (const char* value : {"huge=always", "huge=within_size", "huge=advise"})
      if (options.find(value) != std::string::npos) huge = value;
  }
  std::ifstream enabled("/sys/kernel/mm/transparent_hugepage/shmem_enabled");
  std::string policy;
  std::getline(enabled, policy);
  return huge != "never" || policy.find("[force]") != std::string::npos;
}

TEST(SharedMemoryTest, HugePagesFallBackCleanly) {
  constexpr std::size_t kSize = 4 << 20;
  mp::SharedMemory shm(mp::create_only, kSize, {.prefault = true, .huge_pages = true});
  Unlinker cleanup{shm.name()};
  EXPECT_EQ(shm.huge_pages(), huge_pages_expected());
  std::memset(shm.buf().data(), 0x5a, kSize);
  EXPECT_EQ(shm.buf()[kSize - 1], std::byte{0x5a});
  mp::SharedMemory normal(mp::create_only, kSize);
  Unlinker cleanup2{normal.name()};
  EXPECT_FALSE(normal.huge_pages());
  shm.unlink();
  normal.unlink();
}

TEST(SharedMemoryTest, PicklesAsItsName) {
  mp::SharedMemory shm(mp::create_only, 32);
  Unlinker cleanup{shm.name()};
  put_text(shm, "pickled");
  auto loaded = mp::pickle::loads<mp::SharedMemory>(mp::pickle::dumps(shm));
  EXPECT_EQ(loaded.name(), shm.name());
  EXPECT_NE(loaded.buf().data(), shm.buf().data());  // a mapping of its own
  EXPECT_EQ(text_at(loaded, 7), "pickled");
  const std::string pickle = mp::pickle::dumps(shm);
  shm.unlink();
  EXPECT_THROW((void)mp::pickle::loads<mp::SharedMemory>(pickle), std::system_error);
}

// ---- ShareableList in one process ----

TEST(ShareableListTest, HoldsEveryTypeAndAssignsWithinCapacity) {
  mp::ShareableList list(mp::create_only, {std::int64_t{42}, 2.5, true, std::string("howdy"),
                                           bytes_of("raw"), std::monostate{}});
  Unlinker cleanup{list.shm().name()};
  ASSERT_EQ(list.size(), 6u);
  EXPECT_EQ(list[0], mp::ShareableItem(std::int64_t{42}));
  EXPECT_EQ(list[1], mp::ShareableItem(2.5));
  EXPECT_EQ(list[2], mp::ShareableItem(true));
  EXPECT_EQ(list[3], mp::ShareableItem(std::string("howdy")));
  EXPECT_EQ(list[4], mp::ShareableItem(bytes_of("raw")));
  EXPECT_EQ(list[5], mp::ShareableItem(std::monostate{}));
  EXPECT_THROW((void)list.at(6), std::out_of_range);
  // Every slot holds at least 8 bytes: a scalar fits anywhere, the type may change.
  list.set(5, -7);
  EXPECT_EQ(list[5], mp::ShareableItem(std::int64_t{-7}));
  list.set(0, "8 bytes!");
  EXPECT_EQ(list[0], mp::ShareableItem(std::string("8 bytes!")));
  // Too long: std::invalid_argument, slot unchanged.
  EXPECT_EQ(list.capacity(3), 8u);
  EXPECT_THROW(list.set(3, "much too long for the slot"), std::invalid_argument);
  EXPECT_EQ(list[3], mp::ShareableItem(std::string("howdy")));
  list.set(3, "shorter");
  EXPECT_EQ(list[3], mp::ShareableItem(std::string("shorter")));
  EXPECT_THROW(list.set(9, 1), std::out_of_range);
  mp::ShareableList copy = list;  // the same segment
  list.shm().close();
  EXPECT_THROW((void)copy.at(0), std::logic_error);
  EXPECT_THROW(copy.set(0, 1), std::logic_error);
  list.shm().unlink();
}

TEST(ShareableListTest, CapacitiesCountAndIndex) {
  mp::ShareableList list(mp::create_only, {std::string("a"), std::int64_t{1}, std::string("a")},
                         {.capacities = {100}});
  Unlinker cleanup{list.shm().name()};
  EXPECT_EQ(list.capacity(0), 104u);  // rounded up to 8 bytes, as Python
  list.set(0, std::string(100, 'x'));
  EXPECT_EQ(list.count(std::string("a")), 1u);
  EXPECT_EQ(list.count(std::int64_t{1}), 1u);
  EXPECT_EQ(list.count(std::string(100, 'x')), 1u);
  EXPECT_EQ(list.index(std::string("a")), 2u);
  EXPECT_THROW((void)list.index(std::string("zzz")), std::invalid_argument);
  EXPECT_EQ(list.count(true), 0u);  // a bool is not the int 1 here
  list.shm().unlink();
}

TEST(ShareableListTest, NegativeIndicesCountFromTheEnd) {
  mp::ShareableList list(mp::create_only, {std::int64_t{1}, std::string("two"), 3.0});
  Unlinker cleanup{list.shm().name()};
  EXPECT_EQ(list[-1], mp::ShareableItem(3.0));
  EXPECT_EQ(list.at(-3), mp::ShareableItem(std::int64_t{1}));
  list.set(-2, "deux");
  EXPECT_EQ(list[1], mp::ShareableItem(std::string("deux")));
  EXPECT_EQ(list.capacity(-2), list.capacity(1));
  EXPECT_THROW((void)list.at(-4), std::out_of_range);
  EXPECT_THROW(list.set(-4, 1), std::out_of_range);
  EXPECT_THROW((void)list.at(INT64_MIN), std::out_of_range);
  EXPECT_THROW((void)list.at(3), std::out_of_range);
  list.shm().unlink();
}

TEST(ShareableListTest, FormatAsPythonsStructCodes) {
  // Python: ShareableList([42, 2.5, True, "howdy", b"raw", None]).format
  //   == 'qdxxxxxxx?8s8sxxxxxx?x'
  mp::ShareableList list(mp::create_only, {std::int64_t{42}, 2.5, true, std::string("howdy"),
                                           bytes_of("raw"), std::monostate{}});
  Unlinker cleanup{list.shm().name()};
  EXPECT_EQ(list.format(), "qdxxxxxxx?8s8sxxxxxx?x");
  list.set(0, "str now");  // the format follows the current values
  list.set(3, std::int64_t{1});
  EXPECT_EQ(list.format(), "8sdxxxxxxx?q8sxxxxxx?x");
  EXPECT_EQ(mp::ShareableList().format(), "");
  list.shm().unlink();
}

TEST(ShareableListTest, KeepsTrailingNulBytes) {
  // gh-96779 / gh-106939: Python strips trailing NULs from str and bytes.
  const std::string text("nul\0\0", 5);
  const std::string raw("\0ab\0\0\0", 6);
  mp::ShareableList list(mp::create_only, {text, bytes_of(raw), std::string("x")});
  Unlinker cleanup{list.shm().name()};
  EXPECT_EQ(std::get<std::string>(list[0]), text);
  EXPECT_EQ(std::get<mp::ShareableBytes>(list[1]), bytes_of(raw));
  list.set(2, std::string("z\0", 2));
  EXPECT_EQ(std::get<std::string>(list[2]).size(), 2u);
  mp::ShareableList attached(mp::open_only, list.shm().name());
  EXPECT_EQ(std::get<std::string>(attached[0]), text);
  EXPECT_EQ(std::get<mp::ShareableBytes>(attached[1]), bytes_of(raw));
  list.shm().unlink();
}

TEST(ShareableListTest, KeepsMultibyteUtf8Intact) {
  // gh-145261: Python sizes a str slot in characters, not UTF-8 bytes.
  const std::string text =
      "h\xC3\xA9llo w\xC3\xB6rld \xE2\x82\xAC \xF0\x9F\x98\x80";  // 4 multibyte
  mp::ShareableList list(mp::create_only, {text, std::string("\xC3\xA9\xC3\xA9\xC3\xA9\xC3\xA9")});
  Unlinker cleanup{list.shm().name()};
  EXPECT_EQ(std::get<std::string>(list[0]), text);
  EXPECT_GE(list.capacity(0), text.size());
  // 8 bytes = 4 characters of 2 bytes; 5 such characters (10 bytes) do not fit.
  EXPECT_THROW(list.set(1, "\xC3\xA9\xC3\xA9\xC3\xA9\xC3\xA9\xC3\xA9"), std::invalid_argument);
  EXPECT_EQ(std::get<std::string>(list[1]), "\xC3\xA9\xC3\xA9\xC3\xA9\xC3\xA9");
  list.set(1, "\xE2\x82\xAC\xE2\x82\xAC");  // 6 bytes
  EXPECT_EQ(std::get<std::string>(list[1]), "\xE2\x82\xAC\xE2\x82\xAC");
  list.shm().unlink();
}

// Another process may scribble over the segment at any time: a slot's layout (its offset
// and capacity) is checked on every access, not only when the list is opened.
TEST(ShareableListTest, CorruptSlotLayoutThrowsOnEveryAccess) {
  mp::ShareableList list(mp::create_only,
                         {std::string("first"), std::string("second slot"), std::int64_t{3}});
  Unlinker cleanup{list.shm().name()};
  mp::SharedMemory raw(mp::open_only, list.shm().name());  // a second mapping
  const std::uint64_t size = raw.size();
  // The layout of lib/src/shared_memory.cpp: a 64-byte header, then 32 bytes per slot:
  // descriptor (length in the low 40 bits), capacity, offset of the data.
  std::byte* slot1 = raw.buf().data() + 64 + 32;
  auto field = [&](std::size_t at) {
    std::uint64_t value;
    std::memcpy(&value, slot1 + at, sizeof value);
    return value;
  };
  auto put = [&](std::size_t at, std::uint64_t value) {
    std::memcpy(slot1 + at, &value, sizeof value);
  };
  const std::uint64_t descriptor = field(0), capacity = field(8), offset = field(16);
  const std::uint64_t length_mask = (std::uint64_t{1} << 40) - 1;
  struct Corruption {
    const char* what;
    std::uint64_t descriptor, capacity, offset;
  };
  const Corruption corruptions[] = {
      {"huge offset", descriptor, capacity, std::uint64_t{1} << 62},
      {"offset at the end", descriptor, capacity, size},
      {"data running past the end", descriptor, capacity, size - capacity},
      {"offset past the end", descriptor, capacity, size + 4096},
      {"negative offset", descriptor, capacity, ~std::uint64_t{0} - 7},
      {"offset inside the header", descriptor, capacity, 8},
      {"length and capacity overflowing", descriptor | length_mask, length_mask, offset},
      {"capacity beyond any length", descriptor, ~std::uint64_t{0} / 2, offset},
      {"capacity past the end", descriptor, size, offset},
  };
  for (const Corruption& corruption : corruptions) {
    SCOPED_TRACE(corruption.what);
    put(0, corruption.descriptor);
    put(8, corruption.capacity);
    put(16, corruption.offset);
    try {
      (void)list.at(1);
      ADD_FAILURE() << "read a corrupt slot";
    } catch (const std::invalid_argument& e) {
      EXPECT_NE(std::string(e.what()).find("corrupt"), std::string::npos) << e.what();
    }
    EXPECT_THROW(list.set(1, "x"), std::invalid_argument);
    EXPECT_THROW((void)list.to_vector(), std::invalid_argument);
    // The other slots are untouched.
    EXPECT_EQ(list[0], mp::ShareableItem(std::string("first")));
    EXPECT_EQ(list[2], mp::ShareableItem(std::int64_t{3}));
  }
  put(0, descriptor);
  put(8, capacity);
  put(16, offset);
  EXPECT_EQ(list[1], mp::ShareableItem(std::string("second slot")));
  list.set(1, "restored");
  EXPECT_EQ(list[1], mp::ShareableItem(std::string("restored")));
  list.shm().unlink();
}

TEST(ShareableListTest, UnrelatedProgramAttachesByName) {
  mp::ShareableList list(mp::create_only, {std::string("first slot, long enough"), std::int64_t{5},
                                           1.5, false, bytes_of("abc"), std::monostate{}});
  Unlinker cleanup{list.shm().name()};
  auto result = mp_test::run_command({MP_ATTACH_SHARED_MEMORY_PATH, "list", list.shm().name()});
  ASSERT_EQ(result.exit_status, 0) << result.err;
  EXPECT_EQ(result.out, "str first slot, long enough\nint 5\nfloat 1.5\nbool 0\nbytes 3\nnone\n");
  EXPECT_EQ(list[0], mp::ShareableItem(std::string("from attacher")));
  EXPECT_TRUE(segment_exists(list.shm().name()));
  // Not a list: refused.
  mp::SharedMemory other(mp::create_only, 4096);
  Unlinker cleanup2{other.name()};
  EXPECT_THROW(mp::ShareableList(mp::open_only, other.name()), std::invalid_argument);
  other.unlink();
  list.shm().unlink();
}

// ---- Per start method ----

void write_through_handle(mp::SharedMemory shm, std::string text) {
  std::memcpy(shm.buf().data(), text.data(), text.size());
  shm.close();
}

void attach_and_write(std::string name, std::string text) {
  mp::SharedMemory shm(mp::open_only, name);
  std::memcpy(shm.buf().data(), text.data(), text.size());
}  // closes; must not unlink

void create_and_report(std::string path) {
  mp::SharedMemory shm(mp::create_only, 128);
  std::memcpy(shm.buf().data(), "child made", 10);
  mp_test::write_file(path, shm.name());
}  // exits without unlinking: the segment belongs to the tree until it ends

void use_list(mp::ShareableList list) {
  if (list[0] != mp::ShareableItem(std::string("parent"))) std::exit(3);
  list.set(0, "child");
  list.set(1, std::int64_t{99});
}

// Assigns forever, alternating two values per slot, until killed; `started` is set once
// a thousand rounds are done (so that the kill lands amid assignments).
[[noreturn]] void assign_forever(mp::ShareableList list, mp::Event started) {
  for (std::int64_t round = 0;; ++round) {
    if (round == 1000) started.set();
    for (std::size_t i = 0; i < list.size(); ++i)
      list.set(i, round % 2 ? mp::ShareableItem(std::string(60, static_cast<char>('a' + i)))
                            : mp::ShareableItem(round));
  }
}

class SharedMemoryProcessTest : public ::testing::TestWithParam<std::string> {
 protected:
  template <class F, class... Args>
  mp::Process start(F f, Args... args) {
    mp::Process p({.start_method = GetParam()}, f, args...);
    p.start();
    return p;
  }
  static void join_ok(mp::Process& p) {
    ASSERT_TRUE(p.join(kJoinLimit)) << p.repr() << " did not end within the limit";
    EXPECT_EQ(p.exitcode(), 0) << p.repr();
  }
};

TEST_P(SharedMemoryProcessTest, HandlePassedToChild) {
  mp::SharedMemory shm(mp::create_only, 4096);
  Unlinker cleanup{shm.name()};
  auto child = start(&write_through_handle, shm, std::string("via handle"));
  join_ok(child);
  EXPECT_EQ(text_at(shm, 10), "via handle");
  EXPECT_TRUE(segment_exists(shm.name()));
  shm.unlink();
}

TEST_P(SharedMemoryProcessTest, ChildAttachingByNameNeverUnlinks) {
  mp::SharedMemory shm(mp::create_only, 4096);
  Unlinker cleanup{shm.name()};
  for (int i = 0; i < 2; ++i) {
    auto child = start(&attach_and_write, shm.name(), std::string("by name ") + char('0' + i));
    join_ok(child);
    EXPECT_TRUE(segment_exists(shm.name())) << "an attaching child removed the segment";
  }
  EXPECT_EQ(text_at(shm, 9), "by name 1");
  shm.unlink();
}

TEST_P(SharedMemoryProcessTest, SegmentOfAnEndedChildStaysWhileTheTreeLives) {
  mp_test::TempDir dir;
  auto child = start(&create_and_report, dir.file("name"));
  join_ok(child);
  auto name = mp_test::read_file(dir.file("name"));
  ASSERT_TRUE(name);
  Unlinker cleanup{*name};
  ASSERT_TRUE(segment_exists(*name));
  mp::SharedMemory shm(mp::open_only, *name);
  EXPECT_EQ(text_at(shm, 10), "child made");
  shm.unlink();  // the parent decides; the watchdog then forgets it
}

TEST_P(SharedMemoryProcessTest, ShareableListPassedToChild) {
  mp::ShareableList list(mp::create_only, {std::string("parent"), std::int64_t{0}});
  Unlinker cleanup{list.shm().name()};
  auto child = start(&use_list, list);
  join_ok(child);
  EXPECT_EQ(list[0], mp::ShareableItem(std::string("child")));
  EXPECT_EQ(list[1], mp::ShareableItem(std::int64_t{99}));
  list.shm().unlink();
}

TEST_P(SharedMemoryProcessTest, AssignmentKilledHalfWayLeavesWholeValues) {
  std::vector<mp::ShareableItem> initial(8, mp::ShareableItem(std::int64_t{-1}));
  mp::ShareableList list(mp::create_only, initial, {.capacities = std::vector<std::size_t>(8, 64)});
  Unlinker cleanup{list.shm().name()};
  for (int round = 0; round < 5; ++round) {
    mp::Event started;
    auto child = start(&assign_forever, list, started);
    ASSERT_TRUE(started.wait(30s));
    child.kill();
    ASSERT_TRUE(child.join(kJoinLimit));
    for (std::size_t i = 0; i < list.size(); ++i) {
      const auto item = list[i];
      if (const auto* text = std::get_if<std::string>(&item)) {
        EXPECT_EQ(*text, std::string(60, static_cast<char>('a' + i))) << "slot " << i;
      } else {
        EXPECT_TRUE(std::holds_alternative<std::int64_t>(item)) << "slot " << i;
      }
    }
    // The lock a killed writer may have held is taken over.
    list.set(0, std::int64_t{round});
    EXPECT_EQ(list[0], mp::ShareableItem(std::int64_t{round}));
  }
  list.shm().unlink();
}

struct TreeOutcome {
  std::string name, persistent;
  pid_t watchdog = 0;
};

TreeOutcome run_tree(const std::string& method, const std::string& child_end,
                     const std::string& parent_end) {
  auto result = mp_test::run_command({MP_SHARED_MEMORY_TREE_PATH, method, child_end, parent_end});
  EXPECT_EQ(result.exit_status, parent_end == "kill" ? -SIGKILL : 0) << result.err;
  TreeOutcome outcome;
  std::istringstream fields(result.out);
  int watchdog = 0;
  fields >> outcome.name >> outcome.persistent >> watchdog;
  outcome.watchdog = watchdog;
  return outcome;
}

void expect_tree_cleanup(const std::string& method, const std::string& child_end,
                         const std::string& parent_end) {
  const TreeOutcome tree = run_tree(method, child_end, parent_end);
  ASSERT_FALSE(tree.name.empty());
  ASSERT_GT(tree.watchdog, 0);
  Unlinker cleanup1{tree.name}, cleanup2{tree.persistent};
  ASSERT_TRUE(mp_test::wait_gone(tree.watchdog, 30s)) << "the watchdog did not end";
  EXPECT_FALSE(segment_exists(tree.name)) << "left behind by an ended tree";
  ASSERT_TRUE(segment_exists(tree.persistent)) << "persist = true did not persist";
  // An unrelated program attaches to the persistent one; the test unlinks it.
  auto result = mp_test::run_command(
      {MP_ATTACH_SHARED_MEMORY_PATH, "segment", tree.persistent, "tree data", "checked"});
  EXPECT_EQ(result.exit_status, 0) << result.err;
  mp::SharedMemory persistent(mp::open_only, tree.persistent);
  EXPECT_EQ(text_at(persistent, 7), "checked");
  persistent.unlink();
}

TEST_P(SharedMemoryProcessTest, TreeEndRemovesOnlyTheSegmentsTheTreeCreated) {
  const std::string name = "mp-test-" + std::to_string(::getpid()) + "-" + GetParam();
  Unlinker cleanup1{name}, cleanup2{name + "-gone"};
  auto result =
      mp_test::run_command({MP_SHARED_MEMORY_TREE_PATH, GetParam(), "kill", "exit", name});
  ASSERT_EQ(result.exit_status, 0) << result.err;
  std::istringstream fields(result.out);
  std::string lasting, persistent;
  int watchdog = 0;
  fields >> lasting >> persistent >> watchdog;
  Unlinker cleanup3{lasting}, cleanup4{persistent};
  ASSERT_GT(watchdog, 0) << result.out;
  ASSERT_TRUE(mp_test::wait_gone(watchdog, 30s)) << "the watchdog did not end";
  EXPECT_FALSE(segment_exists(name + "-gone")) << "a named segment outlived its tree";
  ASSERT_TRUE(segment_exists(name)) << "the watchdog removed a segment the tree did not create";
  mp::SharedMemory renewed(mp::open_only, name);
  EXPECT_EQ(text_at(renewed, 8), "replaced");
  renewed.unlink();
}

TEST_P(SharedMemoryProcessTest, TreeEndRemovesSegmentOfKilledCreator) {
  expect_tree_cleanup(GetParam(), "kill", "exit");
}

TEST_P(SharedMemoryProcessTest, TreeEndRemovesSegmentOfCreatorThatExited) {
  expect_tree_cleanup(GetParam(), "exit", "exit");
}

TEST_P(SharedMemoryProcessTest, TreeEndRemovesSegmentWhenWholeTreeIsKilled) {
  expect_tree_cleanup(GetParam(), "kill", "kill");
}

INSTANTIATE_TEST_SUITE_P(StartMethods, SharedMemoryProcessTest,
                         ::testing::ValuesIn(mp_test::start_methods()), mp_test::method_name);

}  // namespace
