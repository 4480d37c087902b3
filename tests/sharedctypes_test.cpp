// Tests for <mp/sharedctypes.hpp>. Tests that start processes run once per start method
// (fork, spawn). Children get handles as Process arguments or inside pickles written to
// files, report through exit codes and the shared objects themselves, and are joined with
// a bound. Nothing sleeps to synchronize: readiness travels through Events with timeouts.
#include <gtest/gtest.h>

#include <chrono>
#include <cstdlib>
#include <mutex>
#include <numeric>
#include <span>
#include <stdexcept>
#include <string>
#include <tuple>
#include <type_traits>
#include <variant>
#include <vector>

#include <mp/pickle.hpp>
#include <mp/process.hpp>
#include <mp/sharedctypes.hpp>
#include <mp/synchronize.hpp>

#include "test_util.hpp"

using namespace std::chrono_literals;

namespace {

[[maybe_unused]] constexpr auto kJoinLimit = 60s;

// A ctypes Structure's analogue.
struct Point {
  int x;
  double y;
  char tag[4];
};

// ---- compile-time checks: only trivially copyable types are shared ----

template <class T>
concept can_make_value = requires {
  typename mp::Value<T>;
};
template <class T>
concept can_make_array = requires(std::size_t n) {
  mp::Array<T>(n);
};
template <class T>
concept can_make_raw_value = requires(T t) {
  mp::RawValue<T>(t);
};

static_assert(can_make_value<int> && can_make_value<double> && can_make_value<Point>);
static_assert(!can_make_value<std::string>, "a std::string points into one process's memory");
static_assert(!can_make_value<std::vector<int>>);
static_assert(!can_make_value<const int>);
static_assert(can_make_array<char> && can_make_array<Point>);
static_assert(!can_make_array<std::string>);
static_assert(!can_make_raw_value<std::string>);
static_assert(mp::shared_ctype<Point> && !mp::shared_ctype<std::string>);
// char-array accessors exist only for char arrays.
template <class A>
concept has_text_accessors = requires(A a) {
  a.value();
  a.raw();
  a.set_value("x");
};
static_assert(has_text_accessors<mp::Array<char>> && has_text_accessors<mp::RawArray<char>>);
static_assert(!has_text_accessors<mp::Array<int>> &&
              !has_text_accessors<mp::RawArray<unsigned char>>);
// Handles pickle (they travel to spawned children).
static_assert(mp::pickle::picklable<mp::Value<int>> && mp::pickle::picklable<mp::Array<char>> &&
              mp::pickle::picklable<mp::RawValue<Point>> &&
              mp::pickle::picklable<mp::RawArray<int>>);

// ---- child-side functions (free functions: they work with spawn) ----

void set_value_to(mp::Value<int> value, int new_value) { value.set_value(new_value); }

// Exit 0 if the parent's write (announced by `ready`) is visible here.
void expect_value_after(mp::Value<int> value, mp::Event ready, int expected) {
  if (!ready.wait(30s)) std::exit(5);
  std::exit(value.value() == expected ? 0 : 3);
}

void increment_many(mp::Value<int> counter, mp::Barrier start_together, int times) {
  start_together.wait(30s);  // all at once, so that unlocked increments would collide
  for (int i = 0; i < times; ++i) counter.update([](int& n) { ++n; });
}

void set_raw_value(mp::RawValue<double> value) { value.set_value(value.value() * 2 + 0.25); }

void fill_squares(mp::Array<int> array) {
  array.update([](std::span<int> elements) {
    for (std::size_t i = 0; i < elements.size(); ++i) elements[i] = static_cast<int>(i * i);
  });
}

void fill_raw_array(mp::RawArray<long> array) {
  for (std::size_t i = 0; i < array.size(); ++i) array[i] = -static_cast<long>(i);
}

// Exit 0 if the char array behaves like Python's c_char array in this process too.
void use_char_array(mp::Array<char> text) {
  if (text.value() != "hello world") std::exit(3);
  try {
    text.set_value("this is far too long");
    std::exit(4);
  } catch (const std::invalid_argument&) {
  }
  text.set_value("HI");
}

void move_point(mp::Value<Point> point) {
  point.update([](Point& p) {
    p.x += 1;
    p.y *= 2;
    p.tag[0] = 'Z';
  });
}

// Exit 0 if the Value's lock is the Lock the parent holds (a try fails), after
// incrementing both objects under it once the parent lets go.
void use_shared_lock(mp::Value<int> value, mp::Array<int> array, mp::Lock lock, mp::Event held,
                     mp::Event tried, mp::Event released) {
  if (!held.wait(30s)) std::exit(5);
  if (value.get_lock().acquire(false)) std::exit(6);  // the parent holds this very lock
  if (lock.acquire(false)) std::exit(7);
  tried.set();
  if (!released.wait(30s)) std::exit(5);
  {
    std::scoped_lock guard(value.get_lock());
    array[0] += 1;
  }
  value.update([](int& n) { n += 10; });
}

void load_handles_and_write(std::string path) {
  auto text = mp_test::wait_for_file(path, 30s);
  if (!text) std::exit(8);
  auto [value, array] = mp::pickle::loads<std::tuple<mp::Value<int>, mp::Array<char>>>(*text);
  value.set_value(77);
  array.set_value("from child");
}

void unlocked_value_write(mp::Value<int> value) {
  if (value.has_lock()) std::exit(3);
  value.set_value(value.value() + 1);
}

class SharedCtypesTest : public mp_test::StartMethodTest<> {
 protected:
  // `processes` children, released together, each add 1 to `counter` `increments` times.
  void increment_together(mp::Value<int> counter, int processes, int increments) {
    mp::Barrier start_together(processes);
    std::vector<mp::Process> children;
    for (int i = 0; i < processes; ++i)
      children.push_back(start(&increment_many, counter, start_together, increments));
    for (auto& child : children) join_ok(child);
  }
};

TEST_P(SharedCtypesTest, ValueSetInChildIsSeenByParent) {
  mp::Value<int> value(100);
  auto child = start(&set_value_to, value, 1234);
  join_ok(child);
  EXPECT_EQ(value.value(), 1234);
}

TEST_P(SharedCtypesTest, ValueSetByParentIsSeenByRunningChild) {
  mp::Value<int> value(100);
  mp::Event ready;
  auto child = start(&expect_value_after, value, ready, 42);
  value.set_value(42);
  ready.set();
  join_ok(child);
}

TEST_P(SharedCtypesTest, UpdateIsAtomicAcrossProcesses) {
  constexpr int kProcesses = 4;
  constexpr int kIncrements = 10'000;
  mp::Value<int> counter(0);
  increment_together(counter, kProcesses, kIncrements);
  EXPECT_EQ(counter.value(), kProcesses * kIncrements);
}

TEST_P(SharedCtypesTest, RawValueInChild) {
  mp::RawValue<double> value(1.5);
  auto child = start(&set_raw_value, value);
  join_ok(child);
  EXPECT_EQ(value.value(), 3.25);
}

TEST_P(SharedCtypesTest, ValueWithoutLockInChild) {
  mp::Value<int> value(5, mp::no_lock);
  auto child = start(&unlocked_value_write, value);
  join_ok(child);
  EXPECT_EQ(value.value(), 6);
}

TEST_P(SharedCtypesTest, ArrayFilledInChildIsReadInParent) {
  mp::Array<int> array(100);
  auto child = start(&fill_squares, array);
  join_ok(child);
  const auto elements = array.to_vector();
  ASSERT_EQ(elements.size(), 100u);
  for (std::size_t i = 0; i < elements.size(); ++i) EXPECT_EQ(elements[i], static_cast<int>(i * i));
}

TEST_P(SharedCtypesTest, RawArrayFilledInChild) {
  mp::RawArray<long> array(1000);
  auto child = start(&fill_raw_array, array);
  join_ok(child);
  for (std::size_t i = 0; i < array.size(); ++i) ASSERT_EQ(array[i], -static_cast<long>(i));
}

TEST_P(SharedCtypesTest, CharArrayValueAndRawInChild) {
  mp::Array<char> text("hello world");
  ASSERT_EQ(text.size(), 11u);
  auto child = start(&use_char_array, text);
  join_ok(child);
  EXPECT_EQ(text.value(), "HI");
  EXPECT_EQ(text.raw(), std::string("HI\0lo world", 11));
}

TEST_P(SharedCtypesTest, StructValue) {
  mp::Value<Point> point(Point{1, 2.5, {'a', 'b', 'c', '\0'}});
  auto child = start(&move_point, point);
  join_ok(child);
  const Point p = point.value();
  EXPECT_EQ(p.x, 2);
  EXPECT_EQ(p.y, 5.0);
  EXPECT_EQ(std::string(p.tag), "Zbc");
}

TEST_P(SharedCtypesTest, ExistingLockIsUsed) {
  mp::Lock lock;
  mp::Value<int> value(0, lock);
  mp::Array<int> array(1, lock);
  ASSERT_TRUE(std::holds_alternative<mp::Lock>(value.get_lock().variant()));
  EXPECT_EQ(std::get<mp::Lock>(value.get_lock().variant()).ref().offset, lock.ref().offset);
  mp::Event held, tried, released;
  lock.acquire();
  auto child = start(&use_shared_lock, value, array, lock, held, tried, released);
  held.set();
  // The child's tries fail while we hold the lock (its exit code tells which check
  // failed); then it waits for `released`.
  EXPECT_TRUE(tried.wait(30s));
  lock.release();
  released.set();
  join_ok(child);
  EXPECT_EQ(value.value(), 10);
  EXPECT_EQ(array.to_vector(), std::vector<int>{1});
}

TEST_P(SharedCtypesTest, HandlesCreatedAfterChildStartedArriveInPickle) {
  mp_test::TempDir dir;
  const std::string path = dir.file("handles");
  auto child = start(&load_handles_and_write, path);
  mp::Value<int> value(0);  // created after the child started
  mp::Array<char> text(16);
  mp_test::write_file(path,
                      mp::pickle::dumps(std::tuple<mp::Value<int>, mp::Array<char>>(value, text)));
  join_ok(child);
  EXPECT_EQ(value.value(), 77);
  EXPECT_EQ(text.value(), "from child");
}

TEST_P(SharedCtypesTest, SynchronizedRawValueIsAtomicInChildren) {
  constexpr int kProcesses = 3;
  constexpr int kIncrements = 5'000;
  mp::RawValue<int> raw(0);
  mp::Value<int> counter = mp::synchronized(raw);  // the same memory, with a new RLock
  increment_together(counter, kProcesses, kIncrements);
  EXPECT_EQ(raw.value(), kProcesses * kIncrements);
}

INSTANTIATE_TEST_SUITE_P(StartMethods, SharedCtypesTest,
                         ::testing::ValuesIn(mp_test::start_methods()), mp_test::method_name);

// ---- in one process ----

TEST(SharedCtypesLocal, DefaultsAreZeroAndDefaultLockIsRecursive) {
  mp::Value<int> value;
  EXPECT_EQ(value.value(), 0);
  ASSERT_TRUE(value.has_lock());
  EXPECT_TRUE(std::holds_alternative<mp::RLock>(value.get_lock().variant()));
  std::scoped_lock outer(value.get_lock());
  EXPECT_EQ(value.value(), 0);  // value() locks again: fine with an RLock (Python's default)
  EXPECT_EQ(value.update([](int& n) { n = 3; }), 3);
  mp::Array<double> array(3);
  EXPECT_EQ(array.to_vector(), (std::vector<double>{0, 0, 0}));
}

TEST(SharedCtypesLocal, ExistingRLockIsUsed) {
  mp::RLock lock;
  mp::Value<int> value(0, lock);
  mp::Array<char> text("ab", lock);
  ASSERT_TRUE(std::holds_alternative<mp::RLock>(text.get_lock().variant()));
  EXPECT_EQ(std::get<mp::RLock>(value.get_lock().variant()).ref().offset, lock.ref().offset);
  std::scoped_lock guard(lock);
  EXPECT_EQ(value.update([](int& n) { n = 5; }), 5);  // recursive: this thread holds it
  EXPECT_EQ(text.value(), "ab");
}

TEST(SharedCtypesLocal, UpdateReturnsNewValue) {
  mp::Value<long> value(41);
  EXPECT_EQ(value.update([](long& n) { ++n; }), 42);
  EXPECT_EQ(value.value(), 42);
  mp::Array<int> array{1, 2, 3};
  const int sum = array.update([](std::span<int> a) {
    for (int& x : a) x *= 2;
    return std::accumulate(a.begin(), a.end(), 0);
  });
  EXPECT_EQ(sum, 12);
}

TEST(SharedCtypesLocal, GetObjSharesMemory) {
  mp::Value<int> value(1);
  mp::RawValue<int> raw = value.get_obj();
  raw.set_value(9);
  EXPECT_EQ(value.value(), 9);
  mp::Array<int> array{1, 2};
  array.get_obj()[1] = 5;
  EXPECT_EQ(array[1], 5);
}

TEST(SharedCtypesLocal, AtThrowsOutOfRange) {
  mp::Array<int> array{1, 2, 3};
  EXPECT_EQ(array.at(2), 3);
  EXPECT_THROW((void)array.at(3), std::out_of_range);
  mp::RawArray<int> empty;
  EXPECT_THROW((void)empty.at(0), std::out_of_range);
}

TEST(SharedCtypesLocal, ArrayFromContainers) {
  std::vector<int> source{4, 5, 6};
  mp::Array<int> from_vector(source);
  EXPECT_EQ(from_vector.to_vector(), source);
  mp::RawArray<int> from_span{std::span<const int>(source)};
  EXPECT_EQ(from_span.to_vector(), source);
  int sum = 0;
  for (int x : from_vector) sum += x;
  EXPECT_EQ(sum, 15);
  from_vector.span()[0] = 40;
  EXPECT_EQ(from_vector[0], 40);
}

TEST(SharedCtypesLocal, CharArrayValueAndRaw) {
  mp::Array<char> text(5);
  EXPECT_EQ(text.value(), "");
  EXPECT_EQ(text.raw(), std::string(5, '\0'));
  text.set_value("abcde");  // exactly full: no NUL, as ctypes
  EXPECT_EQ(text.value(), "abcde");
  text.set_value("xy");  // shorter: a NUL ends it, the rest stays
  EXPECT_EQ(text.value(), "xy");
  EXPECT_EQ(text.raw(), std::string("xy\0de", 5));
  EXPECT_THROW(text.set_value("abcdef"), std::invalid_argument);
  EXPECT_EQ(text.value(), "xy");  // unchanged
  text.set_raw("12");
  EXPECT_EQ(text.raw(), std::string("12\0de", 5));
  EXPECT_THROW(text.set_raw("123456"), std::invalid_argument);
  mp::RawArray<char> raw("abc");
  EXPECT_EQ(raw.size(), 3u);
  EXPECT_EQ(raw.value(), "abc");
}

TEST(SharedCtypesLocal, NoLockMeansNoLockOperations) {
  mp::Value<int> value(1, mp::no_lock);
  EXPECT_FALSE(value.has_lock());
  EXPECT_THROW(value.get_lock(), std::logic_error);
  EXPECT_THROW(value.update([](int& n) { ++n; }), std::logic_error);
  value.set_value(2);
  EXPECT_EQ(value.value(), 2);
  mp::Array<char> text(4, mp::no_lock);
  EXPECT_THROW(text.get_lock(), std::logic_error);
  text.set_value("ab");
  EXPECT_EQ(text.value(), "ab");
}

TEST(SharedCtypesLocal, PickledHandlesShareTheObjectAndCheckTheType) {
  mp::Value<int> value(3);
  auto copy = mp::pickle::loads<mp::Value<int>>(mp::pickle::dumps(value));
  copy.set_value(4);
  EXPECT_EQ(value.value(), 4);
  EXPECT_EQ(copy.get_lock().variant().index(), value.get_lock().variant().index());
  mp::Value<int> unlocked(0, mp::no_lock);
  EXPECT_FALSE(mp::pickle::loads<mp::Value<int>>(mp::pickle::dumps(unlocked)).has_lock());
  // Another element type or kind of object: a clear error, not reinterpreted bytes.
  EXPECT_THROW(mp::pickle::loads<mp::Value<float>>(mp::pickle::dumps(value)), mp::UnpicklingError);
  EXPECT_THROW(mp::pickle::loads<mp::Array<int>>(mp::pickle::dumps(value)), mp::UnpicklingError);
  mp::RawArray<Point> points(2);
  EXPECT_EQ(mp::pickle::loads<mp::RawArray<Point>>(mp::pickle::dumps(points)).size(), 2u);
}

TEST(SharedCtypesLocal, CopyMakesIndependentObjects) {
  mp::RawValue<int> raw(5);
  mp::RawValue<int> raw_copy = mp::copy(raw);
  EXPECT_NE(raw_copy.ref().offset, raw.ref().offset);
  raw_copy.set_value(6);
  EXPECT_EQ(raw.value(), 5);
  EXPECT_EQ(raw_copy.value(), 6);

  mp::RawArray<char> text("hello");
  mp::RawArray<char> text_copy = mp::copy(text);
  text_copy[0] = 'J';
  EXPECT_EQ(text.raw(), "hello");
  EXPECT_EQ(text_copy.raw(), "Jello");

  mp::Value<Point> point(Point{1, 2.5, "ab"});
  mp::RawValue<Point> point_copy = mp::copy(point);  // read under the lock
  EXPECT_EQ(point_copy.value().x, 1);
  EXPECT_EQ(point_copy.value().y, 2.5);
  point.update([](Point& p) { p.x = 9; });
  EXPECT_EQ(point_copy.value().x, 1);

  mp::Array<int> numbers{1, 2, 3};
  mp::RawArray<int> numbers_copy = mp::copy(numbers);
  numbers[0] = 100;
  EXPECT_EQ(numbers_copy.to_vector(), (std::vector<int>{1, 2, 3}));
}

TEST(SharedCtypesLocal, SynchronizedSharesMemoryAndTakesTheLock) {
  mp::RawArray<int> raw{1, 2, 3};
  mp::Array<int> synced = mp::synchronized(raw);
  EXPECT_TRUE(synced.has_lock());
  EXPECT_EQ(synced.get_obj().ref().offset, raw.ref().offset);
  EXPECT_TRUE(std::holds_alternative<mp::RLock>(synced.get_lock().variant()));
  synced.update([](std::span<int> a) {
    for (int& x : a) x *= 10;
  });
  EXPECT_EQ(raw.to_vector(), (std::vector<int>{10, 20, 30}));

  mp::Lock lock;
  mp::RawValue<double> raw_value(1.5);
  mp::Value<double> value = mp::synchronized(raw_value, lock);
  ASSERT_TRUE(lock.acquire());
  EXPECT_FALSE(value.get_lock().acquire(false)) << "not the lock that was given";
  lock.release();
  value.set_value(2.5);
  EXPECT_EQ(raw_value.value(), 2.5);
}

}  // namespace
