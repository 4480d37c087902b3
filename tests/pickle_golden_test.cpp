// Golden bytes of mp::pickle for every kind of standard container and vocabulary type:
// the encoding is fixed (processes of one program built at different times, such as a
// fork server and its clients, must agree), so each pickle is compared with its bytes
// written out, header included, and loads back to the value.
#include <gtest/gtest.h>

#include <array>
#include <chrono>
#include <complex>
#include <deque>
#include <filesystem>
#include <list>
#include <map>
#include <mp/pickle.hpp>
#include <optional>
#include <set>
#include <string>
#include <tuple>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <variant>
#include <vector>

namespace {

std::string hex(const std::string& bytes) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string text;
  for (const char byte : bytes) {
    text += kDigits[static_cast<unsigned char>(byte) >> 4];
    text += kDigits[static_cast<unsigned char>(byte) & 15];
  }
  return text;
}

// The pickle of `value` is `expected` (hex), and loads back to `value`.
template <class T>
void expect_golden(const T& value, const char* expected) {
  const std::string bytes = mp::pickle::dumps(value);
  EXPECT_EQ(hex(bytes), expected);
  EXPECT_TRUE(mp::pickle::loads<T>(bytes) == value) << expected;
}

}  // namespace

TEST(PickleGolden, StandardContainersAndVocabularyTypesKeepTheirBytes) {
  expect_golden(std::string("ab"), "6d700100d662887202000000000000006162");
  expect_golden(std::u16string(u"ab"), "6d700100bae722df020000000000000061006200");
  expect_golden(std::vector<int>{1, 2}, "6d700100b6fc83f002000000000000000100000002000000");
  expect_golden(std::vector<std::string>{"a", ""},
                "6d700100ca5f4ba302000000000000000100000000000000610000000000000000");
  expect_golden(std::vector<bool>{true, false, true}, "6d7001008bf961c70300000000000000010001");
  expect_golden(std::array<int, 2>{3, 4}, "6d7001004a60c62a0300000004000000");
  expect_golden(std::array<bool, 2>{true, false}, "6d7001007b4d5aac0100");
  expect_golden(std::array<std::string, 2>{"x", "yz"},
                "6d7001008260d4160100000000000000780200000000000000797a");
  expect_golden(std::deque<int>{5, 6}, "6d700100430d20b802000000000000000500000006000000");
  expect_golden(std::deque<std::string>{"d"}, "6d7001004ff030b00100000000000000010000000000000064");
  expect_golden(std::list<int>{7, 8}, "6d700100f745688302000000000000000700000008000000");
  expect_golden(std::list<std::string>{"l", "m"},
                "6d700100e3570685020000000000000001000000000000006c01000000000000006d");
  expect_golden(
      std::map<int, std::string>{{1, "a"}, {2, "b"}},
      "6d700100da6b3abe02000000000000000100000001000000000000006102000000010000000000000062");
  expect_golden(std::multimap<int, int>{{1, 10}, {1, 11}},
                "6d7001003f6f5b350200000000000000010000000a000000010000000b000000");
  expect_golden(std::unordered_map<int, std::string>{{3, "c"}},
                "6d700100675cc625010000000000000003000000010000000000000063");
  expect_golden(std::unordered_multimap<int, int>{{4, 40}},
                "6d700100d886b48101000000000000000400000028000000");
  expect_golden(std::set<std::string>{"s", "t"},
                "6d700100b742ca7c0200000000000000010000000000000073010000000000000074");
  expect_golden(std::multiset<int>{2, 2, 1},
                "6d7001000ed1c2e80300000000000000010000000200000002000000");
  expect_golden(std::unordered_set<int>{9}, "6d7001004acdf484010000000000000009000000");
  expect_golden(std::unordered_multiset<int>{8}, "6d70010055e02a8b010000000000000008000000");
  expect_golden(std::pair<int, std::string>(1, "p"), "6d700100d4f0059701000000010000000000000070");
  expect_golden(std::tuple<int, std::string, double>(1, "t", 0.5),
                "6d70010065c8198201000000010000000000000074000000000000e03f");
  expect_golden(std::tuple<>(), "6d7001003e1c0756");
  expect_golden(std::optional<int>(), "6d700100e3aa76ca01");
  expect_golden(std::optional<std::string>("o"), "6d700100afee30200001000000000000006f");
  expect_golden(std::variant<std::monostate, int, std::string>(), "6d7001004c5256e900000000");
  expect_golden(std::variant<std::monostate, int, std::string>(5),
                "6d7001004c5256e90100000005000000");
  expect_golden(std::variant<std::monostate, int, std::string>("v"),
                "6d7001004c5256e902000000010000000000000076");
  expect_golden(std::monostate(), "6d700100ca843bc7");
  expect_golden(std::chrono::milliseconds(1500), "6d700100bdced778dc05000000000000");
  expect_golden(std::chrono::duration<double>(2.5), "6d700100b8a4a21b0000000000000440");
  expect_golden(std::chrono::system_clock::time_point(std::chrono::microseconds(123)),
                "6d7001003509791678e0010000000000");
  expect_golden(std::complex<double>(1.5, -2), "6d7001005726aa9d000000000000f83f00000000000000c0");
  expect_golden(std::complex<float>(1, 2), "6d700100ee92abec0000803f00000040");
  expect_golden(std::filesystem::path("/tmp/a b"),
                "6d7001005a4eb06a08000000000000002f746d702f612062");
  expect_golden(std::vector<std::monostate>(2), "6d7001004661456602000000000000000000");
  expect_golden(std::deque<std::monostate>(1), "6d700100e98bc4a3010000000000000000");
  expect_golden(std::list<std::monostate>(2), "6d700100bd6ef74b02000000000000000000");
  expect_golden(std::vector<std::filesystem::path>{"x", "y/z"},
                "6d7001009672ae1c02000000000000000100000000000000780300000000000000792f7a");
  expect_golden(
      std::map<std::string, std::vector<std::tuple<int, std::optional<std::string>,
                                                   std::variant<double, std::string>>>>{
          {"k", {{1, "one", 1.5}, {2, std::nullopt, std::string("s")}}}},
      "6d700100ff8f76a6010000000000000001000000000000006b020000000000000001000000000300000000000000"
      "6f6e6500000000000000000000f83f020000000101000000010000000000000073");
  expect_golden(std::vector<std::pair<std::string, std::deque<std::set<int>>>>{{"x", {{1, 2}, {}}}},
                "6d700100057b4726010000000000000001000000000000007802000000000000000200000000000000"
                "01000000020000000000000000000000");
  expect_golden(
      std::optional<std::vector<std::complex<double>>>(std::vector<std::complex<double>>{{1, 2}}),
      "6d700100fe32a3a1000100000000000000000000000000f03f0000000000000040");
}
