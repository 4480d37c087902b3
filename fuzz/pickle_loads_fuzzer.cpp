// Fuzzes mp::pickle::loads<T> for representative types T. The first input byte picks T,
// the rest are the bytes to load. Bad bytes must throw mp::UnpicklingError and nothing
// else: any other exception, a crash, a leak or undefined behaviour is a finding.
// A value that loads is pickled again and must load back to the same bytes.
//
// Function pointers: loads resolves a code address in this binary; the harness checks
// that the address lies in a loaded module's code and never calls it (a pickle is
// trusted input only as far as calling goes, see mp/pickle.hpp). So that the fuzzer
// reaches past the module lookup, one selector builds the pickle of a function in this
// very binary (whose build id changes with every build) and takes only the 8-byte
// offset and what follows from the input.
#include <array>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <tuple>
#include <variant>
#include <vector>

#include <mp/detail/code_ref.hpp>
#include <mp/errors.hpp>
#include <mp/pickle.hpp>

#include "../tests/pickle_samples.hpp"
#include "fuzz_support.hpp"

namespace {

using namespace pickle_samples;

volatile int callback_calls = 0;
// Code the pickles point to; the fuzzer must never make it run.
void sample_callback(int value) { callback_calls = callback_calls + value; }
void other_callback(int value) { callback_calls = callback_calls - value; }

// Loads `bytes` as T; on success, the value must survive another round trip unchanged.
template <class T>
void load_as(std::string_view bytes) {
  mp_fuzz::expect_only<mp::UnpicklingError>([&] {
    const T value = mp::pickle::loads<T>(bytes);
    if constexpr (std::is_same_v<T, Callback>) {
      if (value != nullptr) {
        // Must name code in a loaded module, and the same place again when pickled.
        const mp::detail::code_ref where =
            mp::detail::locate_code(reinterpret_cast<const void*>(value));
        mp_fuzz::check(mp::detail::resolve_code(where) == reinterpret_cast<const void*>(value),
                       "a loaded function pointer resolves back to itself");
      }
    }
    const std::string again = mp::pickle::dumps(value);
    mp_fuzz::check(mp::pickle::dumps(mp::pickle::loads<T>(again)) == again,
                   "dumps(loads(dumps(loads(input)))) == dumps(loads(input))");
  });
}

// The pickle of a function of this binary with the offset (8 bytes) and anything after
// it taken from `tail`.
void load_local_callback(std::string_view tail) {
  const std::string good = mp::pickle::dumps(Callback{&sample_callback});
  std::string bytes = good.substr(0, good.size() - sizeof(std::uint64_t));
  bytes.append(tail);
  load_as<Callback>(bytes);
}

using Loader = void (*)(std::string_view);
constexpr std::array<Loader, 9> kLoaders = {
    &load_as<Int>,     &load_as<String>,      &load_as<Strings>,
    &load_as<Table>,   &load_as<MaybeChoice>, &load_as<Record>,
    &load_as<Account>, &load_as<Callback>,    &load_local_callback,
};

// Selector byte + pickle.
std::string seed(std::size_t selector, std::string_view bytes) {
  return std::string(1, static_cast<char>(selector)) + std::string(bytes);
}

template <class T>
void add_seeds(std::vector<std::string>& out, std::size_t selector, const std::vector<T>& values) {
  for (const T& value : values) out.push_back(seed(selector, mp::pickle::dumps(value)));
}

std::vector<std::string> seeds() {
  std::vector<std::string> valid;
  add_seeds<Int>(valid, 0, {0, -1, 2147483647});
  add_seeds<String>(valid, 1, {"", "hello", std::string(300, 'x')});
  add_seeds<Strings>(valid, 2, {{}, {"a", "", "ccc"}});
  add_seeds<Table>(valid, 3, {{}, {{"one", {1}}, {"three", {1, 2, 3}}, {"none", {}}}});
  add_seeds<MaybeChoice>(valid, 4, {std::nullopt, 7, std::string("seven")});
  add_seeds<Record>(valid, 5, {{0.0, "", {}}, {-2.5, "bytes", {0, 1, 255}}});
  add_seeds<Account>(valid, 6, {{}, {"ann", {5, -3, 100}, 250.0}});
  add_seeds<Callback>(valid, 7, {nullptr, &sample_callback, &other_callback});
  // Selector 8: offsets of real functions of this binary, and of no function.
  for (Callback function : {&sample_callback, &other_callback}) {
    const std::string pickle = mp::pickle::dumps(function);
    valid.push_back(seed(8, std::string_view(pickle).substr(pickle.size() - 8)));
  }
  valid.push_back(seed(8, std::string(8, '\0')));
  return mp_fuzz::with_truncations(valid);
}
MP_FUZZ_SEEDS(seeds);

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  mp_fuzz::run_selected(kLoaders, data, size);
  mp_fuzz::check(callback_calls == 0, "a loaded function pointer was never called");
  return 0;
}
