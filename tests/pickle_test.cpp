// Tests for <mp/pickle.hpp> and the code references behind pickled function pointers
// (<mp/detail/code_ref.hpp>): round trips of every built-in kind, user types, functions
// and lambdas, and bad bytes, which must throw mp::UnpicklingError and nothing worse.
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <climits>
#include <cmath>
#include <complex>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <filesystem>
#include <iostream>
#include <iterator>
#include <list>
#include <map>
#include <memory>
#include <mp/detail/code_ref.hpp>
#include <mp/errors.hpp>
#include <mp/pickle.hpp>
#include <optional>
#include <random>
#include <set>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <tuple>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <variant>
#include <vector>

#include "test_util.hpp"

namespace {

using mp::pickle::dump;
using mp::pickle::dumps;
using mp::pickle::loads;
using mp::pickle::picklable;

// ---- Types used below -----------------------------------------------------------------

struct Plain {  // trivially copyable aggregate: raw bytes
  int id;
  double weight;
  char tag[4];
  bool operator==(const Plain&) const = default;
};

union Number {  // trivially copyable, but which member is active cannot be told
  std::int64_t integer;
  double real;
};

// Plain structs whose bytes mean the same in another process: raw bytes.
struct Bits {
  unsigned low : 3;
  unsigned high : 5;
  bool flag : 1;
  bool operator==(const Bits&) const = default;
};
struct PlainParts {
  Plain plain;
  std::array<Bits, 2> bits;
  std::chrono::milliseconds elapsed;
  std::optional<float> maybe;
  char name[8];
  long matrix[2][3];
  bool operator==(const PlainParts&) const = default;
};
struct PlainBase {
  int base;
};
struct DerivedPlain : PlainBase {
  int extra;
};

// Trivially copyable aggregates with members whose bytes would mean nothing in another
// process: not picklable as raw bytes.
struct WithPointer {
  int id;
  const double* values;
};
struct WithStringView {
  int id;
  std::string_view name;
};
struct WithFunctionPointer {
  int id;
  int (*function)(int);
};
struct WithPointerInArray {
  int id;
  int* slots[2];
};
struct WithNestedPointer {
  int id;
  WithPointer inner;
};
struct WithPointerBase : WithPointer {
  int extra;
};
struct WithUnion {
  Number number;
};
struct WithMemberPointer {
  int Plain::*member;
};
// A member with a serialization of its own must not be bypassed by raw bytes.
struct WithSerializedMember {
  int id;
  struct Inner {
    int kept;
    template <class Archive>
    void serialize(Archive& ar) {
      ar(kept);
    }
  } inner;
};

// The fix for a function pointer member: serialize() pickles it as a code reference.
struct SerializedFunctionPointer {
  int id;
  int (*function)(int);
  template <class Archive>
  void serialize(Archive& ar) {
    ar(id, function);
  }
};

struct WithSerialize {
  std::string name;
  std::vector<double> values;
  std::map<int, std::string> labels;
  Plain plain{};

  template <class Archive>
  void serialize(Archive& ar) {
    ar(name, values, labels, plain);
  }
  bool operator==(const WithSerialize&) const = default;
};

// A plain struct with its own serialize(): mp must use it, not the raw bytes.
struct PlainButSerialized {
  int kept;
  int dropped;

  template <class Archive>
  void serialize(Archive& ar) {
    ar(kept);
  }
};

using SplitSaveLoad = mp_test::SplitSaveLoad<std::domain_error>;

// A function object with state: picklable as a plain struct.
struct Multiplier {
  int factor;
  int operator()(int x) const { return factor * x; }
};

// A stateless function object: picklable as an empty class.
struct Negate {
  int operator()(int x) const { return -x; }
};

// Fails on purpose while pickling (SplitSaveLoad{"refuse"} while unpickling).
using ThrowsOnSave = mp_test::ThrowsOnSave<std::domain_error>;

struct NotPicklable {
  std::string text;  // not trivially copyable and no serialize()
};

struct AbsLess {
  bool operator()(int a, int b) const { return std::abs(a) < std::abs(b); }
};

enum class Color : std::uint8_t { red, green, blue };
enum Legacy { kFirst = 1, kSecond = 2 };

int triple(int x) { return 3 * x; }
int add(int a, int b) { return a + b; }

}  // namespace

namespace user_ns {
// Free serialize() found by argument-dependent lookup, as cereal allows.
struct FreeSerialized {
  int a = 0;
  std::string b;
  bool operator==(const FreeSerialized&) const = default;
};
template <class Archive>
void serialize(Archive& ar, FreeSerialized& value) {
  ar(value.a, value.b);
}
}  // namespace user_ns

// A third-party class (private members, no serialize): save/load go in its namespace,
// found by argument-dependent lookup, as <mp/pickle.hpp> says.
namespace vendor {
class Celsius {
 public:
  Celsius() = default;
  explicit Celsius(double degrees) : degrees_(degrees) {}
  double degrees() const { return degrees_; }

 private:
  double degrees_ = 0;
};
template <class Archive>
void save(Archive& ar, const Celsius& value) {
  ar(value.degrees());
}
template <class Archive>
void load(Archive& ar, Celsius& value) {
  double degrees;
  ar(degrees);
  value = Celsius(degrees);
}
// A type of a namespace one may not add to (think std): save/load go in namespace cereal.
class Sealed {
 public:
  Sealed() = default;
  explicit Sealed(std::string name) : name_(std::move(name)) {}
  const std::string& name() const { return name_; }

 private:
  std::string name_;
};
}  // namespace vendor

namespace cereal {
template <class Archive>
void save(Archive& ar, const vendor::Sealed& value) {
  ar(value.name());
}
template <class Archive>
void load(Archive& ar, vendor::Sealed& value) {
  std::string name;
  ar(name);
  value = vendor::Sealed(std::move(name));
}
}  // namespace cereal

namespace {

// ---- What is picklable: compile-time ---------------------------------------------------

constexpr auto kCaptureless = [](int x) { return x + 1; };
inline int g_captured = 5;
// Only named in static_asserts (clang++ would warn that they are never emitted).
[[maybe_unused]] inline const auto kCapturing = [c = g_captured](int x) { return x + c; };
[[maybe_unused]] inline const auto kCapturingByReference = [&c = g_captured](int x) {
  return x + c;
};

static_assert(picklable<int> && picklable<bool> && picklable<double> && picklable<char>);
static_assert(picklable<Color> && picklable<Legacy>);
static_assert(picklable<std::string> && picklable<std::u16string>);
static_assert(picklable<std::vector<int>> && picklable<std::vector<std::string>>);
static_assert(picklable<std::array<Plain, 3>> && picklable<std::deque<int>>);
static_assert(picklable<std::list<std::string>>);
static_assert(picklable<std::map<std::string, std::vector<int>>>);
static_assert(picklable<std::unordered_multimap<int, Plain>>);
static_assert(picklable<std::set<int>> && picklable<std::unordered_set<std::string>>);
static_assert(picklable<std::tuple<int, std::string, std::optional<double>>>);
static_assert(picklable<std::pair<int, std::variant<std::monostate, std::string>>>);
static_assert(picklable<std::chrono::milliseconds> && picklable<std::chrono::duration<double>>);
static_assert(picklable<std::chrono::system_clock::time_point>);
static_assert(picklable<Plain> && picklable<WithSerialize>);
// Plain structs: raw bytes when every member (recursively) is plain data.
static_assert(picklable<Bits> && picklable<PlainParts> && picklable<DerivedPlain>);
static_assert(picklable<std::vector<PlainParts>> && picklable<SerializedFunctionPointer>);
static_assert(!picklable<WithPointer> && !picklable<WithStringView>);
static_assert(!picklable<WithFunctionPointer> && !picklable<WithPointerInArray>);
static_assert(!picklable<WithNestedPointer> && !picklable<WithPointerBase>);
static_assert(!picklable<WithUnion> && !picklable<Number> && !picklable<WithMemberPointer>);
static_assert(!picklable<WithSerializedMember>);
static_assert(!picklable<std::vector<WithPointer>> && !picklable<std::optional<WithStringView>>);
static_assert(!picklable<std::array<WithNestedPointer, 2>>);
static_assert(picklable<user_ns::FreeSerialized> && picklable<SplitSaveLoad>);
static_assert(picklable<Multiplier> && picklable<Negate>);
static_assert(picklable<int (*)(int)> && picklable<void (*)() noexcept>);
// Captureless lambdas are empty and default constructible (C++20): picklable.
static_assert(picklable<std::remove_const_t<decltype(kCaptureless)>>);
// Capturing lambdas are not: their state cannot be rebuilt in another process.
static_assert(!picklable<std::remove_const_t<decltype(kCapturing)>>);
static_assert(!picklable<std::remove_const_t<decltype(kCapturingByReference)>>);
// Things that would dangle in another process, or cannot be rebuilt.
static_assert(!picklable<std::string_view> && !picklable<const char*> && !picklable<int*>);
static_assert(!picklable<int&> && !picklable<const int> && !picklable<int[3]>);
static_assert(!picklable<int Plain::*> && !picklable<std::nullptr_t>);
static_assert(!picklable<std::unique_ptr<int>> && !picklable<void>);
static_assert(!picklable<NotPicklable>);
// Recursively through the standard containers.
static_assert(!picklable<std::vector<NotPicklable>>);
static_assert(!picklable<std::tuple<int, NotPicklable>>);
static_assert(!picklable<std::optional<std::string_view>>);
static_assert(!picklable<std::map<int, NotPicklable>> && !picklable<std::map<NotPicklable, int>>);
static_assert(!picklable<std::variant<int, int*>>);
static_assert(!picklable<std::vector<std::vector<std::pair<int, const char*>>>>);

// ---- Helpers ---------------------------------------------------------------------------

template <class T>
T round_trip(const T& value) {
  return loads<T>(dumps(value));
}

// The message of the UnpicklingError that `load` throws ("" and a test failure if none).
template <class F>
std::string unpickling_error(F&& load) {
  try {
    load();
  } catch (const mp::UnpicklingError& e) {
    return e.what();
  } catch (const std::exception& e) {
    ADD_FAILURE() << "expected mp::UnpicklingError, got another exception: " << e.what();
    return "";
  }
  ADD_FAILURE() << "expected mp::UnpicklingError, loads succeeded";
  return "";
}

bool contains(const std::string& text, std::string_view part) {
  return text.find(part) != std::string::npos;
}

constexpr std::size_t kHeader = 8;

// A pickle of T whose body is `body`, with a correct header (taken from a real pickle).
template <class T>
std::string with_header_of(const T& sample, const std::string& body) {
  return dumps(sample).substr(0, kHeader) + body;
}

std::string u64_bytes(std::uint64_t value) {
  return std::string(reinterpret_cast<const char*>(&value), sizeof value);
}

// ---- Round trips -----------------------------------------------------------------------

// load() decodes into an existing value, reusing its storage: the loop the pool runs
// over its result chunks.
TEST(PickleLoad, LoadsIntoAnExistingValueReusingItsStorage) {
  std::vector<std::int64_t> value;
  value.reserve(1000);
  const auto* storage = value.data();
  mp::pickle::load(mp::pickle::dumps(std::vector<std::int64_t>{1, 2, 3}), value);
  EXPECT_EQ(value, (std::vector<std::int64_t>{1, 2, 3}));
  mp::pickle::load(mp::pickle::dumps(std::vector<std::int64_t>(500, 7)), value);
  EXPECT_EQ(value, std::vector<std::int64_t>(500, 7));
  EXPECT_EQ(value.data(), storage);
  std::string text = "keep";
  EXPECT_THROW(mp::pickle::load(mp::pickle::dumps(42), text), mp::UnpicklingError);
  EXPECT_THROW(mp::pickle::load(std::string_view("mp"), value), mp::UnpicklingError);
  mp::pickle::load(mp::pickle::dumps(std::string("hello")), text);
  EXPECT_EQ(text, "hello");
}

TEST(Pickle, ArithmeticRoundTrip) {
  EXPECT_EQ(round_trip(42), 42);
  EXPECT_EQ(round_trip(-1), -1);
  EXPECT_EQ(round_trip(INT_MIN), INT_MIN);
  EXPECT_EQ(round_trip(std::uint64_t{0xFFFFFFFFFFFFFFFF}), 0xFFFFFFFFFFFFFFFFu);
  EXPECT_EQ(round_trip(std::int8_t{-128}), -128);
  EXPECT_EQ(round_trip(true), true);
  EXPECT_EQ(round_trip(false), false);
  EXPECT_EQ(round_trip('x'), 'x');
  EXPECT_EQ(round_trip(u'\u20ac'), u'\u20ac');
  EXPECT_EQ(round_trip(3.25f), 3.25f);
  EXPECT_EQ(round_trip(-0.1), -0.1);
  EXPECT_EQ(round_trip(1.5L), 1.5L);
  EXPECT_TRUE(std::isnan(round_trip(std::nan(""))));
  EXPECT_EQ(round_trip(1e308 * 10), 1e308 * 10);  // infinity
}

TEST(Pickle, IntPickleIsHeaderPlusValue) {
  // Queues send small values at millions per second: 8 bytes of overhead, no more.
  EXPECT_EQ(dumps(42).size(), kHeader + sizeof(int));
  EXPECT_EQ(dumps(std::int64_t{42}).size(), kHeader + 8);
  EXPECT_EQ(dumps(std::string("abc")).size(), kHeader + 8 + 3);
}

TEST(Pickle, EnumRoundTrip) {
  EXPECT_EQ(round_trip(Color::blue), Color::blue);
  EXPECT_EQ(round_trip(kSecond), kSecond);
  EXPECT_EQ(dumps(Color::green).size(), kHeader + 1);  // as its underlying type
}

TEST(Pickle, StringRoundTrip) {
  EXPECT_EQ(round_trip(std::string()), "");
  EXPECT_EQ(round_trip(std::string("hello")), "hello");
  const std::string with_nuls("a\0b\0c", 5);
  EXPECT_EQ(round_trip(with_nuls), with_nuls);
  const std::string big(100000, 'z');
  EXPECT_EQ(round_trip(big), big);
  EXPECT_EQ(round_trip(std::u32string(U"\U0001F600x")), U"\U0001F600x");
}

TEST(Pickle, SequenceRoundTrip) {
  EXPECT_EQ(round_trip(std::vector<int>{}), std::vector<int>{});
  EXPECT_EQ(round_trip(std::vector<int>{1, 2, 3}), (std::vector<int>{1, 2, 3}));
  EXPECT_EQ(round_trip(std::vector<double>{0.5, -2}), (std::vector<double>{0.5, -2}));
  EXPECT_EQ(round_trip(std::vector<bool>{true, false, true}),
            (std::vector<bool>{true, false, true}));
  EXPECT_EQ(round_trip(std::vector<std::string>{"a", "", "ccc"}),
            (std::vector<std::string>{"a", "", "ccc"}));
  EXPECT_EQ(round_trip(std::array<int, 3>{7, 8, 9}), (std::array<int, 3>{7, 8, 9}));
  EXPECT_EQ(round_trip(std::array<bool, 2>{true, false}), (std::array<bool, 2>{true, false}));
  EXPECT_EQ(round_trip(std::array<std::string, 2>{"x", "y"}),
            (std::array<std::string, 2>{"x", "y"}));
  EXPECT_EQ(round_trip(std::deque<int>{4, 5}), (std::deque<int>{4, 5}));
  EXPECT_EQ(round_trip(std::list<std::string>{"p", "q"}), (std::list<std::string>{"p", "q"}));
  // A vector of arithmetic values is one block: no per-element overhead.
  EXPECT_EQ(dumps(std::vector<std::int32_t>(100)).size(), kHeader + 8 + 400);
}

TEST(Pickle, AssociativeRoundTrip) {
  const std::map<std::string, int> ordered{{"a", 1}, {"b", 2}};
  EXPECT_EQ(round_trip(ordered), ordered);
  // Equal keys keep their order (cereal's own loader reverses them).
  const std::multimap<int, std::string> multi{{1, "x"}, {1, "y"}, {1, "w"}, {2, "z"}};
  EXPECT_EQ(round_trip(multi), multi);
  const std::unordered_map<std::string, std::vector<int>> hashed{{"k", {1, 2}}, {"l", {}}};
  EXPECT_EQ(round_trip(hashed), hashed);
  const std::unordered_multimap<int, int> hashed_multi{{1, 1}, {1, 2}};
  EXPECT_EQ(round_trip(hashed_multi), hashed_multi);
  const std::set<std::string> names{"ann", "bob"};
  EXPECT_EQ(round_trip(names), names);
  const std::multiset<int> repeated{3, 3, 1};
  EXPECT_EQ(round_trip(repeated), repeated);
  // Equivalent but different keys keep their order too.
  const std::multiset<int, AbsLess> by_size{-2, 2, 1, -1};
  const auto loaded_by_size = round_trip(by_size);
  EXPECT_TRUE(
      std::equal(loaded_by_size.begin(), loaded_by_size.end(), by_size.begin(), by_size.end()));
  const std::unordered_set<int> numbers{5, 6, 7};
  EXPECT_EQ(round_trip(numbers), numbers);
  const std::unordered_multiset<int> numbers_multi{5, 5};
  EXPECT_EQ(round_trip(numbers_multi), numbers_multi);
}

TEST(Pickle, PairTupleOptionalVariantRoundTrip) {
  EXPECT_EQ(round_trip(std::pair<int, std::string>(1, "one")),
            (std::pair<int, std::string>(1, "one")));
  const std::tuple<int, std::string, double> tuple{1, "two", 3.0};
  EXPECT_EQ(round_trip(tuple), tuple);
  EXPECT_EQ(round_trip(std::tuple<>()), std::tuple<>());
  EXPECT_EQ(round_trip(std::optional<int>()), std::nullopt);
  EXPECT_EQ(round_trip(std::optional<std::string>("x")), std::optional<std::string>("x"));
  using Variant = std::variant<std::monostate, int, std::string>;
  EXPECT_EQ(round_trip(Variant()), Variant());
  EXPECT_EQ(round_trip(Variant(5)), Variant(5));
  EXPECT_EQ(round_trip(Variant("five")), Variant("five"));
  EXPECT_EQ(round_trip(Variant("five")).index(), 2u);
}

TEST(Pickle, ChronoRoundTrip) {
  using namespace std::chrono_literals;
  EXPECT_EQ(round_trip(1500ms), 1500ms);
  EXPECT_EQ(round_trip(std::chrono::nanoseconds(-7)), std::chrono::nanoseconds(-7));
  EXPECT_EQ(round_trip(std::chrono::duration<double>(2.5)), std::chrono::duration<double>(2.5));
  const auto wall = std::chrono::system_clock::now();
  EXPECT_EQ(round_trip(wall), wall);
  const auto steady = std::chrono::steady_clock::now();
  EXPECT_EQ(round_trip(steady), steady);
}

TEST(Pickle, ComplexAndPathRoundTrip) {
  EXPECT_EQ(round_trip(std::complex<double>(1.5, -2)), std::complex<double>(1.5, -2));
  EXPECT_EQ(round_trip(std::vector<std::complex<float>>{{1, 2}, {3, 4}}),
            (std::vector<std::complex<float>>{{1, 2}, {3, 4}}));
  EXPECT_EQ(dumps(std::complex<double>()).size(), kHeader + 16);
  EXPECT_EQ(round_trip(std::filesystem::path("/tmp/a b/c.txt")),
            std::filesystem::path("/tmp/a b/c.txt"));
  EXPECT_EQ(round_trip(std::filesystem::path()), std::filesystem::path());
  EXPECT_EQ(round_trip(std::vector<std::filesystem::path>{"x", "y/z"}),
            (std::vector<std::filesystem::path>{"x", "y/z"}));
  using Clock = std::chrono::system_clock;
  const std::deque<Clock::time_point> times{Clock::now(), Clock::time_point()};
  EXPECT_EQ(round_trip(times), times);
  // A plain struct with a complex member is still raw bytes.
  struct Sample {
    std::complex<double> z;
    int n;
  };
  static_assert(mp::detail::raw_bytes_class<Sample>);
  const Sample sample = round_trip(Sample{{1, 2}, 3});
  EXPECT_EQ(sample.z, std::complex<double>(1, 2));
  EXPECT_EQ(sample.n, 3);
}

TEST(Pickle, ThirdPartyTypeWithFreeSaveLoad) {
  static_assert(picklable<vendor::Celsius> && picklable<vendor::Sealed>);
  EXPECT_EQ(round_trip(vendor::Celsius(36.6)).degrees(), 36.6);
  EXPECT_EQ(round_trip(vendor::Sealed("x")).name(), "x");
  const auto both = round_trip(std::vector<std::pair<vendor::Celsius, vendor::Sealed>>{
      {vendor::Celsius(1), vendor::Sealed("a")}});
  EXPECT_EQ(both.at(0).first.degrees(), 1);
  EXPECT_EQ(both.at(0).second.name(), "a");
}

TEST(Pickle, NestedRoundTrip) {
  using Nested = std::map<
      std::string,
      std::vector<std::tuple<int, std::optional<std::string>, std::variant<double, Plain>>>>;
  Nested nested;
  nested["first"].emplace_back(1, "one", 1.5);
  nested["first"].emplace_back(2, std::nullopt, Plain{7, 0.25, {'a', 'b', 'c', '\0'}});
  nested["empty"];
  EXPECT_EQ(round_trip(nested), nested);

  const std::vector<std::pair<std::string, std::deque<std::set<int>>>> deep{{"x", {{1, 2}, {}}},
                                                                            {"", {}}};
  EXPECT_EQ(round_trip(deep), deep);
}

TEST(Pickle, PlainStructIsRawBytes) {
  const Plain plain{42, 2.5, {'a', 'b', 'c', 'd'}};
  EXPECT_EQ(round_trip(plain), plain);
  EXPECT_EQ(dumps(plain).size(), kHeader + sizeof(Plain));
}

TEST(Pickle, PlainStructOfPlainPartsIsRawBytes) {
  PlainParts parts{Plain{1, 0.5, {'a', 'b', 'c', 'd'}},
                   {Bits{5, 17, true}, Bits{1, 2, false}},
                   std::chrono::milliseconds(1500),
                   2.25f,
                   "name",
                   {{1, 2, 3}, {4, 5, 6}}};
  EXPECT_EQ(round_trip(parts), parts);
  EXPECT_EQ(dumps(parts).size(), kHeader + sizeof(PlainParts));
  const DerivedPlain derived = round_trip(DerivedPlain{{7}, 8});
  EXPECT_EQ(derived.base, 7);
  EXPECT_EQ(derived.extra, 8);
}

TEST(Pickle, FunctionPointerMemberTravelsThroughSerialize) {
  const SerializedFunctionPointer loaded = round_trip(SerializedFunctionPointer{4, &triple});
  EXPECT_EQ(loaded.id, 4);
  ASSERT_EQ(loaded.function, &triple);
  EXPECT_EQ(loaded.function(2), 6);
  // A code reference, not the 8 bytes of the address.
  EXPECT_GT(dumps(SerializedFunctionPointer{4, &triple}).size(),
            kHeader + sizeof(SerializedFunctionPointer));
}

TEST(Pickle, UserTypeWithSerialize) {
  const WithSerialize value{"name", {1.5, 2.5}, {{1, "one"}}, Plain{1, 2, {}}};
  EXPECT_EQ(round_trip(value), value);
  const user_ns::FreeSerialized free_value{7, "seven"};
  EXPECT_EQ(round_trip(free_value), free_value);
  const SplitSaveLoad split = round_trip(SplitSaveLoad{"text", 0});
  EXPECT_EQ(split.text, "text");
  EXPECT_EQ(split.loads_seen, 1);
}

TEST(Pickle, OwnSerializeWinsOverRawBytes) {
  const PlainButSerialized loaded = round_trip(PlainButSerialized{1, 2});
  EXPECT_EQ(loaded.kept, 1);
  EXPECT_EQ(loaded.dropped, 0);  // not written: serialize() decides, not memcpy
  EXPECT_EQ(dumps(PlainButSerialized{1, 2}).size(), kHeader + sizeof(int));
}

// ---- Functions -------------------------------------------------------------------------

TEST(Pickle, FunctionPointerRoundTrip) {
  const auto loaded = round_trip(&triple);
  EXPECT_EQ(loaded, &triple);
  EXPECT_EQ(loaded(14), 42);
  int (*binary)(int, int) = &add;
  EXPECT_EQ(round_trip(binary)(40, 2), 42);
  int (*null_function)(int) = nullptr;
  EXPECT_EQ(round_trip(null_function), nullptr);
}

TEST(Pickle, FunctionPointerInALibrary) {
  // Code in another module (libc) is named by that module's id.
  int (*library_function)(int) = &::abs;  // the C function, in libc
  const auto loaded = round_trip(library_function);
  EXPECT_EQ(loaded, library_function);
  EXPECT_EQ(loaded(-5), 5);
}

TEST(Pickle, CapturelessLambdaRoundTrip) {
  auto lambda = [](int x) { return x * 7; };
  const std::string bytes = dumps(lambda);
  EXPECT_EQ(bytes.size(), kHeader);  // no state at all
  EXPECT_EQ(loads<decltype(lambda)>(bytes)(6), 42);
}

TEST(Pickle, TargetWithArgumentsRoundTrip) {
  // What a spawned child receives: the callable and its arguments in one tuple.
  auto lambda = [](const std::string& s, int n) { return s.size() * static_cast<std::size_t>(n); };
  using Bound = std::tuple<decltype(lambda), std::string, int>;
  auto bound = loads<Bound>(dumps(Bound(lambda, "abc", 4)));
  EXPECT_EQ(std::apply([](auto& f, auto&... args) { return f(args...); }, bound), 12u);

  using BoundObject = std::tuple<Multiplier, Negate, int (*)(int), int>;
  auto objects = loads<BoundObject>(dumps(BoundObject(Multiplier{6}, Negate{}, &triple, 7)));
  EXPECT_EQ(std::get<0>(objects)(std::get<3>(objects)), 42);
  EXPECT_EQ(std::get<1>(objects)(42), -42);
  EXPECT_EQ(std::get<2>(objects)(2), 6);
}

// A comparator that pickles while a map is being loaded: the thread's shared archives
// must not be handed out twice.
struct PicklingLess {
  bool operator()(int a, int b) const { return loads<int>(dumps(a)) < loads<int>(dumps(b)); }
};

TEST(Pickle, ReentrantPicklingFromAComparator) {
  const std::map<int, std::string, PicklingLess> map{{3, "c"}, {1, "a"}, {2, "b"}};
  EXPECT_EQ(round_trip(map), map);
}

TEST(Pickle, ThreadsPickleIndependently) {
  std::vector<std::thread> threads;
  std::atomic<int> failures{0};
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([t, &failures] {
      for (int i = 0; i < 20000; ++i) {
        auto value = std::make_tuple(t, i, std::to_string(i), std::vector<int>(i % 7, t));
        if (loads<decltype(value)>(dumps(value)) != value) ++failures;
      }
    });
  }
  for (auto& thread : threads) thread.join();
  EXPECT_EQ(failures.load(), 0);
}

// ---- dump() and exceptions -------------------------------------------------------------

TEST(Pickle, DumpAppends) {
  std::string out = "prefix";
  dump(1, out);
  const std::size_t first_end = out.size();
  dump(std::string("two"), out);
  EXPECT_EQ(out.substr(0, 6), "prefix");
  EXPECT_EQ(loads<int>(std::string_view(out).substr(6, first_end - 6)), 1);
  EXPECT_EQ(loads<std::string>(std::string_view(out).substr(first_end)), "two");
}

TEST(Pickle, SaveExceptionPropagatesAndDumpRollsBack) {
  std::string out = "kept";
  EXPECT_THROW(dump(std::make_tuple(1, ThrowsOnSave{}), out), std::domain_error);
  EXPECT_EQ(out, "kept");
  EXPECT_THROW((void)dumps(ThrowsOnSave{}), std::domain_error);
}

TEST(Pickle, LoadExceptionOfUserTypePropagates) {
  const std::string bytes = dumps(SplitSaveLoad{"refuse"});
  EXPECT_THROW((void)loads<SplitSaveLoad>(bytes), std::domain_error);
}

// ---- Bad bytes -------------------------------------------------------------------------

using Nested = std::tuple<std::map<std::string, std::vector<int>>, std::optional<std::string>,
                          std::variant<int, std::string>, std::list<double>, Plain, bool>;

Nested sample_nested() {
  return Nested{{{"alpha", {1, 2, 3}}, {"beta", {}}},
                std::string("opt"),
                std::string("variant"),
                {1.5, 2.5},
                Plain{9, 9.5, {'w', 'x', 'y', 'z'}},
                true};
}

TEST(Pickle, EmptyInputThrows) {
  const std::string message = unpickling_error([] { (void)loads<int>(""); });
  EXPECT_TRUE(contains(message, "truncated")) << message;
  unpickling_error([] { (void)loads<std::string>(std::string_view()); });
}

TEST(Pickle, EveryTruncationThrows) {
  const std::string bytes = dumps(sample_nested());
  ASSERT_GT(bytes.size(), 50u);
  for (std::size_t size = 0; size < bytes.size(); ++size) {
    SCOPED_TRACE("prefix of " + std::to_string(size) + " bytes");
    unpickling_error([&] { (void)loads<Nested>(std::string_view(bytes).substr(0, size)); });
  }
  EXPECT_EQ(loads<Nested>(bytes), sample_nested());
}

TEST(Pickle, FlippedHeaderByteThrows) {
  const std::string good = dumps(sample_nested());
  for (std::size_t i = 0; i < kHeader; ++i) {
    for (unsigned char mask : {0x01, 0x80, 0xFF}) {
      std::string bad = good;
      bad[i] = static_cast<char>(bad[i] ^ mask);
      SCOPED_TRACE("byte " + std::to_string(i) + " ^ " + std::to_string(mask));
      unpickling_error([&] { (void)loads<Nested>(bad); });
    }
  }
  std::string bad_magic = good;
  bad_magic[0] = 'x';
  EXPECT_TRUE(contains(unpickling_error([&] { (void)loads<Nested>(bad_magic); }), "not a pickle"));
  std::string bad_version = good;
  bad_version[2] = 99;
  EXPECT_TRUE(contains(unpickling_error([&] { (void)loads<Nested>(bad_version); }), "version"));
}

TEST(Pickle, WrongTypeThrows) {
  const std::string message = unpickling_error([] { (void)loads<std::string>(dumps(42)); });
  EXPECT_TRUE(contains(message, "another type")) << message;
  unpickling_error([] { (void)loads<unsigned>(dumps(42)); });
  unpickling_error([] { (void)loads<long>(dumps(42)); });
  unpickling_error([] { (void)loads<std::vector<long>>(dumps(std::vector<int>{1})); });
  unpickling_error([] { (void)loads<Color>(dumps(std::uint8_t{1})); });
  unpickling_error([] { (void)loads<Nested>(dumps(std::string("not nested"))); });
}

TEST(Pickle, HugeLengthPrefixThrowsWithoutAllocating) {
  // The size check runs before any resize: the message is the guard's ("claims"), not
  // a truncation found after allocating. The modest count comes first so that a
  // missing guard fails here instead of exhausting memory on the huge ones.
  for (std::uint64_t count : {std::uint64_t{1} << 20, std::uint64_t{1} << 60, ~std::uint64_t{0}}) {
    SCOPED_TRACE("count " + std::to_string(count));
    const std::string body = u64_bytes(count) + "abcd";
    std::string message = unpickling_error(
        [&] { (void)loads<std::vector<int>>(with_header_of(std::vector<int>{}, body)); });
    ASSERT_TRUE(contains(message, "claims")) << message;
    message =
        unpickling_error([&] { (void)loads<std::string>(with_header_of(std::string(), body)); });
    ASSERT_TRUE(contains(message, "claims")) << message;
    message = unpickling_error([&] {
      (void)loads<std::list<std::string>>(with_header_of(std::list<std::string>{}, body));
    });
    ASSERT_TRUE(contains(message, "claims")) << message;
    message = unpickling_error(
        [&] { (void)loads<std::map<int, int>>(with_header_of(std::map<int, int>{}, body)); });
    ASSERT_TRUE(contains(message, "claims")) << message;
  }
}

TEST(Pickle, TrailingBytesThrow) {
  const std::string message = unpickling_error([] { (void)loads<int>(dumps(42) + "x"); });
  EXPECT_TRUE(contains(message, "unexpected bytes")) << message;
  unpickling_error([] { (void)loads<Nested>(dumps(sample_nested()) + std::string(1, '\0')); });
  // Two pickles back to back are not one pickle.
  unpickling_error([] { (void)loads<int>(dumps(1) + dumps(2)); });
}

TEST(Pickle, InvalidVariantIndexThrows) {
  using Variant = std::variant<int, std::string>;
  const std::string good = dumps(Variant(5));
  ASSERT_EQ(good.size(), kHeader + 4 + 4);  // int32 index, then the int
  for (std::int32_t index : {2, 100, -1, INT32_MIN}) {
    std::string bad = good;
    std::memcpy(bad.data() + kHeader, &index, sizeof index);
    SCOPED_TRACE("index " + std::to_string(index));
    unpickling_error([&] { (void)loads<Variant>(bad); });
  }
}

TEST(Pickle, InvalidBoolAndOptionalFlagThrow) {
  const std::string good = dumps(std::optional<int>(5));
  ASSERT_EQ(good.size(), kHeader + 1 + 4);  // "empty" flag, then the int
  std::string bad = good;
  bad[kHeader] = 2;
  EXPECT_TRUE(contains(unpickling_error([&] { (void)loads<std::optional<int>>(bad); }), "bool"));
  std::string bad_bool = dumps(true);
  bad_bool[kHeader] = 7;
  unpickling_error([&] { (void)loads<bool>(bad_bool); });
  std::string bad_bits = dumps(std::vector<bool>{true, false});
  bad_bits.back() = 3;
  unpickling_error([&] { (void)loads<std::vector<bool>>(bad_bits); });
  std::string bad_array = dumps(std::array<bool, 2>{true, false});
  bad_array.back() = static_cast<char>(0xFF);
  unpickling_error([&] { (void)loads<std::array<bool, 2>>(bad_array); });
}

TEST(Pickle, CorruptFunctionPointerThrows) {
  using Function = int (*)(int);
  const std::string good = dumps(Function(&triple));
  // Body: id size (8 bytes), id, offset (8 bytes).
  std::string bogus_id = good;
  bogus_id[kHeader + 8] = bogus_id[kHeader + 8] == 'f' ? 'e' : 'f';
  std::string message = unpickling_error([&] { (void)loads<Function>(bogus_id); });
  EXPECT_TRUE(contains(message, "different binary")) << message;

  std::string bad_offset = good;
  const std::uint64_t outside = std::uint64_t{1} << 50;
  std::memcpy(bad_offset.data() + bad_offset.size() - 8, &outside, 8);
  message = unpickling_error([&] { (void)loads<Function>(bad_offset); });
  EXPECT_TRUE(contains(message, "outside the code")) << message;

  std::string huge_id = good;
  const std::uint64_t size = std::uint64_t{1} << 40;
  std::memcpy(huge_id.data() + kHeader, &size, 8);
  unpickling_error([&] { (void)loads<Function>(huge_id); });
}

TEST(Pickle, SequencesOfEmptyElementsRoundTrip) {
  // Each element of an empty type takes one byte, so the allocation guard (a range claims
  // at most as many elements as bytes are left) still holds.
  EXPECT_EQ(round_trip(std::vector<std::monostate>(3)).size(), 3u);
  EXPECT_EQ(round_trip(std::vector<std::monostate>{}).size(), 0u);
  EXPECT_EQ(round_trip(std::deque<std::monostate>(2)).size(), 2u);
  auto lambda = [] {};
  using Lambdas = std::vector<decltype(lambda)>;
  EXPECT_EQ(round_trip(Lambdas(1)).size(), 1u);
  EXPECT_EQ(round_trip(std::list<decltype(lambda)>(4)).size(), 4u);
  using WithTail = std::tuple<Lambdas, int>;
  const auto loaded = loads<WithTail>(dumps(WithTail(Lambdas(4), 1)));
  EXPECT_EQ(std::get<0>(loaded).size(), 4u);
  EXPECT_EQ(std::get<1>(loaded), 1);
  EXPECT_EQ(dumps(std::vector<std::monostate>(5)).size(), kHeader + 8 + 5);
  // A marker other than 0, and a count beyond the bytes left, are corrupt.
  std::string bytes = dumps(std::vector<std::monostate>(2));
  bytes.back() = 7;
  unpickling_error([&] { (void)loads<std::vector<std::monostate>>(bytes); });
  bytes = dumps(std::vector<std::monostate>(2));
  bytes.pop_back();
  unpickling_error([&] { (void)loads<std::vector<std::monostate>>(bytes); });
}

TEST(Pickle, RandomCorruptionNeverCrashes) {
  // Every mutation either still loads (it hit a value byte) or throws UnpicklingError;
  // anything else (a crash, a sanitizer report, another exception) fails.
  const std::string good = dumps(sample_nested());
  std::mt19937 random(12345);
  int loaded = 0;
  int refused = 0;
  for (int round = 0; round < 3000; ++round) {
    std::string bad = good;
    const int edits = 1 + static_cast<int>(random() % 4);
    for (int e = 0; e < edits; ++e) {
      const std::size_t at = kHeader + random() % (bad.size() - kHeader);
      switch (random() % 3) {
        case 0:
          bad[at] = static_cast<char>(random());
          break;
        case 1:
          bad.erase(at, 1 + random() % 4);
          break;
        default:
          bad.insert(at, 1 + random() % 4, static_cast<char>(random()));
          break;
      }
      if (bad.size() <= kHeader) break;
    }
    try {
      (void)loads<Nested>(bad);
      ++loaded;
    } catch (const mp::UnpicklingError&) {
      ++refused;
    }
  }
  EXPECT_GT(refused, 0);
  EXPECT_EQ(loaded + refused, 3000);
}

// ---- Nesting depth ---------------------------------------------------------------------

// A recursive user type: each level is a vector holding the next.
struct Tree {
  std::vector<Tree> children;
  template <class Archive>
  void serialize(Archive& ar) {
    ar(children);
  }
};

// A chain `depth` levels deep, built and torn down without recursion (the destructor of
// a deep chain would itself overflow the stack).
Tree tree_chain(std::size_t depth) {
  Tree node;
  for (std::size_t i = 0; i < depth; ++i) {
    Tree parent;
    parent.children.push_back(std::move(node));
    node = std::move(parent);
  }
  return node;
}
void dismantle(Tree& tree) {
  std::vector<Tree> pending = std::move(tree.children);
  while (!pending.empty()) {
    std::vector<Tree> next = std::move(pending.back().children);
    pending = std::move(next);
  }
}
std::size_t chain_depth(const Tree& tree) {
  std::size_t depth = 0;
  for (const Tree* node = &tree; !node->children.empty(); node = &node->children.front()) {
    EXPECT_EQ(node->children.size(), 1u);
    ++depth;
  }
  return depth;
}

// The pickle of tree_chain(depth), written directly: a one-element size per level, then
// the innermost empty vector.
std::string tree_chain_pickle(std::size_t depth) {
  std::string body;
  body.reserve((depth + 1) * 8);
  for (std::size_t i = 0; i < depth; ++i) body += u64_bytes(1);
  body += u64_bytes(0);
  return with_header_of(Tree{}, body);
}

TEST(PickleDepth, OrdinaryDepthRoundTrips) {
  Tree chain = tree_chain(1000);
  const std::string bytes = dumps(chain);
  EXPECT_EQ(bytes, tree_chain_pickle(1000));
  Tree loaded = loads<Tree>(bytes);
  EXPECT_EQ(chain_depth(loaded), 1000u);
  dismantle(loaded);
  dismantle(chain);
}

TEST(PickleDepth, LoadingAHugeDepthThrowsUnpicklingError) {
  for (std::size_t depth : {std::size_t{20000}, std::size_t{200000}}) {
    const std::string bytes = tree_chain_pickle(depth);
    const std::string message = unpickling_error([&] {
      Tree loaded = loads<Tree>(bytes);
      dismantle(loaded);
    });
    EXPECT_TRUE(contains(message, "levels deep")) << message;
  }
  // The archive is usable afterwards.
  Tree loaded = loads<Tree>(tree_chain_pickle(10));
  EXPECT_EQ(chain_depth(loaded), 10u);
}

TEST(PickleDepth, DumpingAHugeDepthThrowsPicklingError) {
  Tree chain = tree_chain(200000);
  std::string out = "kept";
  try {
    dump(chain, out);
    ADD_FAILURE() << "dump of a 200000-deep value succeeded";
  } catch (const mp::PicklingError& e) {
    EXPECT_TRUE(contains(e.what(), "levels deep")) << e.what();
  }
  EXPECT_EQ(out, "kept");
  dismantle(chain);
  EXPECT_EQ(dumps(tree_chain(3)), tree_chain_pickle(3));
}

// ---- Code references -------------------------------------------------------------------

TEST(CodeRef, LocateAndResolveRoundTrip) {
  const void* address = reinterpret_cast<const void*>(&triple);
  const mp::detail::code_ref ref = mp::detail::locate_code(address);
  EXPECT_EQ(ref.module_id, mp::detail::main_module_id());
  EXPECT_EQ(mp::detail::resolve_code(ref), address);
  // Offsets are relative to the module: two functions of the binary differ by their
  // distance in memory.
  const auto other = mp::detail::locate_code(reinterpret_cast<const void*>(&add));
  EXPECT_EQ(other.module_id, ref.module_id);
  EXPECT_EQ(static_cast<std::int64_t>(other.offset - ref.offset),
            reinterpret_cast<const char*>(&add) - reinterpret_cast<const char*>(&triple));
}

TEST(CodeRef, ModuleIdNamesBuildIdAndFile) {
  const std::string& id = mp::detail::main_module_id();
  const std::size_t colon = id.find(':');
  ASSERT_NE(colon, std::string::npos) << id;
  EXPECT_GE(colon, 16u) << id;  // a build id (usually 40 hex digits) or h + 16 hex digits
  char path[PATH_MAX] = {};
  ASSERT_GT(::readlink("/proc/self/exe", path, sizeof path - 1), 0);
  const std::string_view exe(path);
  EXPECT_EQ(id.substr(colon + 1), exe.substr(exe.rfind('/') + 1));

  const auto library =
      mp::detail::locate_code(reinterpret_cast<const void*>(static_cast<int (*)(int)>(&::abs)));
  EXPECT_NE(library.module_id, id);
  EXPECT_TRUE(contains(library.module_id, "libc")) << library.module_id;
}

TEST(CodeRef, DataAddressIsNotCode) {
  static int data = 0;
  int local = 0;
  EXPECT_THROW((void)mp::detail::locate_code(&data), std::invalid_argument);
  EXPECT_THROW((void)mp::detail::locate_code(&local), std::invalid_argument);
  EXPECT_THROW((void)mp::detail::locate_code(nullptr), std::invalid_argument);
}

TEST(CodeRef, BogusModuleIdThrowsUnpicklingError) {
  const mp::detail::code_ref bogus{"0123456789abcdef0123456789abcdef01234567:not-loaded.so", 16};
  try {
    (void)mp::detail::resolve_code(bogus);
    FAIL() << "resolve_code accepted a module that is not loaded";
  } catch (const mp::UnpicklingError& e) {
    EXPECT_TRUE(contains(e.what(), "different binary")) << e.what();
    EXPECT_TRUE(contains(e.what(), "not-loaded.so")) << e.what();
  }
  // Repeated misses stay cheap and keep failing the same way.
  for (int i = 0; i < 100; ++i)
    EXPECT_THROW((void)mp::detail::resolve_code(bogus), mp::UnpicklingError);
  const mp::detail::code_ref outside{mp::detail::main_module_id(), std::uint64_t{1} << 50};
  EXPECT_THROW((void)mp::detail::resolve_code(outside), mp::UnpicklingError);
}

// What the parent pickles for the child: a function, a lambda and a function object.
constexpr auto kPlus100 = [](int x) { return x + 100; };
using ChildPayload = std::tuple<int (*)(int), std::remove_const_t<decltype(kPlus100)>, Multiplier>;

// The child half of FunctionPointerCrossesIntoReexecutedBinary: loads what the parent
// pickled (from stdin), calls it and prints the results.
TEST(PickleChild, LoadsFromStdin) {
  if (!std::getenv("MP_PICKLE_TEST_CHILD"))
    GTEST_SKIP() << "helper run by CodeRef.FunctionPointerCrossesIntoReexecutedBinary";
  const std::string input{std::istreambuf_iterator<char>(std::cin),
                          std::istreambuf_iterator<char>()};
  const auto [function, lambda, multiplier] = loads<ChildPayload>(input);
  std::cout << "\nCHILD function=" << function(14) << " lambda=" << lambda(1)
            << " multiplier=" << multiplier(7) << " module=" << mp::detail::main_module_id()
            << "\n";
}

TEST(CodeRef, FunctionPointerCrossesIntoReexecutedBinary) {
  // A fresh exec of this binary (its own load address under ASLR), as spawn does.
  char path[PATH_MAX] = {};
  ASSERT_GT(::readlink("/proc/self/exe", path, sizeof path - 1), 0);
  const std::string bytes = dumps(ChildPayload(&triple, kPlus100, Multiplier{6}));
  const mp_test::CommandResult result = mp_test::run_command(
      {"/usr/bin/env", "MP_PICKLE_TEST_CHILD=1", path, "--gtest_filter=PickleChild.LoadsFromStdin"},
      bytes);
  ASSERT_EQ(result.exit_status, 0) << result.out << result.err;
  EXPECT_TRUE(contains(result.out, "CHILD function=42 lambda=101 multiplier=42 module=" +
                                       mp::detail::main_module_id() + "\n"))
      << result.out << result.err;
}

}  // namespace

namespace pickle_other_tu {
std::string vector_of_long();
std::string map_of_string_to_long();
std::uint32_t vector_of_long_fingerprint();
}  // namespace pickle_other_tu

// GCC spells a type's default template arguments in __PRETTY_FUNCTION__ or not,
// depending on where the type was first named in the translation unit; a fingerprint
// taken from that spelling made loads<std::vector<long>> refuse a pickle of the very
// same type written by another .cpp file of the same program.
TEST(PickleAcrossUnits, FingerprintsDoNotDependOnHowATypeWasFirstSpelled) {
  EXPECT_EQ(pickle_other_tu::vector_of_long_fingerprint(),
            mp::detail::type_fingerprint<std::vector<long>>);
  EXPECT_EQ(mp::pickle::loads<std::vector<long>>(pickle_other_tu::vector_of_long()),
            (std::vector<long>{7, 7}));
  EXPECT_EQ(
      (mp::pickle::loads<std::map<std::string, long>>(pickle_other_tu::map_of_string_to_long())),
      (std::map<std::string, long>{{"seven", 7}}));
}

// ---- Type identity: one spelling for both compilers, internal linkage told apart -------

namespace type_identity {

struct StringSink {
  std::string text;
  void put(char c) { text += c; }
};

std::string canonical(std::string_view spelling) {
  StringSink sink;
  mp::detail::canonicalize_type_name(spelling, sink);
  return sink.text;
}

template <class T>
std::string canonical_name() {
  return canonical(mp::detail::type_name<T>());
}

namespace app {
struct Msg {};
enum class Color : int { red, green };
template <auto V>
struct Value {};
}  // namespace app

}  // namespace type_identity

// Both compilers' spellings of one type must give one canonical spelling, and so one
// fingerprint: a library built by g++ and a program built by clang++ exchange pickles
// (Pool's task trampolines are pickled by the library and loaded by the program's code).
// The GCC and Clang columns are what g++ 12 and clang++ 14 print in __PRETTY_FUNCTION__.
TEST(TypeIdentity, GccAndClangSpellingsHaveOneCanonicalForm) {
  struct Case {
    std::string_view gcc, clang, canonical;
  };
  const Case cases[] = {
      {"long int", "long", "long"},
      {"long unsigned int", "unsigned long", "unsigned long"},
      {"long long int", "long long", "long long"},
      {"long long unsigned int", "unsigned long long", "unsigned long long"},
      {"short int", "short", "short"},
      {"short unsigned int", "unsigned short", "unsigned short"},
      {"unsigned int", "unsigned int", "unsigned int"},
      {"signed char", "signed char", "signed char"},
      {"unsigned char", "unsigned char", "unsigned char"},
      {"long double", "long double", "long double"},
      {"__int128 unsigned", "unsigned __int128", "unsigned __int128"},
      {"std::__cxx11::basic_string<char>", "std::basic_string<char>", "std::basic_string<char>"},
      {"std::vector<std::__cxx11::basic_string<char> >", "std::vector<std::basic_string<char>>",
       "std::vector<std::basic_string<char>>"},
      {"std::vector<std::vector<long int> >", "std::vector<std::vector<long>>",
       "std::vector<std::vector<long>>"},
      {"std::vector<long int, std::allocator<long int> >", "std::vector<long>",
       "std::vector<long>"},
      {"std::map<std::__cxx11::basic_string<char>, long int>",
       "std::map<std::basic_string<char>, long>", "std::map<std::basic_string<char>,long>"},
      {"std::tuple<int, const char*, std::__cxx11::basic_string<char, std::char_traits<char>, "
       "std::allocator<char> >&>",
       "std::tuple<int, const char *, std::basic_string<char> &>",
       "std::tuple<int,const char*,std::basic_string<char>&>"},
      {"std::chrono::time_point<std::chrono::_V2::system_clock, std::chrono::duration<long int, "
       "std::ratio<1, 1000000000> > >",
       "std::chrono::time_point<std::chrono::system_clock, std::chrono::duration<long, "
       "std::ratio<1, 1000000000>>>",
       "std::chrono::time_point<std::chrono::system_clock,std::chrono::duration<long,std::ratio<"
       "1,1000000000>>>"},
      {"void (*)(std::basic_string_view<char>, std::__cxx11::basic_string<char>&)",
       "void (*)(std::basic_string_view<char>, std::basic_string<char> &)",
       "void(*)(std::basic_string_view<char>,std::basic_string<char>&)"},
      {"int (*)(const int&, int&&)", "int (*)(const int &, int &&)", "int(*)(const int&,int&&)"},
      {"int* const*", "int *const *", "int*const*"},
      {"const volatile int*", "const volatile int *", "const volatile int*"},
      {"int [3]", "int[3]", "int[3]"},
      {"void (app::Msg::*)(int) const", "void (app::Msg::*)(int) const",
       "void(app::Msg::*)(int)const"},
      {"std::function<int(long int)>", "std::function<int (long)>", "std::function<int(long)>"},
      {"app::Pack<int, long int, app::Pack<> >", "app::Pack<int, long, app::Pack<>>",
       "app::Pack<int,long,app::Pack<>>"},
      {"app::V1<5>", "app::V1<5UL>", "app::V1<5>"},
      {"app::Box<app::Msg, -3>", "app::Box<app::Msg, -3>", "app::Box<app::Msg,-3>"},
      {"{anonymous}::Anon", "(anonymous namespace)::Anon", "(anonymous namespace)::Anon"},
      {"std::vector<{anonymous}::Anon>", "std::vector<(anonymous namespace)::Anon>",
       "std::vector<(anonymous namespace)::Anon>"},
  };
  for (const Case& c : cases) {
    EXPECT_EQ(type_identity::canonical(c.gcc), c.canonical) << "GCC: " << c.gcc;
    EXPECT_EQ(type_identity::canonical(c.clang), c.canonical) << "Clang: " << c.clang;
    EXPECT_EQ(mp::detail::canonical_fingerprint(c.gcc), mp::detail::canonical_fingerprint(c.clang))
        << c.canonical;
  }
}

// What this compiler prints for real types reaches the same canonical forms (run by the
// g++ and by the clang++ build).
TEST(TypeIdentity, ThisCompilersSpellingsAreCanonical) {
  using type_identity::canonical_name;
  namespace app = type_identity::app;
  EXPECT_EQ(canonical_name<long>(), "long");
  EXPECT_EQ(canonical_name<unsigned long>(), "unsigned long");
  EXPECT_EQ(canonical_name<long long>(), "long long");
  EXPECT_EQ(canonical_name<unsigned long long>(), "unsigned long long");
  EXPECT_EQ(canonical_name<short>(), "short");
  EXPECT_EQ(canonical_name<unsigned short>(), "unsigned short");
  EXPECT_EQ(canonical_name<unsigned>(), "unsigned int");
  EXPECT_EQ(canonical_name<std::string>(), "std::basic_string<char>");
  EXPECT_EQ(canonical_name<std::vector<std::string>>(), "std::vector<std::basic_string<char>>");
  EXPECT_EQ((canonical_name<std::map<std::string, long>>()),
            "std::map<std::basic_string<char>,long>");
  EXPECT_EQ((canonical_name<std::unordered_map<int, std::string>>()),
            "std::unordered_map<int,std::basic_string<char>>");
  EXPECT_EQ((canonical_name<std::tuple<int, const char*, std::string&>>()),
            "std::tuple<int,const char*,std::basic_string<char>&>");
  EXPECT_EQ((canonical_name<std::variant<int, std::string>>()),
            "std::variant<int,std::basic_string<char>>");
  EXPECT_EQ(canonical_name<std::optional<long>>(), "std::optional<long>");
  EXPECT_EQ(canonical_name<std::chrono::nanoseconds>(),
            "std::chrono::duration<long,std::ratio<1,1000000000>>");
  EXPECT_EQ(canonical_name<std::chrono::system_clock::time_point>(),
            "std::chrono::time_point<std::chrono::system_clock,std::chrono::duration<long,std::"
            "ratio<1,1000000000>>>");
  EXPECT_EQ((canonical_name<std::array<long, 3>>()), "std::array<long,3>");
  EXPECT_EQ((canonical_name<void (*)(std::string_view, std::string&)>()),
            "void(*)(std::basic_string_view<char>,std::basic_string<char>&)");
  EXPECT_EQ((canonical_name<int (*)(const int&, int&&)>()), "int(*)(const int&,int&&)");
  EXPECT_EQ(canonical_name<int* const*>(), "int*const*");
  EXPECT_EQ(canonical_name<int[3]>(), "int[3]");
  EXPECT_EQ(canonical_name<void (app::Msg::*)(int) const>(),
            "void(type_identity::app::Msg::*)(int)const");
  EXPECT_EQ(canonical_name<app::Value<5UL>>(), "type_identity::app::Value<5>");
  EXPECT_EQ(canonical_name<app::Value<app::Color::green>>(),
            "type_identity::app::Value<type_identity::app::Color::green>");
  EXPECT_EQ(canonical_name<std::vector<std::vector<long>>>(), "std::vector<std::vector<long>>");
}

// Which types a name identifies, and which need an address (has_address_identity).
TEST(TypeIdentity, NamesThatDoNotIdentifyATypeAreFlagged) {
  namespace app = type_identity::app;
  struct LocalClass {
    int x;
  };
  const auto lambda = [](int) {};
  EXPECT_FALSE(mp::detail::has_address_identity<int>);
  EXPECT_FALSE(mp::detail::has_address_identity<std::string>);
  EXPECT_FALSE((mp::detail::has_address_identity<std::map<std::string, long long>>));
  EXPECT_FALSE(mp::detail::has_address_identity<void (*)(std::string_view, std::string&)>);
  EXPECT_FALSE(mp::detail::has_address_identity<app::Msg>);
  EXPECT_FALSE(mp::detail::has_address_identity<std::vector<app::Msg>>);
  EXPECT_FALSE(mp::detail::has_address_identity<std::chrono::system_clock::time_point>);
  EXPECT_TRUE(mp::detail::has_address_identity<LocalClass>);
  EXPECT_TRUE(mp::detail::has_address_identity<std::vector<LocalClass>>);
  EXPECT_TRUE(mp::detail::has_address_identity<decltype(lambda)>);
  EXPECT_TRUE(mp::detail::has_address_identity<ChildPayload>);  // anonymous namespace
  EXPECT_TRUE((mp::detail::has_address_identity<std::pair<int, ChildPayload>>));
}

namespace {

// pickle_other_tu.cpp has its own Msg, { double x; double y; }.
struct Msg {
  long a = 0;
  long b = 0;
};

void exit_zero_if_msg_intact(Msg msg) { std::exit(msg.a == 7 && msg.b == -8 ? 0 : 3); }

}  // namespace

namespace pickle_other_tu {
std::string dumps_anonymous_msg();
bool loads_anonymous_msg(std::string_view bytes);
std::optional<int> anonymous_msg_in_child(const std::string& method);
}  // namespace pickle_other_tu

// Two .cpp files each define a `Msg` in an anonymous namespace: two types with one name.
// A pickle of one must never load as the other (it would yield garbage).
TEST(TypeIdentity, AnonymousNamespaceTypesOfTwoFilesDoNotLoadAsEachOther) {
  EXPECT_THROW(mp::pickle::loads<Msg>(pickle_other_tu::dumps_anonymous_msg()), mp::UnpicklingError);
  EXPECT_THROW(pickle_other_tu::loads_anonymous_msg(mp::pickle::dumps(Msg{7, -8})),
               mp::UnpicklingError);
  // Each still round-trips in its own file.
  EXPECT_TRUE(pickle_other_tu::loads_anonymous_msg(pickle_other_tu::dumps_anonymous_msg()));
  const Msg msg = mp::pickle::loads<Msg>(mp::pickle::dumps(Msg{7, -8}));
  EXPECT_EQ(msg.a, 7);
  EXPECT_EQ(msg.b, -8);
  // Containers of them too.
  EXPECT_THROW(mp::pickle::loads<std::vector<Msg>>(mp::pickle::dumps(std::vector<long>{7, -8})),
               mp::UnpicklingError);
  EXPECT_EQ(
      mp::pickle::loads<std::vector<Msg>>(mp::pickle::dumps(std::vector<Msg>{{7, -8}})).at(0).b,
      -8);
}

// The identity of an anonymous-namespace type is the same in a child, spawned (a fresh
// exec of the binary) or forked: both files' Msg reach their children intact.
class TypeIdentityInChild : public mp_test::StartMethodTest<> {};

TEST_P(TypeIdentityInChild, AnonymousNamespaceTypesOfTwoFilesRoundTrip) {
  mp::Process child = start(&exit_zero_if_msg_intact, Msg{7, -8});
  join_ok(child);
  EXPECT_EQ(pickle_other_tu::anonymous_msg_in_child(GetParam()), std::optional<int>(0));
}

INSTANTIATE_TEST_SUITE_P(StartMethods, TypeIdentityInChild,
                         ::testing::ValuesIn(mp_test::start_methods()), mp_test::method_name);
