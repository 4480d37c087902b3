// mp::pickle::python against real CPython: C++ dumps -> Python loads, Python dumps at
// protocols 2 to 5 -> C++ loads, for every python3 on the machine; and hostile bytes.
#include <mp/connection.hpp>
#include <mp/python_pickle.hpp>

#include <gtest/gtest.h>

#include <glob.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmath>
#include <cstdint>
#include <functional>
#include <limits>
#include <map>
#include <optional>
#include <set>
#include <stdexcept>
#include <string>
#include <tuple>
#include <unordered_map>
#include <vector>

#include "test_util.hpp"

namespace {

namespace py = mp::pickle::python;
using py::Bytes;
using py::Object;

// /usr/bin/python3 and every other python3.X found (pyenv versions).
std::vector<std::string> pythons() {
  std::vector<std::string> found = {"/usr/bin/python3"};
  glob_t matches{};
  if (::glob("/root/.pyenv/versions/3.*/bin/python3", 0, nullptr, &matches) == 0) {
    for (std::size_t i = 0; i < matches.gl_pathc; ++i) found.emplace_back(matches.gl_pathv[i]);
  }
  ::globfree(&matches);
  return found;
}

std::string hex(std::string_view bytes) {
  static const char digits[] = "0123456789abcdef";
  std::string out;
  for (char c : bytes) {
    out.push_back(digits[static_cast<unsigned char>(c) >> 4]);
    out.push_back(digits[static_cast<unsigned char>(c) & 15]);
  }
  return out;
}

std::string unhex(std::string_view text) {
  std::string out;
  for (std::size_t i = 0; i + 1 < text.size(); i += 2)
    out.push_back(static_cast<char>(std::stoi(std::string(text.substr(i, 2)), nullptr, 16)));
  return out;
}

std::vector<std::string> lines(const std::string& text) {
  std::vector<std::string> out;
  std::size_t start = 0;
  while (start < text.size()) {
    std::size_t end = text.find('\n', start);
    if (end == std::string::npos) end = text.size();
    out.push_back(text.substr(start, end - start));
    start = end + 1;
  }
  return out;
}

// Reads lines "<pickle hex> <expected expression hex>" and prints "ok" or why not per line.
constexpr const char* kCheckScript = R"(
import math, pickle, sys
def same(a, b):
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        if math.isnan(a) or math.isnan(b):
            return math.isnan(a) and math.isnan(b)
        return a == b and math.copysign(1, a) == math.copysign(1, b)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict):
        return len(a) == len(b) and all(k in b and same(v, b[k]) for k, v in a.items())
    return a == b
for i, line in enumerate(sys.stdin):
    data, expr = line.split()
    expected = eval(bytes.fromhex(expr).decode('utf-8'))
    try:
        value = pickle.loads(bytes.fromhex(data))
    except Exception as e:
        print('FAIL %d: %r: loads raised %r' % (i, expected, e))
        continue
    print('ok' if same(value, expected) else 'FAIL %d: %r != %r' % (i, value, expected))
)";

struct DumpCase {
  std::string pickle;
  std::string python;  // the expression Python must load
};

template <class T>
DumpCase dump_case(const T& value, std::string python) {
  return {py::dumps(value), std::move(python)};
}

Object big_int(int shift, bool negative) {  // +-2**shift
  std::string bytes(shift / 8 + 1, '\0');
  bytes.back() = static_cast<char>(1 << (shift % 8));
  if (negative) {  // two's complement of 2**shift: the bits from `shift` up are all set
    bytes.back() = static_cast<char>(0xff << (shift % 8));
  }
  return Object::integer_from_bytes(bytes);
}

std::vector<DumpCase> dump_cases() {
  const double nan = std::numeric_limits<double>::quiet_NaN();
  const double inf = std::numeric_limits<double>::infinity();
  std::vector<DumpCase> cases = {
      dump_case(std::nullopt, "None"),
      dump_case(std::monostate{}, "None"),
      dump_case(true, "True"),
      dump_case(false, "False"),
      dump_case(0, "0"),
      dump_case(255, "255"),
      dump_case(256, "256"),
      dump_case(65535, "65535"),
      dump_case(65536, "65536"),
      dump_case(-1, "-1"),
      dump_case(std::numeric_limits<std::int32_t>::min(), "-2**31"),
      dump_case(std::numeric_limits<std::int32_t>::max(), "2**31-1"),
      dump_case(std::int64_t{1} << 31, "2**31"),
      dump_case(std::numeric_limits<std::int64_t>::min(), "-2**63"),
      dump_case(std::numeric_limits<std::int64_t>::max(), "2**63-1"),
      dump_case(std::numeric_limits<std::uint64_t>::max(), "2**64-1"),
      dump_case(std::uint64_t{1} << 63, "2**63"),
      dump_case(std::uint8_t{200}, "200"),
      dump_case(big_int(100, false), "2**100"),
      dump_case(big_int(100, true), "-2**100"),
      dump_case(big_int(4000, false), "2**4000"),  // LONG4
      dump_case(1.5, "1.5"),
      dump_case(1e300, "1e300"),
      dump_case(-0.0, "-0.0"),
      dump_case(nan, "float('nan')"),
      dump_case(inf, "float('inf')"),
      dump_case(-inf, "float('-inf')"),
      dump_case(std::string(), "''"),
      dump_case(std::string("h\xc3\xa9llo"), "'h\\xe9llo'"),
      dump_case(std::string("\xf0\x9f\x98\x80"), "'\\U0001F600'"),
      dump_case(std::string("a\0b", 3), "'a\\x00b'"),
      dump_case(std::string(300, 'x'), "'x' * 300"),
      dump_case(Bytes{}, "b''"),
      dump_case(Bytes{std::string("\0\xff\0", 3)}, "b'\\x00\\xff\\x00'"),
      dump_case(Bytes{std::string(300, '\0')}, "bytes(300)"),
      dump_case(std::vector<std::byte>{std::byte{1}, std::byte{0}}, "b'\\x01\\x00'"),
      dump_case(std::tuple<>{}, "()"),
      dump_case(std::tuple<int>{1}, "(1,)"),
      dump_case(std::pair<int, std::string>{1, "a"}, "(1, 'a')"),
      dump_case(std::tuple<int, int, int>{1, 2, 3}, "(1, 2, 3)"),
      dump_case(std::tuple<int, bool, double, std::string>{1, true, 2.5, "x"},
                "(1, True, 2.5, 'x')"),
      dump_case(std::vector<int>{}, "[]"),
      dump_case(std::vector<int>{1, 2, 3}, "[1, 2, 3]"),
      dump_case(std::vector<int>(2500, 7), "[7] * 2500"),
      dump_case(std::vector<std::vector<std::string>>{{}, {"a", "b"}}, "[[], ['a', 'b']]"),
      dump_case(std::map<int, std::string>{}, "{}"),
      dump_case(std::map<int, std::string>{{1, "a"}, {2, "b"}}, "{1: 'a', 2: 'b'}"),
      dump_case(std::map<std::tuple<int, int>, double>{{{1, 2}, 0.5}}, "{(1, 2): 0.5}"),
      dump_case(std::unordered_map<std::string, int>{{"k", 1}}, "{'k': 1}"),
      dump_case(std::set<int>{}, "set()"),
      dump_case(std::set<int>{1, 2, 3}, "{1, 2, 3}"),
      dump_case(std::optional<int>{}, "None"),
      dump_case(std::optional<int>{5}, "5"),
      dump_case(Object::frozenset({Object::integer(1)}), "frozenset({1})"),
      dump_case(Object::frozenset(), "frozenset()"),
      dump_case(Object::dict({{Object::integer(1), Object::str("int key")},
                              {Object::tuple({Object::integer(2), Object::str("t")}), Object()},
                              {Object::str("s"), Object::list({Object::boolean(false)})}}),
                "{1: 'int key', (2, 't'): None, 's': [False]}"),
      dump_case(
          std::map<std::string, std::vector<std::tuple<int, std::optional<double>>>>{
              {"a", {{1, std::nullopt}, {2, 0.25}}}},
          "{'a': [(1, None), (2, 0.25)]}"),
  };
  return cases;
}

TEST(PythonPickleTest, TypeNamesArePythons) {
  EXPECT_EQ(Object::none().type_name(), "NoneType");
  EXPECT_EQ(Object::boolean(true).type_name(), "bool");
  EXPECT_EQ(Object::integer(7).type_name(), "int");
  EXPECT_EQ(Object::floating(0.5).type_name(), "float");
  EXPECT_EQ(Object::str("s").type_name(), "str");
  EXPECT_EQ(Object::bytes("b").type_name(), "bytes");
  EXPECT_EQ(Object::list().type_name(), "list");
  EXPECT_EQ(Object::tuple().type_name(), "tuple");
  EXPECT_EQ(Object::dict().type_name(), "dict");
  EXPECT_EQ(Object::set().type_name(), "set");
  EXPECT_EQ(Object::frozenset().type_name(), "frozenset");
  try {
    (void)Object::list().as_bool();
    ADD_FAILURE() << "as_bool() of a list should throw";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("expected bool, holds list"), std::string::npos)
        << e.what();
  }
}

TEST(PythonPickleTest, CppDumpsPythonLoads) {
  const std::vector<DumpCase> cases = dump_cases();
  std::string input;
  for (const DumpCase& c : cases) input += hex(c.pickle) + " " + hex(c.python) + "\n";
  for (const std::string& python : pythons()) {
    SCOPED_TRACE(python);
    const auto result = mp_test::run_command({python, "-c", kCheckScript}, input);
    ASSERT_EQ(result.exit_status, 0) << result.err;
    const std::vector<std::string> verdicts = lines(result.out);
    ASSERT_EQ(verdicts.size(), cases.size()) << result.out << result.err;
    for (std::size_t i = 0; i < cases.size(); ++i)
      EXPECT_EQ(verdicts[i], "ok") << cases[i].python << " pickled as " << hex(cases[i].pickle);
  }
}

// Prints, for each expression on stdin (hex), its pickles at protocols 2 to 5 (hex, one
// line each).
constexpr const char* kDumpScript = R"(
import pickle, sys
for line in sys.stdin:
    value = eval(bytes.fromhex(line.strip()).decode('utf-8'))
    for protocol in (2, 3, 4, 5):
        if protocol > pickle.HIGHEST_PROTOCOL:
            print(pickle.dumps(value, 4).hex())
        else:
            print(pickle.dumps(value, protocol).hex())
)";

struct LoadCase {
  std::string python;
  std::function<void(const std::string& pickle)> check;
};

template <class T>
LoadCase expect_value(std::string python, T expected) {
  return {std::move(python),
          [expected](const std::string& pickle) { EXPECT_EQ(py::loads<T>(pickle), expected); }};
}

LoadCase expect_refused(std::string python, std::string message) {
  return {std::move(python), [message](const std::string& pickle) {
            try {
              py::loads(pickle);
              ADD_FAILURE() << "loaded";
            } catch (const mp::UnpicklingError& e) {
              EXPECT_NE(std::string(e.what()).find(message), std::string::npos) << e.what();
            }
          }};
}

std::vector<LoadCase> load_cases() {
  const auto x = [](std::int64_t v) { return Object::integer(v); };
  return {
      {"None",
       [](const std::string& pickle) { EXPECT_NO_THROW(py::loads<std::nullopt_t>(pickle)); }},
      {"0",
       [](const std::string& pickle) {
         EXPECT_THROW(py::loads<std::nullopt_t>(pickle), mp::UnpicklingError);
       }},
      expect_value("None", std::optional<int>{}),
      expect_value("7", std::optional<int>{7}),
      expect_value("True", true),
      expect_value("False", false),
      expect_value("0", 0),
      expect_value("-1", -1),
      expect_value("65536", 65536),
      expect_value("-2**31", std::numeric_limits<std::int32_t>::min()),
      expect_value("-2**63", std::numeric_limits<std::int64_t>::min()),
      expect_value("2**63-1", std::numeric_limits<std::int64_t>::max()),
      expect_value("2**64-1", std::numeric_limits<std::uint64_t>::max()),
      expect_value("2**63", std::uint64_t{1} << 63),
      {"2**100",
       [](const std::string& pickle) {
         const Object value = py::loads(pickle);
         EXPECT_EQ(value.int_decimal(), "1267650600228229401496703205376");
         EXPECT_EQ(value, big_int(100, false));
         EXPECT_FALSE(value.fits_int64());
       }},
      {"-2**100 - 1",
       [](const std::string& pickle) {
         EXPECT_EQ(py::loads(pickle).int_decimal(), "-1267650600228229401496703205377");
       }},
      {"-2**63",
       [](const std::string& pickle) {
         EXPECT_EQ(py::loads(pickle).int_decimal(), "-9223372036854775808");
       }},
      {"2**64",
       [](const std::string& pickle) {
         EXPECT_EQ(py::loads(pickle).int_decimal(), "18446744073709551616");
         EXPECT_THROW(py::loads<std::uint64_t>(pickle), mp::UnpicklingError);
       }},
      {"300",
       [](const std::string& pickle) {
         EXPECT_THROW(py::loads<std::uint8_t>(pickle), mp::UnpicklingError);
         EXPECT_EQ(py::loads<std::int16_t>(pickle), 300);
       }},
      {"-1",
       [](const std::string& pickle) {
         EXPECT_THROW(py::loads<unsigned>(pickle), mp::UnpicklingError);
       }},
      expect_value("1.5", 1.5),
      expect_value("3", 3.0),  // an int where a float is expected
      {"float('nan')",
       [](const std::string& pickle) { EXPECT_TRUE(std::isnan(py::loads<double>(pickle))); }},
      expect_value("float('-inf')", -std::numeric_limits<double>::infinity()),
      {"-0.0",
       [](const std::string& pickle) { EXPECT_TRUE(std::signbit(py::loads<double>(pickle))); }},
      expect_value("''", std::string()),
      expect_value("'h\\xe9llo \\U0001F600'", std::string("h\xc3\xa9llo \xf0\x9f\x98\x80")),
      expect_value("'\\u20ac' * 100",
                   [] {
                     std::string s;
                     for (int i = 0; i < 100; ++i) s += "\xe2\x82\xac";
                     return s;
                   }()),
      expect_value("b''", Bytes{}),
      expect_value("b'\\x00abc\\xff\\x00'", Bytes{std::string("\0abc\xff\0", 6)}),
      expect_value("bytes(range(256)) * 2",
                   [] {
                     Bytes b;
                     for (int r = 0; r < 2; ++r)
                       for (int i = 0; i < 256; ++i) b.data.push_back(static_cast<char>(i));
                     return b;
                   }()),
      expect_value("b'\\x01\\x02'", std::vector<std::byte>{std::byte{1}, std::byte{2}}),
      expect_value("()", std::tuple<>{}),
      expect_value("(1, 'a', 2.5)", std::tuple<int, std::string, double>{1, "a", 2.5}),
      expect_value("(1, 2, 3, 4, 5)", std::vector<int>{1, 2, 3, 4, 5}),
      expect_value("[]", std::vector<int>{}),
      expect_value("list(range(2500))",
                   [] {
                     std::vector<int> v(2500);
                     for (int i = 0; i < 2500; ++i) v[i] = i;
                     return v;
                   }()),
      expect_value("[[1], [], [2, 3]]", std::vector<std::vector<int>>{{1}, {}, {2, 3}}),
      expect_value("{}", std::map<std::string, int>{}),
      expect_value("{'a': 1, 'b': 2}", std::map<std::string, int>{{"a", 1}, {"b", 2}}),
      expect_value("{i: str(i) for i in range(1500)}",
                   [] {
                     std::unordered_map<int, std::string> m;
                     for (int i = 0; i < 1500; ++i) m[i] = std::to_string(i);
                     return m;
                   }()),
      expect_value("set()", std::set<int>{}),
      expect_value("{1, 2, 3}", std::set<int>{1, 2, 3}),
      expect_value("frozenset({'a', 'b'})", std::set<std::string>{"a", "b"}),
      {"frozenset({1})",
       [](const std::string& pickle) {
         EXPECT_EQ(py::loads(pickle), Object::frozenset({Object::integer(1)}));
       }},
      {"{1: 'a', (2, 3): b'b', 'k': [None, True, 1.0, {4}]}",
       [x](const std::string& pickle) {
         const Object expected = Object::dict(
             {{x(1), Object::str("a")},
              {Object::tuple({x(2), x(3)}), Object::bytes("b")},
              {Object::str("k"), Object::list({Object(), Object::boolean(true),
                                               Object::floating(1.0), Object::set({x(4)})})}});
         const Object value = py::loads(pickle);
         EXPECT_EQ(value, expected);
         ASSERT_NE(value.find(Object::tuple({x(2), x(3)})), nullptr);
         EXPECT_EQ(value.find(Object::tuple({x(2), x(3)}))->as_bytes(), "b");
       }},
      // Shared references (the memo): the second x must be the filled list.
      {"(lambda x: [x, x, (x,)])([1, 'two'])",
       [x](const std::string& pickle) {
         const Object shared = Object::list({x(1), Object::str("two")});
         EXPECT_EQ(py::loads(pickle), Object::list({shared, shared, Object::tuple({shared})}));
       }},
      {"(lambda s: {'a': s, 'b': s})('shared ' * 10)",
       [](const std::string& pickle) {
         const auto value = py::loads<std::map<std::string, std::string>>(pickle);
         EXPECT_EQ(value.at("a"), value.at("b"));
       }},
      // Wrong types name both sides.
      {"'text'",
       [](const std::string& pickle) {
         try {
           py::loads<std::vector<int>>(pickle);
           ADD_FAILURE() << "loaded";
         } catch (const mp::UnpicklingError& e) {
           const std::string what = e.what();
           EXPECT_NE(what.find("vector"), std::string::npos) << what;
           EXPECT_NE(what.find("got str"), std::string::npos) << what;
         }
         EXPECT_THROW(py::loads<int>(pickle), mp::UnpicklingError);
         EXPECT_THROW(py::loads<Bytes>(pickle), mp::UnpicklingError);
       }},
      {"(1, 2)",
       [](const std::string& pickle) {
         EXPECT_THROW((py::loads<std::tuple<int, int, int>>(pickle)), mp::UnpicklingError);
         EXPECT_THROW((py::loads<std::tuple<int, std::string>>(pickle)), mp::UnpicklingError);
       }},
      // Refused: globals that would run code, and self-reference.
      expect_refused("__import__('collections').OrderedDict()", "refusing global"),
      expect_refused("__import__('os').system", "refusing global"),
      expect_refused("__import__('fractions').Fraction(1, 3)", "refusing global"),
      expect_refused("(lambda l: (l.append(l), l)[1])([])", "contains itself"),
  };
}

TEST(PythonPickleTest, PythonDumpsCppLoads) {
  const std::vector<LoadCase> cases = load_cases();
  std::string input;
  for (const LoadCase& c : cases) input += hex(c.python) + "\n";
  for (const std::string& python : pythons()) {
    SCOPED_TRACE(python);
    const auto result = mp_test::run_command({python, "-c", kDumpScript}, input);
    ASSERT_EQ(result.exit_status, 0) << result.err;
    const std::vector<std::string> pickles = lines(result.out);
    ASSERT_EQ(pickles.size(), 4 * cases.size()) << result.err;
    for (std::size_t i = 0; i < cases.size(); ++i) {
      for (int protocol = 2; protocol <= 5; ++protocol) {
        const std::string pickle = unhex(pickles[4 * i + (protocol - 2)]);
        SCOPED_TRACE(cases[i].python + " at protocol " + std::to_string(protocol) + ": " +
                     hex(pickle));
        try {
          cases[i].check(pickle);
        } catch (const std::exception& e) {
          ADD_FAILURE() << "threw " << e.what();
        }
      }
    }
  }
}

// ---- hostile input, without Python ----

template <std::size_t N>
std::string raw(const char (&literal)[N]) {  // a literal with NULs inside
  return std::string(literal, N - 1);
}

void expect_unpickling_error(std::string_view bytes, const std::string& message = "") {
  try {
    py::loads(bytes);
    ADD_FAILURE() << "loaded " << hex(bytes);
  } catch (const mp::UnpicklingError& e) {
    EXPECT_NE(std::string(e.what()).find(message), std::string::npos) << e.what();
  }
}

TEST(PythonPickleTest, EveryTruncationIsAnError) {
  const std::string good = py::dumps(std::map<std::string, std::vector<std::tuple<int, Bytes>>>{
      {"key", {{1, Bytes{"x"}}, {70000, Bytes{}}}}, {"other", {}}});
  ASSERT_NO_THROW(py::loads(good));
  for (std::size_t size = 0; size < good.size(); ++size)
    expect_unpickling_error(std::string_view(good).substr(0, size), "");
  expect_unpickling_error(good + "N", "after STOP");
}

TEST(PythonPickleTest, HugeDeclaredLengthsAllocateNothing) {
  // BINUNICODE8 / BINBYTES8 / BYTEARRAY8 claiming 2^62 bytes, BINUNICODE claiming 4 GiB.
  for (char op : {'\x8d', '\x8e', '\x96'})
    expect_unpickling_error(
        std::string("\x80\x04") + op + std::string("\0\0\0\0\0\0\0\x40", 8) + "abc.", "truncated");
  expect_unpickling_error(std::string("\x80\x04X\xff\xff\xff\xff", 7) + "abc.", "truncated");
  expect_unpickling_error(std::string("\x80\x04\x8b\xff\xff\xff\x7f", 7) + "a.", "truncated");
  expect_unpickling_error(std::string("\x80\x04\x8b\xff\xff\xff\xff", 7) + "a.", "negative");
}

TEST(PythonPickleTest, DeepNestingIsBounded) {
  // 100000 nested lists (EMPTY_LIST x N, then APPEND x N-1) and tuples (TUPLE1 x N).
  const std::size_t n = 100000;
  expect_unpickling_error("\x80\x04" + std::string(n, ']') + std::string(n - 1, 'a') + ".",
                          "deeper");
  expect_unpickling_error("\x80\x04)" + std::string(n, '\x85') + ".", "deeper");
  // 999 levels load.
  EXPECT_NO_THROW(py::loads("\x80\x04)" + std::string(999, '\x85') + "."));
  // dumps refuses what loads would refuse.
  Object deep = Object::list();
  for (int i = 0; i < 2000; ++i) deep = Object::list({deep});
  EXPECT_THROW(py::dumps(deep), mp::PicklingError);
}

TEST(PythonPickleTest, SharedReferenceExpansionIsBounded) {
  // x0 = a 1 KiB str (or bytes, or int); x1 = [x0, x0]; x2 = [x1, x1]; ... 2^40 copies of x0.
  for (char opcode : {'X', 'B', '\x8b'}) {
    std::string bytes = std::string("\x80\x04") + opcode + std::string("\x00\x04\x00\x00", 4) +
                        std::string(1024, 'x');
    bytes +=
        "\x94"
        "0";  // MEMOIZE, POP
    for (int level = 0; level < 40; ++level) {
      bytes += "(h" + std::string(1, static_cast<char>(level)) + "h" +
               std::string(1, static_cast<char>(level)) +
               "l\x94"
               "0";
    }
    bytes += "h\x28.";
    expect_unpickling_error(bytes, "too large");
  }
}

TEST(PythonPickleTest, SharedSmallValuesExpandWithinBoundedMemory) {
  // x0 = 7; x1 = (x0, x0); x2 = (x1, x1); ... 2^40 small ints, and every copy is an
  // Object of its own: the bound is on the memory the copies take, not only their payload.
  std::string bytes =
      "\x80\x04K\x07\x94"
      "0";
  for (int level = 0; level < 40; ++level) {
    const std::string get = "h" + std::string(1, static_cast<char>(level));
    bytes += get + get + "\x86\x94" + "0";
  }
  bytes += "h\x28.";
  // Loaded in a child, whose peak resident size grows by what loads allocated.
  const pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    rusage before{};
    ::getrusage(RUSAGE_SELF, &before);
    bool refused = false;
    try {
      (void)py::loads(bytes);
    } catch (const mp::UnpicklingError& e) {
      refused = std::string(e.what()).find("too large") != std::string::npos;
    }
    rusage after{};
    ::getrusage(RUSAGE_SELF, &after);
    const long grown_mib = (after.ru_maxrss - before.ru_maxrss) / 1024;
    ::_exit(!refused ? 1 : grown_mib > 512 ? 2 : 0);
  }
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_NE(WEXITSTATUS(status), 1) << "loads did not refuse the expansion";
  EXPECT_NE(WEXITSTATUS(status), 2) << "loads took more than 512 MiB before refusing";
}

TEST(PythonPickleTest, MalformedStreamsAreErrors) {
  expect_unpickling_error("", "truncated");
  expect_unpickling_error("\x80\x04", "truncated");
  expect_unpickling_error("\x80\x04.", "0 values");
  expect_unpickling_error("\x80\x04NN.", "2 values");
  expect_unpickling_error("\x80\x06N.", "protocol 6");
  expect_unpickling_error("\x80\x04h\x05.", "never stored");
  expect_unpickling_error(std::string("\x80\x04j\xff\xff\xff\xff.", 8), "never stored");
  expect_unpickling_error("\x80\x04]Ne.", "MARK");             // APPENDS without MARK
  expect_unpickling_error("\x80\x04(N.", "open MARK");         // MARK never closed
  expect_unpickling_error("\x80\x04](a.", "underflow");        // APPEND below the MARK
  expect_unpickling_error("\x80\x04N(Ne.", "not a list");      // APPENDS onto None
  expect_unpickling_error("\x80\x04)(Ne.", "not a list");      // APPENDS onto a tuple
  expect_unpickling_error("\x80\x04}(Nu.", "odd");             // SETITEMS with one item
  expect_unpickling_error("\x80\x04\x8c\x02\xc3(.", "UTF-8");  // a cut UTF-8 sequence
  expect_unpickling_error(
      "\x80\x04"
      "0.",
      "underflow");  // POP on an empty stack
  expect_unpickling_error("\x80\x04\xff.", "unknown opcode");
  expect_unpickling_error("\x80\x02S'abc'\n.", "protocol 0/1");
}

TEST(PythonPickleTest, CodeRunningOpcodesAreRefused) {
  expect_unpickling_error("cos\nsystem\n(S'echo hi'\ntR.", "refusing global os.system");
  expect_unpickling_error("\x80\x04\x8c\x02os\x8c\x06system\x93.", "refusing global");
  expect_unpickling_error("cbuiltins\neval\n.", "refusing global");
  for (const char* payload :
       {"\x80\x04)\x81.", "\x80\x04(i\n.", "\x80\x04N}b.", "\x80\x04(o.", "\x80\x04\x82\x01.",
        "\x80\x04P1\n.", "\x80\x04NQ.", "\x80\x05\x97.", "\x80\x04)}\x92."})
    expect_unpickling_error(payload, "refusing opcode");
  // REDUCE on anything but the whitelisted globals, and the whitelist with other arguments.
  expect_unpickling_error("\x80\x04N)R.", "not an accepted global");
  expect_unpickling_error(raw("\x80\x02"
                              "c_codecs\nencode\nX\x01\x00\x00\x00"
                              "aX\x05\x00\x00\x00"
                              "utf-8\x86R."),
                          "latin1");
  expect_unpickling_error(raw("\x80\x02"
                              "c__builtin__\nset\nX\x01\x00\x00\x00"
                              "a\x85R."),
                          "set");
  // The accepted forms, as CPython writes them at protocol 2.
  EXPECT_EQ(py::loads<Bytes>(raw("\x80\x02"
                                 "c_codecs\nencode\nq\x00X\x02\x00\x00\x00"
                                 "\xc3\xbfq\x01X\x06\x00\x00\x00latin1q\x02\x86q\x03Rq\x04.")),
            Bytes{"\xff"});
  expect_unpickling_error(
      "\x80\x02"
      "c__builtin__\nbytes\nK\x01\x85R.",
      "bytes");
  expect_unpickling_error(
      "\x80\x02"
      "c__builtin__\nset\n.",
      "outside REDUCE");
  expect_unpickling_error(
      "\x80\x02"
      "c__builtin__\nset\n\x85.",
      "outside REDUCE");
}

TEST(PythonPickleTest, ObjectAccessors) {
  const Object big = big_int(70, true);
  EXPECT_EQ(big.int_decimal(), "-1180591620717411303424");
  EXPECT_EQ(Object::integer(-5).int_decimal(), "-5");
  EXPECT_EQ(Object::from_uint64(std::numeric_limits<std::uint64_t>::max()).int_decimal(),
            "18446744073709551615");
  EXPECT_EQ(py::loads(py::dumps(big)), big);
  EXPECT_EQ(py::loads(py::dumps(Object::integer(-200))), Object::integer(-200));
  EXPECT_THROW(Object::integer(1).as_str(), std::invalid_argument);
  EXPECT_THROW(big.as_int64(), std::out_of_range);
  EXPECT_EQ(Object::integer(1).type_name(), "int");
  EXPECT_NE(Object::integer(1), Object::floating(1.0));
  EXPECT_EQ(Object::set({Object::integer(1), Object::integer(2)}),
            Object::set({Object::integer(2), Object::integer(1)}));
  EXPECT_THROW(py::dumps(std::string("\xff")), mp::PicklingError);
  // Duplicate keys (only hand-made pickles have them) still compare sanely.
  const Object dup =
      Object::dict({{Object::str("a"), Object::dict()}, {Object::str("a"), Object::integer(1)}});
  EXPECT_EQ(dup, dup);
  EXPECT_EQ(py::loads(py::dumps(dup)), dup);
  EXPECT_NE(dup, Object::dict({{Object::str("a"), Object::integer(1)},
                               {Object::str("a"), Object::integer(1)}}));
  EXPECT_EQ(dup.find(Object::str("a"))->as_int64(), 1);
}

TEST(PythonPickleTest, ConnectionSendsAndReceivesPythonPickles) {
  auto [left, right] = mp::Pipe();
  left.send_python(std::map<std::string, std::vector<int>>{{"a", {1, 2}}});
  EXPECT_EQ((right.recv_python<std::map<std::string, std::vector<int>>>()),
            (std::map<std::string, std::vector<int>>{{"a", {1, 2}}}));
  // What Python's Connection.send([1, 'x']) puts in a message (protocol 4, framed).
  left.send_bytes(
      raw("\x80\x04\x95\x0b\x00\x00\x00\x00\x00\x00\x00]\x94(K\x01\x8c\x01x\x94"
          "e."));
  EXPECT_EQ(right.recv_python(), Object::list({Object::integer(1), Object::str("x")}));
  // A message that is not a Python pickle is consumed and reported.
  left.send_bytes(std::string_view("not a pickle"));
  EXPECT_THROW(right.recv_python<int>(), mp::UnpicklingError);
  left.send_python(5);
  EXPECT_EQ(right.recv_python<int>(), 5);
}

}  // namespace
