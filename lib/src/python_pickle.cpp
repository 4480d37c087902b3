// Python's pickle format for plain data: Object, the protocol 4 writer and a loader that
// never calls code (see mp/python_pickle.hpp). Opcode names and meanings follow CPython's
// Lib/pickle.py and Lib/pickletools.py.
#include <mp/python_pickle.hpp>

#include <algorithm>
#include <array>
#include <bit>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <stdexcept>
#include <string>
#include <unordered_map>
#include <vector>

#include <mp/errors.hpp>

namespace mp::pickle::python {

namespace {

constexpr std::size_t kMaxDepth = 1000;
// What loads may allocate for the Objects of a result beyond one Object per input byte.
constexpr std::size_t kExpansionBytes = std::size_t{32} << 20;

// Drops redundant sign bytes from little-endian two's complement.
void trim_twos_complement(std::string& bytes) {
  while (bytes.size() > 1) {
    const auto last = static_cast<unsigned char>(bytes.back());
    const auto prev = static_cast<unsigned char>(bytes[bytes.size() - 2]);
    if ((last == 0x00 && (prev & 0x80) == 0) || (last == 0xff && (prev & 0x80) != 0))
      bytes.pop_back();
    else
      break;
  }
  if (bytes.size() == 1 && bytes[0] == 0) bytes.clear();
}

std::string int64_bytes(std::int64_t value) {
  std::string bytes(8, '\0');
  auto bits = static_cast<std::uint64_t>(value);
  for (auto& byte : bytes) {
    byte = static_cast<char>(bits & 0xff);
    bits >>= 8;
  }
  trim_twos_complement(bytes);
  return bytes;
}

// UTF-8 as Python's "surrogatepass" codec accepts it: well-formed, shortest form, at
// most U+10FFFF, and encoded surrogates allowed. Appends code points to `out` if given.
bool decode_utf8(std::string_view text, std::vector<std::uint32_t>* out) {
  std::size_t i = 0;
  while (i < text.size()) {
    const auto lead = static_cast<unsigned char>(text[i]);
    std::uint32_t code = 0;
    std::size_t length = 0;
    if (lead < 0x80) {
      code = lead;
      length = 1;
    } else if (lead >= 0xc2 && lead < 0xe0) {
      code = lead & 0x1f;
      length = 2;
    } else if (lead >= 0xe0 && lead < 0xf0) {
      code = lead & 0x0f;
      length = 3;
    } else if (lead >= 0xf0 && lead < 0xf5) {
      code = lead & 0x07;
      length = 4;
    } else {
      return false;
    }
    if (text.size() - i < length) return false;
    for (std::size_t k = 1; k < length; ++k) {
      const auto next = static_cast<unsigned char>(text[i + k]);
      if ((next & 0xc0) != 0x80) return false;
      code = (code << 6) | (next & 0x3f);
    }
    if ((length == 3 && code < 0x800) || (length == 4 && (code < 0x10000 || code > 0x10ffff)))
      return false;
    if (out) out->push_back(code);
    i += length;
  }
  return true;
}

}  // namespace

// ---- Object ----

Object Object::boolean(bool value) {
  Object out;
  out.kind_ = Kind::boolean;
  out.boolean_ = value;
  return out;
}

Object Object::from_int64(std::int64_t value) {
  Object out;
  out.kind_ = Kind::integer;
  out.small_ = value;
  return out;
}

Object Object::from_uint64(std::uint64_t value) {
  if (value <= static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max()))
    return from_int64(static_cast<std::int64_t>(value));
  std::string bytes(9, '\0');
  for (int i = 0; i < 8; ++i) bytes[i] = static_cast<char>((value >> (8 * i)) & 0xff);
  return integer_from_bytes(bytes);
}

Object Object::integer_from_bytes(std::string_view little_endian_twos_complement) {
  std::string bytes(little_endian_twos_complement);
  trim_twos_complement(bytes);
  Object out;
  out.kind_ = Kind::integer;
  if (bytes.size() <= 8) {
    std::uint64_t bits = 0;
    const bool negative = !bytes.empty() && (static_cast<unsigned char>(bytes.back()) & 0x80);
    for (std::size_t i = 0; i < 8; ++i) {
      const std::uint64_t byte =
          i < bytes.size() ? static_cast<unsigned char>(bytes[i]) : (negative ? 0xff : 0);
      bits |= byte << (8 * i);
    }
    out.small_ = static_cast<std::int64_t>(bits);
  } else {
    out.big_ = true;
    out.text_ = std::move(bytes);
  }
  return out;
}

Object Object::floating(double value) {
  Object out;
  out.kind_ = Kind::floating;
  out.floating_ = value;
  return out;
}

Object Object::str(std::string utf8) {
  Object out;
  out.kind_ = Kind::str;
  out.text_ = std::move(utf8);
  return out;
}

Object Object::bytes(std::string octets) {
  Object out;
  out.kind_ = Kind::bytes;
  out.text_ = std::move(octets);
  return out;
}

Object Object::list(std::vector<Object> items) {
  Object out;
  out.kind_ = Kind::list;
  out.items_ = std::move(items);
  return out;
}

Object Object::tuple(std::vector<Object> items) {
  Object out = list(std::move(items));
  out.kind_ = Kind::tuple;
  return out;
}

Object Object::set(std::vector<Object> items) {
  Object out = list(std::move(items));
  out.kind_ = Kind::set;
  return out;
}

Object Object::frozenset(std::vector<Object> items) {
  Object out = list(std::move(items));
  out.kind_ = Kind::frozenset;
  return out;
}

Object Object::dict(std::vector<std::pair<Object, Object>> entries) {
  Object out;
  out.kind_ = Kind::dict;
  out.items_.reserve(entries.size() * 2);
  for (auto& [key, value] : entries) {
    out.items_.push_back(std::move(key));
    out.items_.push_back(std::move(value));
  }
  return out;
}

namespace {
// Python's name of each Kind, in the enum's order.
constexpr std::array<std::string_view, 11> kTypeNames = {"NoneType", "bool",  "int",      "float",
                                                         "str",      "bytes", "list",     "tuple",
                                                         "dict",     "set",   "frozenset"};
static_assert(static_cast<std::size_t>(Object::Kind::frozenset) + 1 == kTypeNames.size(),
              "one type name per Kind");
}  // namespace

std::string_view Object::type_name() const noexcept {
  const auto index = static_cast<std::size_t>(kind_);
  return index < kTypeNames.size() ? kTypeNames[index] : "?";
}

namespace {
[[noreturn]] void wrong_kind(const Object& object, const char* wanted) {
  throw std::invalid_argument(std::string("mp::pickle::python::Object: expected ") + wanted +
                              ", holds " + std::string(object.type_name()));
}
}  // namespace

bool Object::as_bool() const {
  if (kind_ != Kind::boolean) wrong_kind(*this, "bool");
  return boolean_;
}

bool Object::fits_int64() const noexcept { return kind_ == Kind::integer && !big_; }

bool Object::fits_uint64() const noexcept {
  if (kind_ != Kind::integer) return false;
  if (!big_) return small_ >= 0;
  return text_.size() == 9 && text_[8] == 0;
}

std::int64_t Object::as_int64() const {
  if (kind_ != Kind::integer) wrong_kind(*this, "int");
  if (big_) throw std::out_of_range("mp::pickle::python::Object: int does not fit int64");
  return small_;
}

std::uint64_t Object::as_uint64() const {
  if (kind_ != Kind::integer) wrong_kind(*this, "int");
  if (!fits_uint64())
    throw std::out_of_range("mp::pickle::python::Object: int does not fit uint64");
  if (!big_) return static_cast<std::uint64_t>(small_);
  std::uint64_t value = 0;
  for (int i = 0; i < 8; ++i)
    value |= std::uint64_t{static_cast<unsigned char>(text_[i])} << (8 * i);
  return value;
}

std::string Object::int_bytes() const {
  if (kind_ != Kind::integer) wrong_kind(*this, "int");
  return big_ ? text_ : int64_bytes(small_);
}

std::string Object::int_decimal() const {
  if (kind_ != Kind::integer) wrong_kind(*this, "int");
  if (!big_) return std::to_string(small_);
  std::string bytes = text_;
  const bool negative = static_cast<unsigned char>(bytes.back()) & 0x80;
  if (negative) {  // magnitude = ~bytes + 1
    unsigned carry = 1;
    for (auto& byte : bytes) {
      const unsigned sum = (~static_cast<unsigned char>(byte) & 0xffu) + carry;
      byte = static_cast<char>(sum & 0xff);
      carry = sum >> 8;
    }
  }
  // Base-2^32 limbs, most significant first, divided by 10^9 until zero.
  std::vector<std::uint32_t> limbs((bytes.size() + 3) / 4, 0);
  for (std::size_t i = 0; i < bytes.size(); ++i)
    limbs[limbs.size() - 1 - i / 4] |= std::uint32_t{static_cast<unsigned char>(bytes[i])}
                                       << (8 * (i % 4));
  std::string digits;
  while (!limbs.empty()) {
    std::uint64_t remainder = 0;
    for (auto& limb : limbs) {
      const std::uint64_t current = (remainder << 32) | limb;
      limb = static_cast<std::uint32_t>(current / 1000000000u);
      remainder = current % 1000000000u;
    }
    while (!limbs.empty() && limbs.front() == 0) limbs.erase(limbs.begin());
    for (int k = 0; k < 9; ++k) {
      digits.push_back(static_cast<char>('0' + remainder % 10));
      remainder /= 10;
      if (limbs.empty() && remainder == 0) break;
    }
  }
  if (negative) digits.push_back('-');
  std::reverse(digits.begin(), digits.end());
  return digits;
}

double Object::as_double() const {
  if (kind_ == Kind::floating) return floating_;
  if (kind_ != Kind::integer) wrong_kind(*this, "float");
  if (!big_) return static_cast<double>(small_);
  const bool negative = static_cast<unsigned char>(text_.back()) & 0x80;
  double value = 0;
  for (std::size_t i = text_.size(); i-- > 0;) {
    const auto byte = static_cast<unsigned char>(text_[i]);
    value = value * 256 + (negative ? (~byte & 0xff) : byte);
  }
  return negative ? -(value + 1) : value;
}

const std::string& Object::as_str() const {
  if (kind_ != Kind::str) wrong_kind(*this, "str");
  return text_;
}

const std::string& Object::as_bytes() const {
  if (kind_ != Kind::bytes) wrong_kind(*this, "bytes");
  return text_;
}

const std::vector<Object>& Object::items() const {
  if (kind_ != Kind::list && kind_ != Kind::tuple && kind_ != Kind::set && kind_ != Kind::frozenset)
    wrong_kind(*this, "list, tuple, set or frozenset");
  return items_;
}

std::vector<Object>& Object::items() {
  std::as_const(*this).items();
  return items_;
}

std::size_t Object::dict_size() const {
  if (kind_ != Kind::dict) wrong_kind(*this, "dict");
  return items_.size() / 2;
}

const Object& Object::dict_key(std::size_t index) const {
  if (index >= dict_size()) throw std::out_of_range("mp::pickle::python::Object: dict index");
  return items_[2 * index];
}

const Object& Object::dict_value(std::size_t index) const {
  if (index >= dict_size()) throw std::out_of_range("mp::pickle::python::Object: dict index");
  return items_[2 * index + 1];
}

const Object* Object::find(const Object& key) const {
  const std::size_t size = dict_size();
  for (std::size_t i = size; i-- > 0;)  // the last entry wins, as when Python loads it
    if (items_[2 * i] == key) return &items_[2 * i + 1];
  return nullptr;
}

void Object::dict_append(Object key, Object value) {
  if (kind_ != Kind::dict) wrong_kind(*this, "dict");
  items_.push_back(std::move(key));
  items_.push_back(std::move(value));
}

bool operator==(const Object& a, const Object& b) {
  using Kind = Object::Kind;
  if (a.kind_ != b.kind_) return false;
  switch (a.kind_) {
    case Kind::none:
      return true;
    case Kind::boolean:
      return a.boolean_ == b.boolean_;
    case Kind::integer:
      return a.big_ == b.big_ && (a.big_ ? a.text_ == b.text_ : a.small_ == b.small_);
    case Kind::floating:
      return a.floating_ == b.floating_ || (std::isnan(a.floating_) && std::isnan(b.floating_));
    case Kind::str:
    case Kind::bytes:
      return a.text_ == b.text_;
    case Kind::list:
    case Kind::tuple:
      return a.items_ == b.items_;
    case Kind::set:
    case Kind::frozenset:
    case Kind::dict: {
      // As multisets of elements (of key-value entries for a dict), so that duplicates,
      // which only a hand-made pickle has, compare sanely too.
      if (a.items_.size() != b.items_.size()) return false;
      const std::size_t step = a.kind_ == Kind::dict ? 2 : 1;
      std::vector<bool> used(b.items_.size() / step, false);
      for (std::size_t i = 0; i < a.items_.size(); i += step) {
        bool found = false;
        for (std::size_t k = 0; k < b.items_.size() && !found; k += step) {
          if (used[k / step] || !(a.items_[i] == b.items_[k])) continue;
          if (step == 2 && !(a.items_[i + 1] == b.items_[k + 1])) continue;
          used[k / step] = found = true;
        }
        if (!found) return false;
      }
      return true;
    }
  }
  return false;
}

// ---- dumps ----

namespace detail {

namespace {

void put_u32(std::string& out, std::uint64_t value, int size) {
  for (int i = 0; i < size; ++i) out.push_back(static_cast<char>((value >> (8 * i)) & 0xff));
}

void put_counted(std::string& out, const std::string& text, char op1, char op4, char op8) {
  if (text.size() < 256) {
    out.push_back(op1);
    put_u32(out, text.size(), 1);
  } else if (text.size() <= 0xffffffffu) {
    out.push_back(op4);
    put_u32(out, text.size(), 4);
  } else {
    out.push_back(op8);
    put_u32(out, text.size(), 8);
  }
  out += text;
}

void dump_value(std::string& out, const Object& value, std::size_t depth) {
  using Kind = Object::Kind;
  if (depth > kMaxDepth) throw PicklingError("mp::pickle::python::dumps: nesting deeper than 1000");
  switch (value.kind()) {
    case Kind::none:
      out.push_back('N');
      break;
    case Kind::boolean:
      out.push_back(value.as_bool() ? '\x88' : '\x89');
      break;
    case Kind::integer:
      if (value.fits_int64() && value.as_int64() >= 0 && value.as_int64() < 0x10000) {
        const std::int64_t small = value.as_int64();
        out.push_back(small < 0x100 ? 'K' : 'M');
        put_u32(out, static_cast<std::uint64_t>(small), small < 0x100 ? 1 : 2);
      } else if (value.fits_int64() && value.as_int64() >= INT32_MIN &&
                 value.as_int64() <= INT32_MAX) {
        out.push_back('J');
        put_u32(out, static_cast<std::uint32_t>(static_cast<std::int32_t>(value.as_int64())), 4);
      } else {
        const std::string bytes = value.int_bytes();
        if (bytes.size() < 256) {
          out.push_back('\x8a');
          put_u32(out, bytes.size(), 1);
        } else {
          if (bytes.size() > 0x7fffffffu)
            throw PicklingError("mp::pickle::python::dumps: int too large to pickle");
          out.push_back('\x8b');
          put_u32(out, bytes.size(), 4);
        }
        out += bytes;
      }
      break;
    case Kind::floating: {
      out.push_back('G');
      const auto bits = std::bit_cast<std::uint64_t>(value.as_double());
      for (int i = 7; i >= 0; --i) out.push_back(static_cast<char>((bits >> (8 * i)) & 0xff));
      break;
    }
    case Kind::str:
      if (!decode_utf8(value.as_str(), nullptr))
        throw PicklingError(
            "mp::pickle::python::dumps: a str that is not UTF-8 (send bytes "
            "as mp::pickle::python::Bytes)");
      put_counted(out, value.as_str(), '\x8c', 'X', '\x8d');
      break;
    case Kind::bytes:
      put_counted(out, value.as_bytes(), 'C', 'B', '\x8e');
      break;
    case Kind::tuple: {
      const auto& items = value.items();
      if (items.empty()) {
        out.push_back(')');
        break;
      }
      if (items.size() > 3) out.push_back('(');
      for (const Object& item : items) dump_value(out, item, depth + 1);
      out.push_back(items.size() > 3 ? 't' : static_cast<char>(0x84 + items.size()));
      break;
    }
    case Kind::list:
    case Kind::set: {
      const bool is_list = value.kind() == Kind::list;
      out.push_back(is_list ? ']' : '\x8f');
      if (value.items().empty()) break;
      out.push_back('(');
      for (const Object& item : value.items()) dump_value(out, item, depth + 1);
      out.push_back(is_list ? 'e' : '\x90');
      break;
    }
    case Kind::frozenset:
      out.push_back('(');
      for (const Object& item : value.items()) dump_value(out, item, depth + 1);
      out.push_back('\x91');
      break;
    case Kind::dict:
      out.push_back('}');
      if (value.dict_size() == 0) break;
      out.push_back('(');
      for (std::size_t i = 0; i < value.dict_size(); ++i) {
        dump_value(out, value.dict_key(i), depth + 1);
        dump_value(out, value.dict_value(i), depth + 1);
      }
      out.push_back('u');
      break;
  }
}

}  // namespace

std::string dumps_object(const Object& value) {
  std::string out = {'\x80', '\x04'};  // PROTO 4
  dump_value(out, value, 0);
  out.push_back('.');  // STOP
  return out;
}

// ---- loads ----

namespace {

// The callables CPython writes for plain data below protocol 4 (see the header).
enum class Global { none, codecs_encode, bytes, set, frozenset };

Global find_global(std::string_view module, std::string_view name) {
  if (module == "_codecs" && name == "encode") return Global::codecs_encode;
  if (module == "__builtin__" || module == "builtins") {
    if (name == "bytes") return Global::bytes;
    if (name == "set") return Global::set;
    if (name == "frozenset") return Global::frozenset;
  }
  return Global::none;
}

[[noreturn]] void fail(const std::string& what) {
  throw UnpicklingError("mp::pickle::python::loads: " + what);
}

// A value under construction. Containers refer to other nodes by index so that the memo
// shares them as Python does (a list memoized while empty, then filled by APPENDS).
struct Node {
  Object::Kind kind = Object::Kind::none;
  Global global = Global::none;  // a whitelisted callable, awaiting REDUCE
  Object scalar;                 // none, bool, int, float, str, bytes
  std::size_t payload = 0;       // bytes of a str, bytes or big int: what a copy costs
  std::vector<std::uint32_t> children;
};

// The pickle's bytes and the read position: every length is checked against what is left.
class Input {
 public:
  explicit Input(std::string_view data) : data_(data) {}

  std::string_view take(std::uint64_t size) {
    if (size > data_.size() - pos_) fail("truncated pickle (a length runs past the end)");
    const std::string_view out = data_.substr(pos_, static_cast<std::size_t>(size));
    pos_ += static_cast<std::size_t>(size);
    return out;
  }
  std::uint64_t le(int size) {
    const std::string_view bytes = take(static_cast<std::uint64_t>(size));
    std::uint64_t value = 0;
    for (int i = 0; i < size; ++i)
      value |= std::uint64_t{static_cast<unsigned char>(bytes[i])} << (8 * i);
    return value;
  }
  std::uint8_t u8() {
    if (pos_ >= data_.size()) fail("truncated pickle (no STOP)");
    return static_cast<std::uint8_t>(data_[pos_++]);
  }
  std::string_view line() {
    const std::size_t end = data_.find('\n', pos_);
    if (end == std::string_view::npos) fail("truncated pickle (a line without its end)");
    const std::string_view out = data_.substr(pos_, end - pos_);
    pos_ = end + 1;
    return out;
  }
  std::size_t left() const { return data_.size() - pos_; }
  std::size_t size() const { return data_.size(); }

 private:
  std::string_view data_;
  std::size_t pos_ = 0;
};

std::string kind_name(Object::Kind kind) {
  switch (kind) {
    case Object::Kind::list:
      return "list";
    case Object::Kind::dict:
      return "dict";
    case Object::Kind::set:
      return "set";
    default:
      return "container";
  }
}

// The pickle machine's state: the nodes built so far, the stack and its MARKs, and the memo.
class Machine {
 public:
  std::uint32_t add(Node node) {
    if (nodes_.size() >= 0xffffffffu) fail("too many values");
    nodes_.push_back(std::move(node));
    return static_cast<std::uint32_t>(nodes_.size() - 1);
  }
  void push(std::uint32_t index) { stack_.push_back(index); }
  void push_scalar(Object value, std::size_t payload = 0) {
    Node node;
    node.kind = value.kind();
    node.payload = payload;
    node.scalar = std::move(value);
    push(add(std::move(node)));
  }
  void push_container(Object::Kind kind, std::vector<std::uint32_t> children = {}) {
    Node node;
    node.kind = kind;
    node.children = std::move(children);
    push(add(std::move(node)));
  }
  void push_string(std::string_view text, bool is_str) {
    if (is_str) {
      if (!decode_utf8(text, nullptr)) fail("a str that is not UTF-8");
      push_scalar(Object::str(std::string(text)), text.size());
    } else {
      push_scalar(Object::bytes(std::string(text)), text.size());
    }
  }
  void push_global(std::string_view module, std::string_view name) {
    const Global global = find_global(module, name);
    if (global == Global::none)
      fail("refusing global " + std::string(module.substr(0, 100)) + "." +
           std::string(name.substr(0, 100)) + ": loading it would run code");
    Node node;
    node.global = global;
    push(add(std::move(node)));
  }

  void mark() { marks_.push_back(stack_.size()); }
  std::uint32_t pop() {
    const std::uint32_t index = top();
    stack_.pop_back();
    return index;
  }
  std::uint32_t top() const {
    if (stack_.size() <= fence()) fail("stack underflow");
    return stack_.back();
  }
  std::vector<std::uint32_t> pop_mark() {
    if (marks_.empty()) fail("no MARK for an opcode that needs one");
    const std::size_t mark = marks_.back();
    marks_.pop_back();
    std::vector<std::uint32_t> items(stack_.begin() + static_cast<std::ptrdiff_t>(mark),
                                     stack_.end());
    stack_.resize(mark);
    return items;
  }

  // The children of the container on top of the stack, which must be of `kind`.
  std::vector<std::uint32_t>& children_of_top(Object::Kind kind, const char* op) {
    Node& node = nodes_[top()];
    if (node.global != Global::none || node.kind != kind)
      fail(std::string(op) + " on a value that is not a " + kind_name(kind));
    return node.children;
  }
  void extend_top(Object::Kind kind, const char* op) {
    std::vector<std::uint32_t> items = pop_mark();
    auto& children = children_of_top(kind, op);
    children.insert(children.end(), items.begin(), items.end());
  }

  void memo_put(std::uint64_t key) { memo_[key] = top(); }
  void memo_put_next() { memo_put(memo_.size()); }
  void memo_get(std::uint64_t key) {
    const auto found = memo_.find(key);
    if (found == memo_.end()) fail("memo key " + std::to_string(key) + " was never stored");
    push(found->second);
  }

  const Node& node(std::uint32_t index) const { return nodes_[index]; }
  const std::vector<Node>& nodes() const { return nodes_; }
  // The one value STOP leaves.
  std::uint32_t result() const {
    if (!marks_.empty()) fail("STOP with an open MARK");
    if (stack_.size() != 1)
      fail("STOP with " + std::to_string(stack_.size()) + " values on the stack (expected 1)");
    return stack_.back();
  }

 private:
  std::size_t fence() const { return marks_.empty() ? 0 : marks_.back(); }

  std::vector<Node> nodes_;
  std::vector<std::uint32_t> stack_;
  std::vector<std::size_t> marks_;
  std::unordered_map<std::uint64_t, std::uint32_t> memo_;
};

// REDUCE on a whitelisted global, evaluated here without calling anything.
void reduce(Machine& machine) {
  using Kind = Object::Kind;
  const std::uint32_t args_index = machine.pop();
  const Global global = machine.node(machine.pop()).global;
  const Node& args = machine.node(args_index);
  if (global == Global::none) fail("REDUCE on a value that is not an accepted global");
  if (args.global != Global::none || args.kind != Kind::tuple)
    fail("REDUCE without an argument tuple");
  const std::vector<std::uint32_t> arguments = args.children;
  const auto argument = [&](std::size_t i) -> const Node& { return machine.node(arguments[i]); };
  const auto plain = [&](std::size_t i, Kind kind) {
    return argument(i).global == Global::none && argument(i).kind == kind;
  };
  switch (global) {
    case Global::codecs_encode: {
      if (arguments.size() != 2 || !plain(0, Kind::str) || !plain(1, Kind::str) ||
          (argument(1).scalar.as_str() != "latin1" && argument(1).scalar.as_str() != "latin-1"))
        fail("_codecs.encode accepted only as encode(str, 'latin1')");
      std::vector<std::uint32_t> code_points;
      decode_utf8(argument(0).scalar.as_str(), &code_points);
      std::string octets;
      octets.reserve(code_points.size());
      for (std::uint32_t code : code_points) {
        if (code > 0xff) fail("_codecs.encode: a character beyond latin1");
        octets.push_back(static_cast<char>(code));
      }
      machine.push_scalar(Object::bytes(std::move(octets)), code_points.size());
      break;
    }
    case Global::bytes:
      if (!arguments.empty()) fail("bytes accepted only without arguments");
      machine.push_scalar(Object::bytes(""));
      break;
    case Global::set:
    case Global::frozenset: {
      std::vector<std::uint32_t> items;
      if (arguments.size() == 1 && plain(0, Kind::list))
        items = argument(0).children;
      else if (!arguments.empty())
        fail("set/frozenset accepted only with no argument or one list");
      machine.push_container(global == Global::set ? Kind::set : Kind::frozenset, std::move(items));
      break;
    }
    case Global::none:
      break;
  }
}

// The opcodes this loader does not take, each with the reason.
[[noreturn]] void refuse(std::uint8_t op) {
  struct Refused {
    std::uint8_t op;
    const char* name;
  };
  static constexpr Refused kCallsCode[] = {
      {'i', "INST"},       {'o', "OBJ"},       {'b', "BUILD"},        {0x81, "NEWOBJ"},
      {0x92, "NEWOBJ_EX"}, {0x82, "EXT1"},     {0x83, "EXT2"},        {0x84, "EXT4"},
      {'P', "PERSID"},     {'Q', "BINPERSID"}, {0x97, "NEXT_BUFFER"}, {0x98, "READONLY_BUFFER"},
  };
  for (const Refused& refused : kCallsCode)
    if (refused.op == op)
      fail(std::string("refusing opcode ") + refused.name + ": it builds objects by calling code");
  char hex[8];
  std::snprintf(hex, sizeof hex, "0x%02x", op);
  if (std::string_view("ILFSTUVgp").find(static_cast<char>(op)) != std::string_view::npos)
    fail(std::string("unsupported protocol 0/1 opcode ") + hex + " '" + static_cast<char>(op) +
         "'");
  fail(std::string("unknown opcode ") + hex);
}

// Turns the node graph into Objects. Memo references let a short pickle name one value many
// times (a list of ten copies of a list of ten copies of ...), and an Object holds each copy
// apart. The budget is the memory the result may take: what the Objects themselves occupy
// plus their payloads, a fixed allowance plus one Object per input byte, which every
// unshared pickle meets.
class Converter {
 public:
  Converter(const std::vector<Node>& nodes, std::size_t input_bytes)
      : nodes_(nodes),
        budget_(kExpansionBytes + sizeof(Object) * input_bytes),
        in_progress_(nodes.size(), false) {}

  Object convert(std::uint32_t index, std::size_t depth) {
    using Kind = Object::Kind;
    if (depth > kMaxDepth) fail("nesting deeper than 1000");
    const Node& node = nodes_[index];
    if (node.global != Global::none) fail("a global outside REDUCE");
    switch (node.kind) {
      case Kind::none:
      case Kind::boolean:
      case Kind::integer:
      case Kind::floating:
      case Kind::str:
      case Kind::bytes: {
        spend(sizeof(Object) + node.payload);
        return node.scalar;
      }
      default:
        break;
    }
    if (in_progress_[index]) fail("a value that contains itself (recursive structure)");
    in_progress_[index] = true;
    spend(sizeof(Object));
    std::vector<Object> items;
    items.reserve(std::min<std::size_t>(node.children.size(), budget_ / sizeof(Object)));
    for (std::uint32_t child : node.children) items.push_back(convert(child, depth + 1));
    in_progress_[index] = false;
    switch (node.kind) {
      case Kind::list:
        return Object::list(std::move(items));
      case Kind::tuple:
        return Object::tuple(std::move(items));
      case Kind::set:
        return Object::set(std::move(items));
      case Kind::frozenset:
        return Object::frozenset(std::move(items));
      default:
        break;
    }
    Object dict = Object::dict();
    for (std::size_t i = 0; i + 1 < items.size(); i += 2)
      dict.dict_append(std::move(items[i]), std::move(items[i + 1]));
    return dict;
  }

 private:
  void spend(std::size_t bytes) {
    if (bytes > budget_) fail("the pickle expands to too large a value (shared references)");
    budget_ -= bytes;
  }

  const std::vector<Node>& nodes_;
  std::size_t budget_;
  std::vector<bool> in_progress_;
};

// Opcode dispatch: reads one opcode and its arguments and applies it to the machine.
class Loader {
 public:
  explicit Loader(std::string_view data) : in_(data) {}

  Object run() {
    while (true) {
      const std::uint8_t op = in_.u8();
      if (op == '.') break;
      step(op);
    }
    if (in_.left() != 0) fail(std::to_string(in_.left()) + " bytes after STOP");
    const std::uint32_t result = m_.result();
    return Converter(m_.nodes(), in_.size()).convert(result, 0);
  }

 private:
  void step(std::uint8_t op) {
    using Kind = Object::Kind;
    switch (op) {
      case 0x80: {  // PROTO
        const std::uint8_t protocol = in_.u8();
        if (protocol > 5) fail("unsupported protocol " + std::to_string(protocol));
        break;
      }
      case 0x95:
        in_.le(8);
        break;  // FRAME: a length hint only
      case '(':
        m_.mark();
        break;
      case '0':
        m_.pop();
        break;  // POP
      case '1':
        m_.pop_mark();
        break;  // POP_MARK
      case '2':
        m_.push(m_.top());
        break;  // DUP
      case 'N':
        m_.push_scalar(Object());
        break;
      case 0x88:
        m_.push_scalar(Object::boolean(true));
        break;
      case 0x89:
        m_.push_scalar(Object::boolean(false));
        break;
      case 'J':
        m_.push_scalar(
            Object::from_int64(static_cast<std::int32_t>(static_cast<std::uint32_t>(in_.le(4)))));
        break;
      case 'K':
        m_.push_scalar(Object::from_int64(static_cast<std::int64_t>(in_.le(1))));
        break;
      case 'M':
        m_.push_scalar(Object::from_int64(static_cast<std::int64_t>(in_.le(2))));
        break;
      case 0x8a: {  // LONG1
        const std::string_view bytes = in_.take(in_.le(1));
        m_.push_scalar(Object::integer_from_bytes(bytes), bytes.size());
        break;
      }
      case 0x8b: {  // LONG4
        const auto size = static_cast<std::int32_t>(static_cast<std::uint32_t>(in_.le(4)));
        if (size < 0) fail("LONG4 with a negative length");
        const std::string_view bytes = in_.take(static_cast<std::uint64_t>(size));
        m_.push_scalar(Object::integer_from_bytes(bytes), bytes.size());
        break;
      }
      case 'G': {  // BINFLOAT, big-endian
        const std::string_view bytes = in_.take(8);
        std::uint64_t bits = 0;
        for (char byte : bytes) bits = (bits << 8) | static_cast<unsigned char>(byte);
        m_.push_scalar(Object::floating(std::bit_cast<double>(bits)));
        break;
      }
      case 0x8c:
        m_.push_string(in_.take(in_.le(1)), true);
        break;  // SHORT_BINUNICODE
      case 'X':
        m_.push_string(in_.take(in_.le(4)), true);
        break;  // BINUNICODE
      case 0x8d:
        m_.push_string(in_.take(in_.le(8)), true);
        break;  // BINUNICODE8
      case 'C':
        m_.push_string(in_.take(in_.le(1)), false);
        break;  // SHORT_BINBYTES
      case 'B':
        m_.push_string(in_.take(in_.le(4)), false);
        break;  // BINBYTES
      case 0x8e:
      case 0x96:
        m_.push_string(in_.take(in_.le(8)), false);
        break;  // BINBYTES8, BYTEARRAY8 (loads as bytes)
      case ')':
        m_.push_container(Kind::tuple);
        break;
      case 't':
        m_.push_container(Kind::tuple, m_.pop_mark());
        break;
      case 0x85:
      case 0x86:
      case 0x87: {  // TUPLE1..3
        std::vector<std::uint32_t> items(op - 0x84);
        for (std::size_t i = items.size(); i-- > 0;) items[i] = m_.pop();
        m_.push_container(Kind::tuple, std::move(items));
        break;
      }
      case ']':
        m_.push_container(Kind::list);
        break;
      case 'l':
        m_.push_container(Kind::list, m_.pop_mark());
        break;
      case 'a': {  // APPEND
        const std::uint32_t item = m_.pop();
        m_.children_of_top(Kind::list, "APPEND").push_back(item);
        break;
      }
      case 'e':
        m_.extend_top(Kind::list, "APPENDS");
        break;
      case '}':
        m_.push_container(Kind::dict);
        break;
      case 'd': {  // DICT
        std::vector<std::uint32_t> items = m_.pop_mark();
        if (items.size() % 2 != 0) fail("DICT with an odd number of items");
        m_.push_container(Kind::dict, std::move(items));
        break;
      }
      case 's': {  // SETITEM
        const std::uint32_t value = m_.pop();
        const std::uint32_t key = m_.pop();
        auto& children = m_.children_of_top(Kind::dict, "SETITEM");
        children.push_back(key);
        children.push_back(value);
        break;
      }
      case 'u': {  // SETITEMS
        std::vector<std::uint32_t> items = m_.pop_mark();
        if (items.size() % 2 != 0) fail("SETITEMS with an odd number of items");
        auto& children = m_.children_of_top(Kind::dict, "SETITEMS");
        children.insert(children.end(), items.begin(), items.end());
        break;
      }
      case 0x8f:
        m_.push_container(Kind::set);
        break;  // EMPTY_SET
      case 0x90:
        m_.extend_top(Kind::set, "ADDITEMS");
        break;
      case 0x91:
        m_.push_container(Kind::frozenset, m_.pop_mark());
        break;
      case 'h':
        m_.memo_get(in_.le(1));
        break;  // BINGET
      case 'j':
        m_.memo_get(in_.le(4));
        break;  // LONG_BINGET
      case 'q':
        m_.memo_put(in_.le(1));
        break;  // BINPUT
      case 'r':
        m_.memo_put(in_.le(4));
        break;  // LONG_BINPUT
      case 0x94:
        m_.memo_put_next();
        break;     // MEMOIZE
      case 'c': {  // GLOBAL
        const std::string_view module = in_.line();
        const std::string_view name = in_.line();
        m_.push_global(module, name);
        break;
      }
      case 0x93: {  // STACK_GLOBAL
        const Node& name = m_.node(m_.pop());
        const Node& module = m_.node(m_.pop());
        if (module.kind != Kind::str || name.kind != Kind::str || module.global != Global::none ||
            name.global != Global::none)
          fail("STACK_GLOBAL without two str");
        m_.push_global(module.scalar.as_str(), name.scalar.as_str());
        break;
      }
      case 'R':
        reduce(m_);
        break;
      default:
        refuse(op);
    }
  }

  Input in_;
  Machine m_;
};

}  // namespace

Object loads_object(std::string_view data) {
  try {
    return Loader(data).run();
  } catch (const std::bad_alloc&) {
    throw UnpicklingError("mp::pickle::python::loads: out of memory for this pickle");
  } catch (const std::length_error&) {
    throw UnpicklingError("mp::pickle::python::loads: a size beyond what can be allocated");
  }
}

void throw_type_mismatch(const Object& found, std::string_view expected,
                         std::string_view cpp_type) {
  throw UnpicklingError("mp::pickle::python::loads: expected a Python " + std::string(expected) +
                        " for " + std::string(cpp_type) + ", got " +
                        std::string(found.type_name()));
}

void throw_out_of_range(const Object& found, std::string_view cpp_type) {
  throw UnpicklingError("mp::pickle::python::loads: int " + found.int_decimal() +
                        " does not fit in " + std::string(cpp_type));
}

}  // namespace detail

}  // namespace mp::pickle::python
