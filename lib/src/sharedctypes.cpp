// The byte-level core of <mp/sharedctypes.hpp>: Python's multiprocessing/sharedctypes.py
// allocates ctypes objects in its heap; here an object is a header naming the element
// type followed by the elements, in mp's shared heap.
#include <mp/sharedctypes.hpp>

#include <algorithm>
#include <cstring>
#include <limits>
#include <stdexcept>
#include <string>

#include <mp/errors.hpp>

namespace mp::detail {
namespace {

// The start of a sharedctypes object's state; the elements follow at kDataOffset.
struct CtypesHeader {
  std::uint64_t count;
  std::uint32_t element_size;
  std::uint32_t fingerprint;  // detail::type_fingerprint of the element type
};
static_assert(sizeof(CtypesHeader) <= 16);

std::size_t state_size_for(std::size_t element_size, std::size_t count) {
  constexpr std::size_t kHeader = 16;
  if (element_size != 0 &&
      count > (std::numeric_limits<std::size_t>::max() - kHeader) / element_size)
    throw std::length_error("mp: shared array size overflows");
  return kHeader + element_size * count;
}

}  // namespace

ctypes_core::ctypes_core(shared_kind kind, std::size_t element_size, std::uint32_t fingerprint,
                         std::size_t count, const void* initial)
    : shared_object(kind, state_size_for(element_size, count)) {
  auto* header = static_cast<CtypesHeader*>(state());
  header->count = count;
  header->element_size = static_cast<std::uint32_t>(element_size);
  header->fingerprint = fingerprint;
  if (initial && count) std::memcpy(data(), initial, element_size * count);
}

std::size_t ctypes_core::count() const noexcept {
  return static_cast<std::size_t>(static_cast<const CtypesHeader*>(state())->count);
}

void ctypes_core::check_type(std::size_t element_size, std::uint32_t fingerprint) const {
  const auto* header = static_cast<const CtypesHeader*>(state());
  if (header->element_size != element_size || header->fingerprint != fingerprint)
    throw UnpicklingError(
        "mp: a shared Value/Array handle was loaded as another element type than it was "
        "created with");
}

std::string ctypes_core::char_value() const {
  const char* begin = reinterpret_cast<const char*>(data());
  const char* end = begin + count();
  return {begin, std::find(begin, end, '\0')};
}

void ctypes_core::set_char_value(std::string_view text) const {
  if (text.size() > count())
    throw std::invalid_argument("mp: byte string too long (" + std::to_string(text.size()) +
                                " bytes for a char array of " + std::to_string(count()) + ")");
  std::memcpy(data(), text.data(), text.size());
  if (text.size() < count()) data()[text.size()] = std::byte{0};  // as ctypes' c_char array
}

void ctypes_core::set_char_raw(std::string_view text) const {
  if (text.size() > count())
    throw std::invalid_argument("mp: byte string too long (" + std::to_string(text.size()) +
                                " bytes for a char array of " + std::to_string(count()) + ")");
  std::memcpy(data(), text.data(), text.size());
}

void ctypes_core::check_index(std::size_t index) const {
  if (index >= count())
    throw std::out_of_range("mp: array index " + std::to_string(index) + " out of range (size " +
                            std::to_string(count()) + ")");
}

void throw_no_lock(const char* what) {
  throw std::logic_error(std::string(what) +
                         ": this object was made with mp::no_lock and has no lock");
}

}  // namespace mp::detail
