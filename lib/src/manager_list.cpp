// SharedList's store (ListCore): an array of item offsets in a manager's segment. Each
// operation is one ManagerTransaction (manager_segment.hpp).
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <iterator>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "manager_segment.hpp"

namespace mp::detail {
namespace {

// The root's words after kRootKind and kRootFingerprint.
constexpr std::uint64_t kListItems = 2;
constexpr std::uint64_t kListCapacity = 3;
constexpr std::uint64_t kListLength = 4;
constexpr std::uint64_t kListWords = 5;

// Python's index normalization; throws std::out_of_range (IndexError).
std::uint64_t list_position(const ManagerTransaction& t, std::uint64_t root, std::int64_t index,
                            const char* what) {
  const auto length = static_cast<std::int64_t>(t.root_word(root, kListLength));
  const std::int64_t position = index < 0 ? index + length : index;
  if (position < 0 || position >= length)
    throw std::out_of_range(std::string("mp::SharedList::") + what + ": index " +
                            std::to_string(index) + " out of range (size " +
                            std::to_string(length) + ")");
  return static_cast<std::uint64_t>(position);
}

// Replaces the items array by a fresh one of at least `capacity` words holding the items
// of the old one with `skip` left out (if < length) and a gap of `gap_size` words at
// `gap` (if gap_size > 0). Returns the new array; sets length to the new count.
std::uint64_t list_rebuild(ManagerTransaction& t, std::uint64_t root, std::uint64_t capacity,
                           std::uint64_t skip, std::uint64_t gap, std::uint64_t gap_size) {
  const std::uint64_t old_items = t.root_word(root, kListItems);
  const std::uint64_t length = t.root_word(root, kListLength);
  const std::uint64_t items = t.allocate_array(capacity);
  std::uint64_t out = 0;
  for (std::uint64_t i = 0; i <= length; ++i) {
    if (i == gap) out += gap_size;
    if (i == length) break;
    if (i == skip) continue;
    t.word(items + out * 8) = t.word(old_items + i * 8);
    ++out;
  }
  t.set_root_word(root, kListItems, items);
  t.set_root_word(root, kListCapacity, capacity);
  t.set_root_word(root, kListLength, out);
  t.free_later(old_items);
  return items;
}

std::optional<std::uint64_t> list_find(const ManagerTransaction& t, std::uint64_t root,
                                       std::string_view item) {
  const std::uint64_t items = t.root_word(root, kListItems);
  const std::uint64_t length = t.root_word(root, kListLength);
  for (std::uint64_t i = 0; i < length; ++i)
    if (item_at(t, t.word(items + i * 8)) == item) return i;
  return std::nullopt;
}

void list_take(ManagerTransaction& t, std::uint64_t root, std::uint64_t position) {
  const std::uint64_t items = t.root_word(root, kListItems);
  const std::uint64_t length = t.root_word(root, kListLength);
  t.free_later(t.word(items + position * 8));
  if (position + 1 == length)
    t.set_root_word(root, kListLength, length - 1);
  else  // shifting would log every moved word: copy into a fresh array instead
    list_rebuild(t, root, t.root_word(root, kListCapacity), position, length + 1, 0);
}

}  // namespace

ListCore::ListCore(const ManagerCore& manager, std::uint64_t fingerprint) {
  ManagerTransaction t(manager);
  const std::uint64_t root = t.allocate_root(ContainerKind::list, fingerprint, kListWords);
  t.word(root + kListItems * 8) = t.allocate_array(8);
  t.word(root + kListCapacity * 8) = 8;
  t.word(root + kListLength * 8) = 0;
  t.commit();
  manager_ = manager;
  root_ = root;
}

void ListCore::append(std::span<const std::string> new_items) const {
  ManagerTransaction t(manager_);
  const std::uint64_t length = t.root_word(root_, kListLength);
  std::uint64_t items = t.root_word(root_, kListItems);
  if (length + new_items.size() > t.root_word(root_, kListCapacity)) {
    items = list_rebuild(t, root_, std::max<std::uint64_t>(8, 2 * (length + new_items.size())),
                         length, length + 1, 0);
  }
  // Past `length`: unreachable until the logged write of the length.
  for (std::size_t i = 0; i < new_items.size(); ++i)
    t.word(items + (length + i) * 8) = new_item(t, new_items[i]);
  t.set_root_word(root_, kListLength, length + new_items.size());
  t.commit();
}

void ListCore::get(std::int64_t index, std::string& out) const {
  ManagerTransaction t(manager_);
  const std::uint64_t position = list_position(t, root_, index, "get");
  out.assign(item_at(t, t.word(t.root_word(root_, kListItems) + position * 8)));
  t.commit();
}

void ListCore::set(std::int64_t index, std::string_view item) const {
  ManagerTransaction t(manager_);
  const std::uint64_t position = list_position(t, root_, index, "set");
  const std::uint64_t slot = t.root_word(root_, kListItems) + position * 8;
  const std::uint64_t old = t.word(slot);
  t.write(slot, new_item(t, item));
  t.free_later(old);
  t.commit();
}

void ListCore::pop(std::int64_t index, std::string& out) const {
  ManagerTransaction t(manager_);
  const std::uint64_t position = list_position(t, root_, index, "pop");
  out.assign(item_at(t, t.word(t.root_word(root_, kListItems) + position * 8)));
  list_take(t, root_, position);
  t.commit();
}

void ListCore::insert(std::int64_t index, std::string_view item) const {
  ManagerTransaction t(manager_);
  const auto length = static_cast<std::int64_t>(t.root_word(root_, kListLength));
  std::int64_t position =
      index < 0 ? std::max<std::int64_t>(0, index + length) : std::min<std::int64_t>(index, length);
  const auto capacity = std::max<std::uint64_t>(t.root_word(root_, kListCapacity),
                                                static_cast<std::uint64_t>(length) + 1);
  // A fresh array with a gap: inserting in place would log every moved word.
  const std::uint64_t node = new_item(t, item);
  const std::uint64_t items =
      list_rebuild(t, root_, std::max<std::uint64_t>(capacity, 8),
                   static_cast<std::uint64_t>(length), static_cast<std::uint64_t>(position), 1);
  t.word(items + static_cast<std::uint64_t>(position) * 8) = node;
  t.set_root_word(root_, kListLength, static_cast<std::uint64_t>(length) + 1);
  t.commit();
}

std::optional<std::size_t> ListCore::index(std::string_view item) const {
  ManagerTransaction t(manager_);
  const std::optional<std::uint64_t> found = list_find(t, root_, item);
  t.commit();
  return found;
}

bool ListCore::remove(std::string_view item) const {
  ManagerTransaction t(manager_);
  const std::optional<std::uint64_t> found = list_find(t, root_, item);
  if (found) list_take(t, root_, *found);
  t.commit();
  return found.has_value();
}

std::size_t ListCore::size() const {
  ManagerTransaction t(manager_);
  const std::uint64_t length = t.root_word(root_, kListLength);
  t.commit();
  return length;
}

std::size_t ListCore::count(std::string_view item) const {
  ManagerTransaction t(manager_);
  const std::uint64_t items = t.root_word(root_, kListItems);
  const std::uint64_t length = t.root_word(root_, kListLength);
  std::size_t found = 0;
  for (std::uint64_t i = 0; i < length; ++i) found += item_at(t, t.word(items + i * 8)) == item;
  t.commit();
  return found;
}

void ListCore::rewrite(rewrite_function function, void* context) const {
  ManagerTransaction t(manager_);
  const std::uint64_t old_items = t.root_word(root_, kListItems);
  const std::uint64_t length = t.root_word(root_, kListLength);
  std::vector<std::string> list;
  list.reserve(length);
  for (std::uint64_t i = 0; i < length; ++i)
    list.emplace_back(item_at(t, t.word(old_items + i * 8)));
  function(context, list);  // may throw: rolled back
  t.reset_scratch();        // the function may have run operations of other managers
  // A fresh array and fresh nodes: a few logged root words, whatever the list's length.
  const std::uint64_t capacity = std::max<std::uint64_t>(8, list.size());
  const std::uint64_t items = t.allocate_array(capacity);
  for (std::size_t i = 0; i < list.size(); ++i) t.word(items + i * 8) = new_item(t, list[i]);
  for (std::uint64_t i = 0; i < length; ++i) t.free_later(t.word(old_items + i * 8));
  t.free_later(old_items);
  t.set_root_word(root_, kListItems, items);
  t.set_root_word(root_, kListCapacity, capacity);
  t.set_root_word(root_, kListLength, list.size());
  t.commit();
}

void ListCore::repeat(std::int64_t times) const {
  ManagerTransaction t(manager_);
  const std::uint64_t old_items = t.root_word(root_, kListItems);
  const std::uint64_t length = t.root_word(root_, kListLength);
  const std::uint64_t copies = times < 0 ? 0 : static_cast<std::uint64_t>(times);
  // Saturated: an absurd count fails to allocate (mp::HeapExhausted), it does not wrap.
  const std::uint64_t limit = UINT64_MAX / 16;
  const std::uint64_t total = length == 0 ? 0 : (copies > limit / length ? limit : length * copies);
  const std::uint64_t capacity = std::max<std::uint64_t>(8, total);
  const std::uint64_t items = t.allocate_array(capacity);
  for (std::uint64_t i = 0; i < total; ++i)
    t.word(items + i * 8) = new_item(t, item_at(t, t.word(old_items + (i % length) * 8)));
  for (std::uint64_t i = 0; i < length; ++i) t.free_later(t.word(old_items + i * 8));
  t.free_later(old_items);
  t.set_root_word(root_, kListItems, items);
  t.set_root_word(root_, kListCapacity, capacity);
  t.set_root_word(root_, kListLength, total);
  t.commit();
}

void ListCore::reverse() const {
  rewrite([](void*, std::vector<std::string>& items) { std::reverse(items.begin(), items.end()); },
          nullptr);
}

namespace {

struct SliceArguments {
  std::optional<std::int64_t> start, stop;
  std::int64_t step;
  std::vector<std::string>* replacement;
};

}  // namespace

void ListCore::erase_slice(std::optional<std::int64_t> start, std::optional<std::int64_t> stop,
                           std::int64_t step) const {
  SliceArguments slice{start, stop, step, nullptr};
  rewrite(
      [](void* context, std::vector<std::string>& items) {
        const auto& s = *static_cast<const SliceArguments*>(context);
        std::vector<bool> drop(items.size());
        for (const std::size_t i : slice_positions(s.start, s.stop, s.step, items.size()))
          drop[i] = true;
        std::vector<std::string> kept;
        for (std::size_t i = 0; i < items.size(); ++i)
          if (!drop[i]) kept.push_back(std::move(items[i]));
        items = std::move(kept);
      },
      &slice);
}

void ListCore::assign_slice(std::optional<std::int64_t> start, std::optional<std::int64_t> stop,
                            std::int64_t step, std::vector<std::string> replacement) const {
  SliceArguments slice{start, stop, step, &replacement};
  rewrite(
      [](void* context, std::vector<std::string>& items) {
        const auto& s = *static_cast<const SliceArguments*>(context);
        std::vector<std::string>& values = *s.replacement;
        const std::vector<std::size_t> selected =
            slice_positions(s.start, s.stop, s.step, items.size());
        if (s.step == 1) {
          // Where a slice that selects nothing starts (where Python inserts).
          const auto length = static_cast<std::int64_t>(items.size());
          std::int64_t begin = s.start.value_or(0);
          if (begin < 0) begin += length;
          const std::size_t first =
              selected.empty()
                  ? static_cast<std::size_t>(std::clamp<std::int64_t>(begin, 0, length))
                  : selected[0];
          const auto at = items.begin() + static_cast<std::ptrdiff_t>(first);
          items.erase(at, at + static_cast<std::ptrdiff_t>(selected.size()));
          items.insert(items.begin() + static_cast<std::ptrdiff_t>(first),
                       std::make_move_iterator(values.begin()),
                       std::make_move_iterator(values.end()));
          return;
        }
        if (selected.size() != values.size())
          throw std::invalid_argument("mp::SharedList::set: attempt to assign a sequence of size " +
                                      std::to_string(values.size()) +
                                      " to an extended slice of size " +
                                      std::to_string(selected.size()));
        for (std::size_t i = 0; i < selected.size(); ++i) items[selected[i]] = std::move(values[i]);
      },
      &slice);
}

std::vector<std::size_t> slice_positions(std::optional<std::int64_t> start,
                                         std::optional<std::int64_t> stop, std::int64_t step,
                                         std::size_t size) {
  // Python's PySlice_AdjustIndices.
  if (step == 0) throw std::invalid_argument("mp::SharedList: slice step cannot be zero");
  const auto length = static_cast<std::int64_t>(size);
  const auto adjust = [&](std::optional<std::int64_t> index, std::int64_t fallback) {
    if (!index) return fallback;
    std::int64_t value = *index;
    if (value < 0) {
      value += length;
      if (value < 0) value = step < 0 ? -1 : 0;
    } else if (value >= length) {
      value = step < 0 ? length - 1 : length;
    }
    return value;
  };
  const std::int64_t first = adjust(start, step < 0 ? length - 1 : 0);
  const std::int64_t last = adjust(stop, step < 0 ? -1 : length);
  std::vector<std::size_t> positions;
  for (std::int64_t i = first; step > 0 ? i < last : i > last; i += step)
    positions.push_back(static_cast<std::size_t>(i));
  return positions;
}

void ListCore::clear() const {
  ManagerTransaction t(manager_);
  const std::uint64_t items = t.root_word(root_, kListItems);
  const std::uint64_t length = t.root_word(root_, kListLength);
  for (std::uint64_t i = 0; i < length; ++i) t.free_later(t.word(items + i * 8));
  t.set_root_word(root_, kListLength, 0);
  t.commit();
}

void ListCore::snapshot(std::vector<std::string>& out) const {
  ManagerTransaction t(manager_);
  const std::uint64_t items = t.root_word(root_, kListItems);
  const std::uint64_t length = t.root_word(root_, kListLength);
  out.reserve(length);
  for (std::uint64_t i = 0; i < length; ++i) out.emplace_back(item_at(t, t.word(items + i * 8)));
  t.commit();
}

}  // namespace mp::detail
