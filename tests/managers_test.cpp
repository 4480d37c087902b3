// Tests for <mp/managers.hpp>. Single-process tests check every method against Python's
// dict/list/Namespace behaviour; tests that start processes run once per start method
// (fork, spawn), join every child with a bound, and never sleep to synchronize.
#include <gtest/gtest.h>

#include <signal.h>

#include <bit>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <mutex>
#include <random>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <unordered_map>
#include <utility>
#include <vector>

#include <mp/managers.hpp>
#include <mp/pickle.hpp>
#include <mp/process.hpp>
#include <mp/queues.hpp>
#include <mp/sharedctypes.hpp>
#include <mp/synchronize.hpp>

#include "manager_invariants.hpp"
#include "manager_segment.hpp"
#include "test_util.hpp"

using namespace std::chrono_literals;

namespace {

constexpr auto kJoinLimit = 60s;

// A value whose pickling throws at run time when asked to (Python: an object whose
// __reduce__ raises).
struct Bomb {
  int payload = 0;
  bool explode = false;
  template <class Archive>
  void serialize(Archive& ar) {
    if (explode) throw std::runtime_error("Bomb: refusing to be pickled");
    ar(payload, explode);
  }
  friend bool operator==(const Bomb&, const Bomb&) = default;
};

// ---- single process: the dict --------------------------------------------------------

TEST(ManagerDictTest, SetGetAtAndProxyAssignment) {
  mp::Manager manager;
  auto d = manager.dict<std::string, int>();
  EXPECT_EQ(d.size(), 0u);
  EXPECT_TRUE(d.empty());
  d["one"] = 1;
  d.set("two", 2);
  EXPECT_EQ(d.size(), 2u);
  EXPECT_EQ(d.get("one"), std::optional<int>(1));
  EXPECT_EQ(d.get("three"), std::nullopt);
  EXPECT_EQ(d.get("three", 3), 3);
  EXPECT_EQ(d.at("two"), 2);
  const int read = d["two"];
  EXPECT_EQ(read, 2);
  EXPECT_THROW((void)d.at("three"), std::out_of_range);
  EXPECT_THROW((void)static_cast<int>(d["three"]), std::out_of_range);
  d["one"] = 11;  // overwrite keeps one entry
  EXPECT_EQ(d.size(), 2u);
  EXPECT_EQ(d.at("one"), 11);
  EXPECT_TRUE(d.contains("one"));
  EXPECT_FALSE(d.contains("three"));
}

TEST(ManagerDictTest, EraseClearPopSetdefault) {
  mp::Manager manager;
  auto d = manager.dict<int, std::string>();
  d[1] = "a";
  d[2] = "b";
  d[3] = "c";
  EXPECT_TRUE(d.erase(2));
  EXPECT_FALSE(d.erase(2));
  EXPECT_EQ(d.size(), 2u);
  EXPECT_EQ(d.pop(1), "a");
  EXPECT_THROW((void)d.pop(1), std::out_of_range);
  EXPECT_EQ(d.pop(1, "none"), "none");
  EXPECT_EQ(d.setdefault(3, "zzz"), "c");  // present: unchanged
  EXPECT_EQ(d.setdefault(4, "d"), "d");    // missing: inserted
  EXPECT_EQ(d.at(4), "d");
  EXPECT_EQ(d.setdefault(5), "");
  EXPECT_EQ(d.size(), 3u);
  d.clear();
  EXPECT_EQ(d.size(), 0u);
  EXPECT_FALSE(d.contains(3));
  d[7] = "after clear";
  EXPECT_EQ(d.items(), (std::vector<std::pair<int, std::string>>{{7, "after clear"}}));
}

TEST(ManagerDictTest, KeysValuesItemsKeepInsertionOrder) {
  mp::Manager manager;
  auto d = manager.dict<std::string, int>();
  d["name"] = 1;
  d["role"] = 2;
  d["place"] = 3;
  d["name"] = 10;  // an update keeps its position (as Python's dict)
  d.erase("role");
  d["country"] = 4;
  EXPECT_EQ(d.keys(), (std::vector<std::string>{"name", "place", "country"}));
  EXPECT_EQ(d.values(), (std::vector<int>{10, 3, 4}));
  EXPECT_EQ(d.items(),
            (std::vector<std::pair<std::string, int>>{{"name", 10}, {"place", 3}, {"country", 4}}));
  std::vector<std::pair<std::string, int>> seen;
  for (const auto& [key, value] : d) seen.emplace_back(key, value);
  EXPECT_EQ(seen, d.items());
}

TEST(ManagerDictTest, IterationWalksASnapshot) {
  mp::Manager manager;
  auto d = manager.dict<int, int>();
  for (int i = 0; i < 10; ++i) d[i] = i;
  int visited = 0;
  for (const auto& [key, value] : d) {
    d.erase(key + 1);  // changing the dict does not disturb the loop
    d[100 + key] = value;
    ++visited;
  }
  EXPECT_EQ(visited, 10);
}

TEST(ManagerDictTest, ConvertsToStandardMaps) {
  mp::Manager manager;
  auto d = manager.dict<std::string, double>();
  d["x"] = 1.5;
  d["y"] = -2;
  const auto ordered = static_cast<std::map<std::string, double>>(d);
  EXPECT_EQ(ordered, (std::map<std::string, double>{{"x", 1.5}, {"y", -2}}));
  const std::unordered_map<std::string, double> hashed(d);
  EXPECT_EQ(hashed, (std::unordered_map<std::string, double>{{"x", 1.5}, {"y", -2}}));
}

TEST(ManagerDictTest, UpdateFromMapsAndDicts) {
  mp::Manager manager;
  auto d = manager.dict<int, int>();
  d[1] = 1;
  d.update(std::map<int, int>{{1, 10}, {2, 20}});
  EXPECT_EQ(d.items(), (std::vector<std::pair<int, int>>{{1, 10}, {2, 20}}));
  std::vector<std::pair<int, int>> many;
  for (int i = 0; i < 1000; ++i) many.emplace_back(i, -i);  // the bulk (rebuilding) path
  d.update(many);
  EXPECT_EQ(d.size(), 1000u);
  EXPECT_EQ(d.at(1), -1);
  EXPECT_EQ(d.at(999), -999);
  auto other = manager.dict<int, int>();
  other[5000] = 5;
  other[1] = 7;
  d.update(other);
  EXPECT_EQ(d.size(), 1001u);
  EXPECT_EQ(d.at(1), 7);
  EXPECT_EQ(d.at(5000), 5);
  auto made = manager.dict<int, int>(std::map<int, int>{{3, 4}});
  EXPECT_EQ(made.at(3), 4);
}

TEST(ManagerDictTest, AtomicUpdateWithFunction) {
  mp::Manager manager;
  auto d = manager.dict<std::string, std::vector<int>>();
  EXPECT_EQ(d.update("list", [](std::vector<int>& v) { v.push_back(1); }), std::vector<int>{1});
  d.update("list", [](std::vector<int>& v) { v.push_back(2); });
  EXPECT_EQ(d.at("list"), (std::vector<int>{1, 2}));
  // Values are copies: changing one read does not write it back.
  auto copy = d.at("list");
  copy.push_back(3);
  EXPECT_EQ(d.at("list"), (std::vector<int>{1, 2}));
  // A throwing function changes nothing.
  EXPECT_THROW(d.update("list",
                        [](std::vector<int>& v) {
                          v.clear();
                          throw std::runtime_error("no");
                        }),
               std::runtime_error);
  EXPECT_EQ(d.at("list"), (std::vector<int>{1, 2}));
  EXPECT_THROW(d.update("missing", [](std::vector<int>&) { throw std::runtime_error("no"); }),
               std::runtime_error);
  EXPECT_FALSE(d.contains("missing"));
}

TEST(ManagerDictTest, ManyKeysGrowEraseAndReuseMemory) {
  // 1 MiB: ten rounds of 5000 entries would not fit without reusing erased ones.
  mp::Manager manager({.segment_size = 1 << 20});
  auto d = manager.dict<int, std::string>();
  for (int round = 0; round < 10; ++round) {
    for (int i = 0; i < 5000; ++i) d[i] = "value " + std::to_string(i + round);
    ASSERT_EQ(d.size(), 5000u);
    for (int i = 0; i < 5000; i += 2) ASSERT_TRUE(d.erase(i));
    ASSERT_EQ(d.size(), 2500u);
    for (int i = 1; i < 5000; i += 2) ASSERT_EQ(d.at(i), "value " + std::to_string(i + round));
    d.clear();
  }
}

TEST(ManagerDictTest, ManyKeysKeepInsertionOrder) {
  // Keys of scattered hashes, updates in place, a bulk update and popitem.
  mp::Manager manager;
  auto d = manager.dict<int, int>();
  std::vector<int> order;
  for (int i = 0; i < 2000; ++i) order.push_back((i * 7919) % 2000);
  for (int key : order) d[key] = key;
  for (int i = 0; i < 2000; i += 3) d[order[i]] = -1;  // updates keep their places
  EXPECT_EQ(d.keys(), order);
  std::map<int, int> bulk;
  for (int i = 0; i < 50; ++i) bulk[5000 + i] = i;
  d.update(bulk);
  for (int i = 49; i >= 0; --i) ASSERT_EQ(d.popitem(), std::make_pair(5000 + i, i));
  for (int i = 1999; i >= 1990; --i) ASSERT_EQ(d.popitem().first, order[i]);
  EXPECT_EQ(d.size(), 1990u);
}

// Fills the dict with values of `value_size` bytes until the segment is full; how many fit.
int fill_dict(mp::SharedDict<int, std::string>& d, std::size_t value_size) {
  const std::string value(value_size, 'v');
  int stored = 0;
  try {
    for (;; ++stored) d[stored] = value;
  } catch (const mp::HeapExhausted&) {
  }
  return stored;
}

TEST(ManagerDictTest, LargeValuesAndAFullSegmentOf16MiB) {
  mp::Manager manager({.segment_size = 16 << 20});
  auto large = manager.dict<int, std::string>();
  const std::string big(1'500'000, 'b');
  for (int i = 0; i < 3; ++i) large[i] = big;
  for (int i = 0; i < 3; ++i) ASSERT_EQ(large.at(i), big);
  mp::Manager other({.segment_size = 16 << 20});
  auto d = other.dict<int, std::string>();
  const std::string block(1000, 'v');  // what fill_dict stores
  const int stored = fill_dict(d, block.size());
  EXPECT_GT(stored, 6500);  // most of 16 MiB in 2 KiB blocks
  ASSERT_EQ(d.size(), static_cast<std::size_t>(stored));
  for (int i = 0; i < stored; i += 7) ASSERT_EQ(d.at(i), block);
  auto l = other.list<std::string>();
  EXPECT_THROW(l.append(block), mp::HeapExhausted);
  // Erased entries make room again.
  for (int i = 0; i < stored; ++i) ASSERT_TRUE(d.erase(i));
  const int again = fill_dict(d, block.size());
  EXPECT_GT(again, stored / 4);  // (a table growing again needs new arrays)
}

TEST(ManagerDictTest, KeysCompareByValueAcrossTypesOfKeys) {
  mp::Manager manager;
  auto d = manager.dict<std::pair<int, std::string>, int>();
  d[{1, "a"}] = 1;
  d[{1, "b"}] = 2;
  EXPECT_EQ(d.at({1, "a"}), 1);
  EXPECT_EQ(d.at({1, "b"}), 2);
  EXPECT_FALSE(d.contains({2, "a"}));
}

// ---- single process: list and namespace ---------------------------------------------

TEST(ManagerListTest, EveryMethod) {
  mp::Manager manager;
  auto l = manager.list<std::string>();
  EXPECT_EQ(l.len(), 0u);
  l.append("a");
  l.extend(std::vector<std::string>{"b", "c", "d"});
  EXPECT_EQ(l.size(), 4u);
  EXPECT_EQ(l.get(0), "a");
  EXPECT_EQ(l.get(-1), "d");
  const std::string second = l[1];
  EXPECT_EQ(second, "b");
  l[1] = "B";
  l.set(-2, "C");
  EXPECT_EQ(l.to_vector(), (std::vector<std::string>{"a", "B", "C", "d"}));
  EXPECT_THROW((void)l.get(4), std::out_of_range);
  EXPECT_THROW((void)l.get(-5), std::out_of_range);
  EXPECT_THROW(l.set(4, "x"), std::out_of_range);
  EXPECT_EQ(l.index("C"), 2u);
  EXPECT_THROW((void)l.index("nope"), std::invalid_argument);
  l.insert(0, "first");
  l.insert(2, "middle");
  l.insert(100, "last");  // clamped, as Python
  l.insert(-100, "very first");
  EXPECT_EQ(l.to_vector(), (std::vector<std::string>{"very first", "first", "a", "middle", "B", "C",
                                                     "d", "last"}));
  EXPECT_EQ(l.pop(), "last");
  EXPECT_EQ(l.pop(0), "very first");
  EXPECT_EQ(l.pop(2), "middle");
  l.remove("B");
  EXPECT_THROW(l.remove("B"), std::invalid_argument);
  EXPECT_EQ(l.to_vector(), (std::vector<std::string>{"first", "a", "C", "d"}));
  std::vector<std::string> seen;
  for (const auto& item : l) {
    l.append(item + "!");  // iterating a snapshot: this loop ends
    seen.push_back(item);
  }
  EXPECT_EQ(seen, (std::vector<std::string>{"first", "a", "C", "d"}));
  EXPECT_EQ(l.size(), 8u);
  l.clear();
  EXPECT_TRUE(l.empty());
  EXPECT_THROW((void)l.pop(), std::out_of_range);
  for (int i = 0; i < 1000; ++i) l.append(std::to_string(i));
  EXPECT_EQ(l.get(999), "999");
  auto made = manager.list<int>(std::vector<int>{1, 2, 3});
  EXPECT_EQ(made.to_vector(), (std::vector<int>{1, 2, 3}));
}

TEST(ManagerListTest, CountReverseSort) {
  mp::Manager manager;
  auto l = manager.list<int>(std::vector<int>{3, 1, 2, 3, -5});
  EXPECT_EQ(l.count(3), 2u);
  EXPECT_EQ(l.count(7), 0u);
  l.reverse();
  EXPECT_EQ(l.to_vector(), (std::vector<int>{-5, 3, 2, 1, 3}));
  l.sort();
  EXPECT_EQ(l.to_vector(), (std::vector<int>{-5, 1, 2, 3, 3}));
  l.sort(true);
  EXPECT_EQ(l.to_vector(), (std::vector<int>{3, 3, 2, 1, -5}));
  l.sort([](int x) { return x * x; });
  EXPECT_EQ(l.to_vector(), (std::vector<int>{1, 2, 3, 3, -5}));
  // Stable, also in reverse (equal keys keep their order), as Python's.
  auto words = manager.list<std::string>(std::vector<std::string>{"bb", "a", "cc", "d", "eee"});
  words.sort([](const std::string& w) { return w.size(); }, true);
  EXPECT_EQ(words.to_vector(), (std::vector<std::string>{"eee", "bb", "cc", "a", "d"}));
  // A throwing key leaves the list as it was.
  EXPECT_THROW(words.sort([](const std::string& w) -> int {
    if (w == "d") throw std::runtime_error("bad key");
    return 0;
  }),
               std::runtime_error);
  EXPECT_EQ(words.to_vector(), (std::vector<std::string>{"eee", "bb", "cc", "a", "d"}));
  auto empty = manager.list<int>();
  empty.sort();
  empty.reverse();
  EXPECT_TRUE(empty.empty());
}

TEST(ManagerListTest, SlicesAsPython) {
  mp::Manager manager;
  auto l = manager.list<int>(std::vector<int>{0, 1, 2, 3, 4, 5, 6, 7, 8, 9});
  using V = std::vector<int>;
  EXPECT_EQ(l.get(mp::Slice{2, 5}), (V{2, 3, 4}));
  EXPECT_EQ(l.get(mp::Slice{-3, {}}), (V{7, 8, 9}));
  EXPECT_EQ(l.get(mp::Slice{{}, {}, 3}), (V{0, 3, 6, 9}));
  EXPECT_EQ(l.get(mp::Slice{{}, {}, -1}), (V{9, 8, 7, 6, 5, 4, 3, 2, 1, 0}));
  EXPECT_EQ(l.get(mp::Slice{8, 2, -2}), (V{8, 6, 4}));
  EXPECT_EQ(l.get(mp::Slice{-100, 100}).size(), 10u);
  EXPECT_EQ(l.get(mp::Slice{5, 2}), V{});
  EXPECT_THROW((void)l.get(mp::Slice{{}, {}, 0}), std::invalid_argument);
  // l[2:5] = [20]; shrinks. l[0:0] = [-1, -2]; inserts. l[1::2] = ... must match.
  l.set(mp::Slice{2, 5}, V{20});
  EXPECT_EQ(l.to_vector(), (V{0, 1, 20, 5, 6, 7, 8, 9}));
  l.set(mp::Slice{0, 0}, {-1, -2});
  EXPECT_EQ(l.to_vector(), (V{-1, -2, 0, 1, 20, 5, 6, 7, 8, 9}));
  l.set(mp::Slice{100, {}}, {100});  // past the end: appends
  EXPECT_EQ(l.get(-1), 100);
  l.set(mp::Slice{{}, {}, 5}, {7, 7, 7});
  EXPECT_EQ(l.to_vector(), (V{7, -2, 0, 1, 20, 7, 6, 7, 8, 9, 7}));
  EXPECT_THROW(l.set(mp::Slice{{}, {}, 5}, {1}), std::invalid_argument);
  EXPECT_EQ(l.size(), 11u);  // unchanged by the failed assignment
  l.erase(mp::Slice{{}, {}, 2});
  EXPECT_EQ(l.to_vector(), (V{-2, 1, 7, 7, 9}));
  l.erase(mp::Slice{-2, {}});
  EXPECT_EQ(l.to_vector(), (V{-2, 1, 7}));
  l.erase(mp::Slice{});
  EXPECT_TRUE(l.empty());
}

TEST(ManagerListTest, PlusAndTimesAssign) {
  mp::Manager manager({.segment_size = 1 << 16});
  auto l = manager.list<int>();
  l += std::vector<int>{1, 2};
  (l += {3}) += std::vector<int>{4};
  EXPECT_EQ(l.to_vector(), (std::vector<int>{1, 2, 3, 4}));
  l *= 2;
  EXPECT_EQ(l.to_vector(), (std::vector<int>{1, 2, 3, 4, 1, 2, 3, 4}));
  l *= 1;
  EXPECT_EQ(l.size(), 8u);
  // Too many copies for the segment: HeapExhausted, and the list is unchanged.
  EXPECT_THROW(l *= 1000000, mp::HeapExhausted);
  EXPECT_THROW(l *= INT64_MAX, mp::HeapExhausted);
  EXPECT_EQ(l.size(), 8u);
  l *= 0;
  EXPECT_TRUE(l.empty());
  l.append(5);
  l *= -3;
  EXPECT_TRUE(l.empty());
}

TEST(ManagerDictTest, PopitemFromkeysMerge) {
  using Pair = std::pair<std::string, int>;
  mp::Manager manager;
  auto d = manager.dict<std::string, int>(std::vector<Pair>{{"a", 1}, {"b", 2}, {"c", 3}});
  d.erase("c");
  EXPECT_EQ(d.popitem(), (Pair{"b", 2}));  // the last inserted, as Python's (LIFO)
  d["z"] = 26;
  EXPECT_EQ(d.popitem(), (Pair{"z", 26}));
  EXPECT_EQ(d.popitem(), (Pair{"a", 1}));
  EXPECT_THROW((void)d.popitem(), std::out_of_range);

  auto keys = manager.dict_fromkeys<std::string, int>({"x", "y"}, 7);
  EXPECT_EQ(keys.items(), (std::vector<Pair>{{"x", 7}, {"y", 7}}));
  auto zeros = manager.dict_fromkeys<int, double>(std::vector<int>{3, 1});
  EXPECT_EQ(zeros.get(1), 0.0);
  EXPECT_EQ(zeros.size(), 2u);

  // d | other: a new plain dict; d |= other: update.
  const auto merged = keys | std::map<std::string, int>{{"y", 8}, {"w", 9}};
  EXPECT_EQ(merged, (std::vector<Pair>{{"x", 7}, {"y", 8}, {"w", 9}}));
  EXPECT_EQ(keys.size(), 2u);
  auto other = manager.dict<std::string, int>();
  other["x"] = 0;
  EXPECT_EQ(keys | other, (std::vector<Pair>{{"x", 0}, {"y", 7}}));
  keys |= other;
  keys |= std::vector<Pair>{{"v", 5}};
  EXPECT_EQ(keys.items(), (std::vector<Pair>{{"x", 0}, {"y", 7}, {"v", 5}}));
}

TEST(ManagerValueTest, ValueOfAnyPicklableType) {
  mp::Manager manager;
  auto text = manager.Value("hello");
  static_assert(std::is_same_v<decltype(text), mp::SharedValue<std::string>>);
  EXPECT_EQ(text.get(), "hello");
  text.set("world");
  EXPECT_EQ(text.value(), "world");
  text.set_value(std::string(1000, 'x'));
  EXPECT_EQ(text.get().size(), 1000u);
  auto numbers = manager.Value(std::vector<int>{1, 2});
  EXPECT_EQ(numbers.update([](std::vector<int>& v) { v.push_back(3); }),
            (std::vector<int>{1, 2, 3}));
  EXPECT_EQ(numbers.get(), (std::vector<int>{1, 2, 3}));
  EXPECT_THROW(numbers.update([](std::vector<int>& v) {
    v.clear();
    throw std::runtime_error("no");
  }),
               std::runtime_error);
  EXPECT_EQ(numbers.get().size(), 3u);  // unchanged
  // The types of <mp/sharedctypes.hpp> still give an mp::Value.
  static_assert(std::is_same_v<decltype(manager.Value(1.5)), mp::Value<double>>);
  // A handle pickles as a reference, and checks its type when loaded.
  const auto bytes = mp::pickle::dumps(numbers);
  mp::pickle::loads<mp::SharedValue<std::vector<int>>>(bytes).set({9});
  EXPECT_EQ(numbers.get(), (std::vector<int>{9}));
  EXPECT_THROW((void)mp::pickle::loads<mp::SharedValue<std::string>>(bytes), mp::UnpicklingError);
  EXPECT_THROW((void)mp::pickle::loads<mp::SharedList<std::vector<int>>>(bytes),
               mp::UnpicklingError);
  EXPECT_THROW((void)mp::SharedValue<int>().get(), std::logic_error);
}

TEST(ManagerNamespaceTest, AttributesOfAnyType) {
  mp::Manager manager;
  auto ns = manager.Namespace();
  ns.set("x", 1);
  ns.set("name", std::string("Jones"));
  ns.set("scores", std::vector<double>{1.5, 2.5});
  EXPECT_EQ(ns.get<int>("x"), 1);
  EXPECT_EQ(ns.get<std::string>("name"), "Jones");
  EXPECT_EQ(ns.get<std::vector<double>>("scores"), (std::vector<double>{1.5, 2.5}));
  EXPECT_THROW((void)ns.get<int>("y"), std::out_of_range);  // Python: AttributeError
  EXPECT_EQ(ns.get<int>("y", 5), 5);
  EXPECT_THROW((void)ns.get<std::string>("x"), mp::UnpicklingError);  // another type
  EXPECT_TRUE(ns.contains("x"));
  ns.set("x", std::string("now a string"));
  EXPECT_EQ(ns.get<std::string>("x"), "now a string");
  EXPECT_EQ(ns.names(), (std::vector<std::string>{"x", "name", "scores"}));
  EXPECT_TRUE(ns.erase("x"));
  EXPECT_FALSE(ns.contains("x"));
}

// ---- single process: factories, limits, errors ---------------------------------------

TEST(ManagerTestSingle, SyncManagerFactoriesReturnWorkingObjects) {
  mp::Manager manager;
  auto lock = manager.Lock();
  EXPECT_TRUE(lock.acquire(false));
  EXPECT_FALSE(lock.acquire(false));
  lock.release();
  auto rlock = manager.RLock();
  EXPECT_TRUE(rlock.acquire(false) && rlock.acquire(false));
  rlock.release();
  rlock.release();
  auto semaphore = manager.Semaphore(2);
  EXPECT_EQ(semaphore.get_value(), 2);
  auto bounded = manager.BoundedSemaphore(1);
  EXPECT_THROW(bounded.release(), std::invalid_argument);
  auto condition = manager.Condition();
  {
    std::scoped_lock guard(condition);
    EXPECT_FALSE(condition.wait(1ms));
  }
  auto event = manager.Event();
  event.set();
  EXPECT_TRUE(event.wait(0s));
  auto barrier = manager.Barrier(1);
  EXPECT_EQ(barrier.wait(), 0);
  auto value = manager.Value<int>(7);
  EXPECT_EQ(value.value(), 7);
  auto array = manager.Array<int>({1, 2, 3});
  EXPECT_EQ(array.to_vector(), (std::vector<int>{1, 2, 3}));
  EXPECT_EQ(manager.Array<double>(4).size(), 4u);
  auto queue = manager.Queue<std::string>(2);
  queue.put("a");
  queue.put("b");
  EXPECT_TRUE(queue.full());
  EXPECT_EQ(queue.get(), "a");
  auto joinable = manager.JoinableQueue<int>();
  joinable.put(1);
  EXPECT_EQ(joinable.get(), 1);
  joinable.task_done();
  joinable.join();  // every task done: returns at once
  EXPECT_THROW(joinable.task_done(), std::invalid_argument);
}

TEST(ManagerTestSingle, ObjectsOutliveTheManagerHandle) {
  // As Python's proxies keep their referent alive: the segment stays while any handle
  // to it does.
  auto d = mp::Manager().dict<int, std::string>();
  auto l = mp::Manager({.segment_size = 1 << 16}).list<int>();
  d[1] = "still here";
  l.append(1);
  EXPECT_EQ(d.at(1), "still here");
  EXPECT_EQ(l.to_vector(), std::vector<int>{1});
}

TEST(ManagerTestSingle, SegmentSizeAndBadSizes) {
  mp::Manager manager({.segment_size = 1 << 20});
  EXPECT_EQ(manager.segment_size(), std::size_t{1} << 20);
  EXPECT_THROW(mp::Manager({.segment_size = 1000}), std::invalid_argument);
  EXPECT_THROW((void)(mp::SharedDict<int, int>().size()), std::logic_error);
  EXPECT_THROW((void)mp::SharedList<int>().size(), std::logic_error);
  EXPECT_THROW((void)mp::Namespace().contains("x"), std::logic_error);
}

TEST(ManagerTestSingle, FullSegmentThrowsAndLeavesTheDictIntact) {
  mp::Manager manager({.segment_size = 1 << 16});
  auto d = manager.dict<int, std::string>();
  const std::string big(1000, 'x');
  int stored = 0;
  try {
    for (;; ++stored) d[stored] = big;
  } catch (const mp::HeapExhausted& e) {
    EXPECT_NE(std::string(e.what()).find("mp::Manager segment full"), std::string::npos)
        << e.what();
  }
  ASSERT_GT(stored, 10);
  EXPECT_EQ(d.size(), static_cast<std::size_t>(stored));
  for (int i = 0; i < stored; ++i) ASSERT_EQ(d.at(i), big);
  EXPECT_FALSE(d.contains(stored));
  // A bulk update that does not fit changes nothing at all.
  std::map<int, std::string> more;
  for (int i = 0; i < 100; ++i) more[-i - 1] = big;
  EXPECT_THROW(d.update(more), mp::HeapExhausted);
  EXPECT_EQ(d.size(), static_cast<std::size_t>(stored));
  EXPECT_FALSE(d.contains(-1));
  // Too large for the segment at all.
  EXPECT_THROW(d[0] = std::string(1 << 17, 'y'), std::bad_alloc);
  EXPECT_EQ(d.at(0), big);
  // Erased entries make room again.
  for (int i = 0; i < stored; ++i) d.erase(i);
  for (int i = 0; i < stored; ++i) d[i] = big;
  EXPECT_EQ(d.size(), static_cast<std::size_t>(stored));
  // The list shares the segment and its limit.
  auto l = manager.list<std::string>();
  EXPECT_THROW(l.append(big), mp::HeapExhausted);
  EXPECT_TRUE(l.empty());
}

// How many values of `value_size` bytes a dict in a fresh segment of `segment_size` holds.
int fresh_dict_capacity(std::size_t segment_size, std::size_t value_size) {
  mp::Manager fresh({.segment_size = segment_size});
  auto d = fresh.dict<int, std::string>();
  return fill_dict(d, value_size);
}

TEST(ManagerTestSingle, ErasedSmallEntriesServeLargerOnesAgain) {
  // Freed small blocks merge back into large ones: after erasing small entries, a segment
  // holds as many large ones as a fresh segment would.
  constexpr std::size_t kSegment = 1 << 18;
  mp::Manager manager({.segment_size = kSegment});
  auto d = manager.dict<int, std::string>();
  const int small = fill_dict(d, 1);
  ASSERT_GT(small, 1000);
  for (int i = 0; i < small; ++i) ASSERT_TRUE(d.erase(i));
  const int large = fill_dict(d, 200);
  EXPECT_GE(large, fresh_dict_capacity(kSegment, 200) * 9 / 10);
  for (int i = 0; i < large; i += 7) ASSERT_EQ(d.at(i), std::string(200, 'v'));
  // And back: the large entries' blocks split into small ones.
  d.clear();
  EXPECT_GE(fill_dict(d, 1), small * 9 / 10);
}

TEST(ManagerTestSingle, PoppedListItemsServeOtherSizesAgain) {
  constexpr std::size_t kSegment = 1 << 18;
  const auto fill = [](mp::SharedList<std::string>& l, std::size_t item_size) {
    int stored = 0;
    try {
      for (;; ++stored) l.append(std::string(item_size, 'l'));
    } catch (const mp::HeapExhausted&) {
    }
    return stored;
  };
  mp::Manager fresh({.segment_size = kSegment});
  auto reference = fresh.list<std::string>();
  const int fresh_large = fill(reference, 200);
  mp::Manager manager({.segment_size = kSegment});
  auto l = manager.list<std::string>();
  const int small = fill(l, 1);
  ASSERT_GT(small, 1000);
  while (!l.empty()) l.pop();
  EXPECT_GE(fill(l, 200), fresh_large * 9 / 10);
  l.clear();
  EXPECT_GE(fill(l, 1), small * 9 / 10);
}

TEST(ManagerTestSingle, ClearOnAFullSegmentFreesEverything) {
  mp::Manager manager({.segment_size = 1 << 16});
  auto d = manager.dict<int, std::string>();
  const int stored = fill_dict(d, 1);
  ASSERT_GT(stored, 100);
  // Empty dicts take what is left, down to the smallest blocks.
  std::vector<mp::SharedDict<int, std::string>> others;
  try {
    for (;;) others.push_back(manager.dict<int, std::string>());
  } catch (const mp::HeapExhausted&) {
  }
  EXPECT_NO_THROW(d.clear());
  EXPECT_EQ(d.size(), 0u);
  EXPECT_FALSE(d.contains(0));
  EXPECT_FALSE(d.erase(0));
  EXPECT_TRUE(d.keys().empty());
  EXPECT_THROW((void)d.popitem(), std::out_of_range);
  d[5] = "six";
  EXPECT_EQ(d.at(5), "six");
  EXPECT_EQ(d.size(), 1u);
  for (auto& other : others) other.clear();  // cleared while empty: fine too
  d.clear();
  EXPECT_GE(fill_dict(d, 1), stored * 9 / 10);
  d.clear();
  for (auto& other : others) other[1] = "x";
}

TEST(ManagerTestSingle, ASegmentOfAnotherLayoutIsRefused) {
  using namespace mp::detail;
  const ManagerCore core(1 << 16);
  const DictCore dict(core, ContainerKind::dict, 42);
  EXPECT_NO_THROW(dict.check(ContainerKind::dict, 42));
  std::uint64_t* magic = nullptr;
  {
    ManagerTransaction t(core);
    magic = reinterpret_cast<std::uint64_t*>(t.at(0));
    t.commit();
  }
  const std::uint64_t current = *magic;
  *magic = 0x3167736d706d00;  // the first layout's: no buddy system, a bump pointer
  EXPECT_THROW(dict.check(ContainerKind::dict, 42), mp::UnpicklingError);
  *magic = current;
  EXPECT_NO_THROW(dict.check(ContainerKind::dict, 42));
}

TEST(ManagerTestSingle, ThrowingSerializeReachesCallerAndChangesNothing) {
  mp::Manager manager;
  auto d = manager.dict<int, Bomb>();
  d[1] = Bomb{1, false};
  EXPECT_THROW((d[1] = Bomb{2, true}), std::runtime_error);
  EXPECT_THROW(d.set(2, Bomb{2, true}), std::runtime_error);
  EXPECT_THROW(d.update(std::map<int, Bomb>{{3, Bomb{3, false}}, {4, Bomb{4, true}}}),
               std::runtime_error);
  EXPECT_THROW(d.update(1, [](Bomb& b) { b.explode = true; }), std::runtime_error);
  EXPECT_THROW((void)d.setdefault(5, Bomb{5, true}), std::runtime_error);
  EXPECT_EQ(d.items(), (std::vector<std::pair<int, Bomb>>{{1, Bomb{1, false}}}));
  auto keyed = manager.dict<Bomb, int>();
  EXPECT_THROW((keyed[Bomb{1, true}] = 1), std::runtime_error);
  EXPECT_EQ(keyed.size(), 0u);
  auto l = manager.list<Bomb>();
  EXPECT_THROW(l.append(Bomb{1, true}), std::runtime_error);
  EXPECT_THROW(l.extend(std::vector<Bomb>{Bomb{1, false}, Bomb{2, true}}), std::runtime_error);
  EXPECT_TRUE(l.empty());
  auto ns = manager.Namespace();
  EXPECT_THROW(ns.set("b", Bomb{1, true}), std::runtime_error);
  EXPECT_FALSE(ns.contains("b"));
}

TEST(ManagerTestSingle, HandlesPickleAndCheckTheirTypes) {
  mp::Manager manager;
  auto d = manager.dict<int, std::string>();
  d[1] = "one";
  auto loaded = mp::pickle::loads<mp::SharedDict<int, std::string>>(mp::pickle::dumps(d));
  loaded[2] = "two";
  EXPECT_EQ(d.at(2), "two");
  using WrongDict = mp::SharedDict<int, int>;
  EXPECT_THROW((void)mp::pickle::loads<WrongDict>(mp::pickle::dumps(d)), mp::UnpicklingError);
  auto l = manager.list<int>();
  auto ns = manager.Namespace();
  auto [l2, ns2] = mp::pickle::loads<std::pair<mp::SharedList<int>, mp::Namespace>>(
      mp::pickle::dumps(std::pair(l, ns)));
  l2.append(5);
  ns2.set("k", 1);
  EXPECT_EQ(l.to_vector(), std::vector<int>{5});
  EXPECT_EQ(ns.get<int>("k"), 1);
}

// ---- across processes ----------------------------------------------------------------

void child_uses_everything(mp::SharedDict<std::string, int> d, mp::SharedList<int> l,
                           mp::Namespace ns) {
  if (d.at("from parent") != 1) std::exit(3);
  d["from child"] = 2;
  d.erase("from parent");
  l.append(l.get(0) + 1);
  ns.set("child", std::string("was here"));
  if (ns.get<int>("x") != 10) std::exit(4);
}

void child_uses_new_operations(mp::SharedDict<std::string, int> d, mp::SharedList<int> l,
                               mp::SharedValue<std::string> v) {
  if (v.get() != "parent") std::exit(3);
  v.update([](std::string& s) { s += "+child"; });
  l.sort();
  l.set(mp::Slice{0, 1}, {10, 11});
  l *= 2;
  const auto [key, value] = d.popitem();
  d |= std::map<std::string, int>{{key + "!", value + 1}};
}

// Writes keys writer*100000 + i, and bumps the shared counters atomically.
void concurrent_writer(mp::SharedDict<int, int> d, mp::SharedDict<std::string, long> counters,
                       mp::SharedList<int> l, mp::Barrier start_together, int writer, int count) {
  start_together.wait(30s);
  for (int i = 0; i < count; ++i) {
    d[writer * 100000 + i] = i;
    if (i % 3 == 0) d.erase(writer * 100000 + i);
    counters.update("total", [](long& n) { ++n; });
    if (i % 10 == 0) l.append(writer);
  }
}

// Dies inside update(key, fn): while holding the manager's lock.
void die_inside_update(mp::SharedDict<int, int> d, int key) {
  d.update(key, [](int& value) {
    value = -1;
    ::raise(SIGKILL);
  });
}

// Loops over every kind of operation until killed. Invariants a half-done operation
// would break: values are vectors of equal elements of length (key % 37) + 1; "a" and
// "b" of `pair` are always opposite (they change together, in one update()).
[[noreturn]] void endless_writer(mp::SharedDict<int, std::vector<int>> d,
                                 mp::SharedDict<std::string, long> pair, mp::SharedList<int> l,
                                 mp::RawValue<long> progress) {
  for (long i = 0;; ++i) {
    const int key = static_cast<int>(i % 500);
    d[key] = std::vector<int>(static_cast<std::size_t>(key % 37) + 1, static_cast<int>(i));
    if (i % 7 == 0) d.erase(static_cast<int>((i * 13) % 500));
    if (i % 11 == 0) pair.update(std::map<std::string, long>{{"a", i}, {"b", -i}});
    if (i % 101 == 0) {
      std::map<int, std::vector<int>> bulk;
      for (int k = 0; k < 40; ++k)
        bulk[k * 3] = std::vector<int>(static_cast<std::size_t>(k * 3 % 37) + 1, -1);
      d.update(bulk);
    }
    if (i % 997 == 0) d.clear();
    l.append(static_cast<int>(i));
    if (i % 5 == 0) l.pop(0);
    if (i % 13 == 0 && l.size() > 2) l.insert(1, static_cast<int>(i));
    if (i % 17 == 0) l.reverse();
    if (i % 19 == 0) l.sort();
    if (i % 23 == 0) l.erase(mp::Slice{0, 2});
    if (i % 29 == 0 && l.size() < 100) l *= 2;
    if (i % 31 == 0 && !d.empty()) d.popitem();
    if (l.size() > 300) l.clear();
    progress.set_value(i);
  }
}

class ManagerTest : public mp_test::StartMethodTest<> {};

TEST_P(ManagerTest, ChildReadsAndWritesDictListNamespace) {
  mp::Manager manager;
  auto d = manager.dict<std::string, int>();
  auto l = manager.list<int>();
  auto ns = manager.Namespace();
  d["from parent"] = 1;
  l.append(41);
  ns.set("x", 10);
  auto child = start(&child_uses_everything, d, l, ns);
  join_ok(child);
  EXPECT_EQ(d.items(), (std::vector<std::pair<std::string, int>>{{"from child", 2}}));
  EXPECT_EQ(l.to_vector(), (std::vector<int>{41, 42}));
  EXPECT_EQ(ns.get<std::string>("child"), "was here");
}

TEST_P(ManagerTest, ChildUsesValueSortSlicesPopitem) {
  mp::Manager manager;
  auto d = manager.dict<std::string, int>();
  d["k"] = 1;
  auto l = manager.list<int>(std::vector<int>{3, 2, 1});
  auto v = manager.Value(std::string("parent"));
  auto child = start(&child_uses_new_operations, d, l, v);
  join_ok(child);
  EXPECT_EQ(v.get(), "parent+child");
  EXPECT_EQ(l.to_vector(), (std::vector<int>{10, 11, 2, 3, 10, 11, 2, 3}));
  EXPECT_EQ(d.items(), (std::vector<std::pair<std::string, int>>{{"k!", 2}}));
}

TEST_P(ManagerTest, ConcurrentWritersGiveExactContents) {
  constexpr int kWriters = 4;
  constexpr int kCount = 3000;
  mp::Manager manager;
  auto d = manager.dict<int, int>();
  auto counters = manager.dict<std::string, long>();
  auto l = manager.list<int>();
  mp::Barrier start_together(kWriters);
  std::vector<mp::Process> children;
  for (int w = 0; w < kWriters; ++w)
    children.push_back(start(&concurrent_writer, d, counters, l, start_together, w, kCount));
  for (auto& child : children) join_ok(child);
  std::map<int, int> expected;
  for (int w = 0; w < kWriters; ++w)
    for (int i = 0; i < kCount; ++i)
      if (i % 3 != 0) expected[w * 100000 + i] = i;
  EXPECT_EQ((static_cast<std::map<int, int>>(d)), expected);
  // Each writer's keys in the order it inserted them.
  std::vector<int> last(kWriters, -1);
  for (const int key : d.keys()) {
    ASSERT_GT(key % 100000, last[key / 100000]) << key;
    last[key / 100000] = key % 100000;
  }
  EXPECT_EQ(counters.at("total"), kWriters * kCount);
  EXPECT_EQ(l.size(), static_cast<std::size_t>(kWriters * ((kCount + 9) / 10)));
  for (int w = 0; w < kWriters; ++w) {
    const auto items = l.to_vector();
    EXPECT_EQ(std::count(items.begin(), items.end(), w), (kCount + 9) / 10);
  }
}

TEST_P(ManagerTest, HolderKilledInsideUpdateIsTakenOver) {
  mp::Manager manager;
  auto d = manager.dict<int, int>();
  constexpr int kKeys = 24;
  for (int key = 0; key < kKeys; ++key) d[key] = key;
  for (int key = 0; key < kKeys; ++key) {
    auto child = start(&die_inside_update, d, key);
    ASSERT_TRUE(child.join(kJoinLimit));
    ASSERT_EQ(child.exitcode(), -SIGKILL);
    // The next operation takes the lock over; the update never happened.
    ASSERT_EQ(d.at(key), key);
    d[key] = key + 100;
  }
  EXPECT_EQ(manager.takeovers(), static_cast<std::uint64_t>(kKeys));
  EXPECT_EQ(d.size(), static_cast<std::size_t>(kKeys));
  for (int key = 0; key < kKeys; ++key) EXPECT_EQ(d.at(key), key + 100);
}

// The kill tests kill at random points until one lands inside an operation, at most
// this many times.
constexpr int kMaxKills = 400;

// Waits until a writer's progress reaches `target` (its own loop is the clock: no
// sleeping), then SIGKILLs it there and checks that it died of that.
::testing::AssertionResult kill_at_progress(mp::Process& writer, const mp::RawValue<long>& progress,
                                            long target) {
  const auto limit = std::chrono::steady_clock::now() + 30s;
  while (progress.value() < target && std::chrono::steady_clock::now() < limit) {
  }
  if (progress.value() < target)
    return ::testing::AssertionFailure() << "writer made no progress: " << progress.value();
  writer.kill();
  if (!writer.join(kJoinLimit)) return ::testing::AssertionFailure() << "writer did not end";
  if (writer.exitcode() != -SIGKILL)
    return ::testing::AssertionFailure() << "writer ended with " << writer.exitcode().value_or(0);
  return ::testing::AssertionSuccess();
}

TEST_P(ManagerTest, WriterKilledMidOperationLeavesEverythingConsistent) {
  constexpr int kKills = 30;
  mp::Manager manager({.segment_size = 1 << 24});
  auto d = manager.dict<int, std::vector<int>>();
  auto pair = manager.dict<std::string, long>();
  auto l = manager.list<int>();
  std::mt19937 random(12345);
  // At least kKills, and more until one landed inside an operation (where a kill lands
  // is chance: a slow build, under a sanitizer, spends more time outside the lock).
  int kill = 0;
  for (; kill < kKills || (manager.rolled_back() == 0 && kill < kMaxKills); ++kill) {
    mp::RawValue<long> progress(-1);
    auto writer = start(&endless_writer, d, pair, l, progress);
    // Kill at a random point of the loop, once it runs.
    ASSERT_TRUE(kill_at_progress(writer, progress, static_cast<long>(random() % 3000) + 200));
    // The next operation takes the dead writer's lock over and rolls its operation back.
    const std::string problem = mp_test::check_manager_invariants(d, pair, l);
    ASSERT_EQ(problem, "") << "after kill " << kill;
    // Usable, for reads and writes.
    d[1000 + kill] = std::vector<int>(1, kill);
    ASSERT_EQ(d.at(1000 + kill), std::vector<int>(1, kill));
    ASSERT_TRUE(d.erase(1000 + kill));
    l.append(-1);
    ASSERT_EQ(l.pop(), -1);
  }
  // Some kills landed inside an operation (the lock was held, and some operation had
  // logged changes already): the recovery paths ran.
  std::printf("takeovers %llu, rolled back %llu of %d kills\n",
              static_cast<unsigned long long>(manager.takeovers()),
              static_cast<unsigned long long>(manager.rolled_back()), kill);
  EXPECT_GT(manager.rolled_back(), 0u);
  // The allocator survived too: everything can be freed and the segment filled again.
  d.clear();
  l.clear();
  pair.clear();
  auto fill = manager.dict<int, std::string>();
  const std::string block(1000, 'v');  // what fill_dict stores
  const int stored = fill_dict(fill, block.size());
  EXPECT_GT(stored, 6500);  // most of 16 MiB came back (2 KiB blocks)
  for (int i = 0; i < stored; i += 97) ASSERT_EQ(fill.at(i), block);
}

// Writes values of sizes from 4 bytes to 32 KiB, so that blocks split and merge across
// many size classes, until killed.
[[noreturn]] void endless_resizer(mp::SharedDict<int, std::vector<int>> d,
                                  mp::RawValue<long> progress) {
  for (long i = 0;; ++i) {
    const int key = static_cast<int>((i * 7) % 200);
    const auto length = static_cast<std::size_t>(1) << ((i * 5) % 14);
    d[key] = std::vector<int>(length, static_cast<int>(i));
    if (i % 3 == 0) d.erase(static_cast<int>((i * 11) % 200));
    if (i % 401 == 0) d.clear();
    progress.set_value(i);
  }
}

TEST_P(ManagerTest, HolderKilledWhileSplittingOrMergingLeavesTheAllocatorWhole) {
  constexpr int kKills = 20;
  constexpr std::size_t kSegment = 1 << 22;
  mp::Manager manager({.segment_size = kSegment});
  auto d = manager.dict<int, std::vector<int>>();
  std::mt19937 random(54321);
  // As above: more kills until one landed inside an operation.
  for (int kill = 0; kill < kKills || (manager.takeovers() == 0 && kill < kMaxKills); ++kill) {
    mp::RawValue<long> progress(-1);
    auto writer = start(&endless_resizer, d, progress);
    ASSERT_TRUE(kill_at_progress(writer, progress, static_cast<long>(random() % 2000) + 100));
    for (const auto& [key, value] : d.items()) {
      ASSERT_TRUE(std::has_single_bit(value.size())) << "after kill " << kill;
      for (const int element : value) ASSERT_EQ(element, value[0]) << "after kill " << kill;
    }
  }
  EXPECT_GT(manager.takeovers(), 0u);
  // No block was lost or handed out twice: once emptied, the segment holds as many small
  // entries as a fresh one.
  d.clear();
  auto filled = manager.dict<int, std::string>();
  const int stored = fill_dict(filled, 100);
  EXPECT_GE(stored, fresh_dict_capacity(kSegment, 100) * 9 / 10);
  for (int i = 0; i < stored; i += 13) ASSERT_EQ(filled.at(i), std::string(100, 'v'));
}

INSTANTIATE_TEST_SUITE_P(StartMethods, ManagerTest, ::testing::ValuesIn(mp_test::start_methods()),
                         mp_test::method_name);

}  // namespace
