// Fuzzes mp::pickle::python::loads, the loader of Python's pickle format. Bad or hostile
// bytes must throw mp::UnpicklingError and nothing else: any other exception, a crash, a
// leak, a hang or undefined behaviour is a finding. A pickle that loads as an Object must
// pickle again (dumps accepts whatever loads returns) and load back equal.
//
// The first input byte picks the requested type (Object or a few typed shapes), the rest
// are the pickle. Seeds: pickles written by this codec, and pickles CPython 3.11 writes at
// protocols 2, 3 and 5 (memo, frames, the bytes/set globals of protocol 2), refused
// payloads, and their truncations.
#include <array>
#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <tuple>
#include <vector>

#include <mp/errors.hpp>
#include <mp/python_pickle.hpp>

#include "fuzz_support.hpp"

namespace {

namespace py = mp::pickle::python;

void load_object(std::string_view bytes) {
  mp_fuzz::expect_only<mp::UnpicklingError>([&] {
    const py::Object value = py::loads(bytes);
    std::string again;
    try {
      again = py::dumps(value);
    } catch (const mp::PicklingError& e) {
      std::fprintf(stderr, "mp_fuzz: dumps refused what loads returned: %s\n", e.what());
      mp_fuzz::check(false, "dumps(loads(input)) succeeds");
    }
    mp_fuzz::check(py::loads(again) == value, "loads(dumps(loads(input))) == loads(input)");
  });
}

template <class T>
void load_as(std::string_view bytes) {
  mp_fuzz::expect_only<mp::UnpicklingError>([&] {
    // Compared as pickles: a NaN in the value would not compare equal to itself.
    const std::string again = py::dumps(py::loads<T>(bytes));
    mp_fuzz::check(py::dumps(py::loads<T>(again)) == again, "typed round trip");
  });
}

using Table = std::map<std::string, std::vector<std::int64_t>>;
using Record = std::tuple<std::optional<double>, std::string, py::Bytes>;
using Ints = std::set<std::uint16_t>;

using Loader = void (*)(std::string_view);
constexpr std::array<Loader, 4> kLoaders = {&load_object, &load_as<Table>, &load_as<Record>,
                                            &load_as<Ints>};

template <std::size_t N>
std::string raw(const char (&literal)[N]) {
  return std::string(literal, N - 1);
}

std::vector<std::string> seeds() {
  const py::Object sample = py::Object::dict(
      {{py::Object::integer(1), py::Object::str("h\xc3\xa9llo \xf0\x9f\x98\x80")},
       {py::Object::tuple({py::Object::integer(-70000), py::Object::floating(2.5)}),
        py::Object::list(
            {py::Object(), py::Object::boolean(true), py::Object::bytes(std::string("\0\1", 2))})},
       {py::Object::str("s"), py::Object::set({py::Object::integer(1u << 31)})},
       {py::Object::str("f"), py::Object::frozenset({py::Object::str("x")})},
       {py::Object::str("big"), py::Object::integer_from_bytes(std::string(20, '\x7f'))}});
  const std::vector<std::string> pickles = {
      py::dumps(sample),
      py::dumps(Table{{"a", {1, -2, 1LL << 40}}, {"b", {}}}),
      py::dumps(Record{std::nullopt, "r", py::Bytes{"b"}}),
      py::dumps(Record{0.5, std::string(300, 'x'), py::Bytes{std::string(300, '\0')}}),
      py::dumps(Ints{1, 2, 65535}),
      // CPython 3.11: [1, 'two', b'\0three', 4.5, None, True, (6, 7), {8: 9}, {10},
      // frozenset({11})] at protocols 2, 3 and 5.
      raw("\x80\x02]q\x00(K\x01X\x03\x00\x00\x00twoq\x01"
          "c_codecs\nencode\nq\x02X\x06\x00\x00\x00\x00threeq\x03X\x06\x00\x00\x00latin1q\x04"
          "\x86q\x05Rq\x06G@\x12\x00\x00\x00\x00\x00\x00N\x88K\x06K\x07\x86q\x07}q\x08K\x08K\ts"
          "c__builtin__\nset\nq\t]q\nK\na\x85q\x0bRq\x0c"
          "c__builtin__\nfrozenset\nq\r]q\x0eK\x0b"
          "a\x85q\x0fRq\x10"
          "e."),
      raw("\x80\x03]q\x00(K\x01X\x03\x00\x00\x00twoq\x01"
          "C\x06\x00threeq\x02G@\x12\x00\x00\x00\x00\x00\x00N\x88K\x06K\x07\x86q\x03}q\x04K\x08K\ts"
          "cbuiltins\nset\nq\x05]q\x06K\na\x85q\x07Rq\x08"
          "cbuiltins\nfrozenset\nq\t]q\nK\x0b"
          "a\x85q\x0bRq\x0c"
          "e."),
      raw("\x80\x05\x95"
          "9\x00\x00\x00\x00\x00\x00\x00]\x94(K\x01\x8c\x03two\x94"
          "C\x06\x00three\x94G@\x12\x00\x00\x00\x00\x00\x00N\x88K\x06K\x07\x86\x94}\x94K\x08K\ts"
          "\x8f\x94(K\n\x90(K\x0b\x91\x94"
          "e."),
      // {'a': [1, 2], 'b': (b'', set())} at protocol 2; x = [1]; [x, x] at protocol 2.
      raw("\x80\x02}q\x00(X\x01\x00\x00\x00"
          "aq\x01]q\x02(K\x01K\x02"
          "eX\x01\x00\x00\x00"
          "bq\x03"
          "c__builtin__\nbytes\nq\x04)Rq\x05"
          "c__builtin__\nset\nq\x06]q\x07\x85q\x08Rq\t\x86q\nu."),
      raw("\x80\x02]q\x00(]q\x01K\x01"
          "ah\x01"
          "e."),
      // 2**100 and -2**70 (LONG1), a str at protocol 2.
      raw("\x80\x02\x8a\r\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x10."),
      raw("\x80\x02\x8a\t\x00\x00\x00\x00\x00\x00\x00\x00\xc0."),
      raw("\x80\x02X\x0b\x00\x00\x00h\xc3\xa9llo \xf0\x9f\x98\x80q\x00."),
      // Refused: OrderedDict at protocol 2, os.system via STACK_GLOBAL.
      raw("\x80\x02"
          "ccollections\nOrderedDict\nq\x00)Rq\x01X\x01\x00\x00\x00"
          "aq\x02K\x01s."),
      raw("\x80\x04\x8c\x02os\x8c\x06system\x93."),
  };
  std::vector<std::string> valid;
  for (const std::string& pickle : pickles)
    for (std::size_t selector = 0; selector < kLoaders.size(); ++selector)
      valid.push_back(std::string(1, static_cast<char>(selector)) + pickle);
  return mp_fuzz::with_truncations(valid);
}
MP_FUZZ_SEEDS(seeds);

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  mp_fuzz::run_selected(kLoaders, data, size);
  return 0;
}
