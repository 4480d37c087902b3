// SharedDict's and Namespace's store (DictCore): a compact hash table as CPython's dict,
// whose entries array keeps insertion order, in a manager's segment. Each operation is
// one ManagerTransaction (manager_segment.hpp).
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "manager_segment.hpp"

namespace mp::detail {
namespace {

// The root's words after kRootKind and kRootFingerprint.
constexpr std::uint64_t kDictTable = 2;     // offset of the index table (0: cleared)
constexpr std::uint64_t kDictCapacity = 3;  // slots in the table (a power of two)
constexpr std::uint64_t kDictEntries = 4;   // offset of the entries array
constexpr std::uint64_t kDictUsable = 5;    // capacity of the entries array
constexpr std::uint64_t kDictUsed = 6;      // entries appended (deleted ones included)
constexpr std::uint64_t kDictCount = 7;     // live entries
constexpr std::uint64_t kDictWords = 8;

// Index table slots: 0 empty, 1 deleted, else (hash tag << 40) | (entry index + 2), as
// CPython's compact dict (the entries array keeps insertion order).
constexpr std::uint64_t kSlotEmpty = 0;
constexpr std::uint64_t kSlotDeleted = 1;
constexpr unsigned kTagShift = 40;
constexpr std::uint64_t kIndexMask = (std::uint64_t{1} << kTagShift) - 1;

// A dict node: hash, key length, value length, key bytes, value bytes.
constexpr std::uint64_t kNodeHeader = 16;

std::uint64_t mix(std::uint64_t x) {
  x ^= x >> 30;
  x *= 0xbf58476d1ce4e5b9;
  x ^= x >> 27;
  x *= 0x94d049bb133111eb;
  x ^= x >> 31;
  return x;
}

// The same in every process (no per-process seed): the table is shared.
std::uint64_t hash_bytes(std::string_view bytes) {
  std::uint64_t h = 0x9e3779b97f4a7c15 ^ bytes.size();
  std::size_t i = 0;
  for (; i + 8 <= bytes.size(); i += 8) {
    std::uint64_t word;
    std::memcpy(&word, bytes.data() + i, 8);
    h = mix(h ^ word);
  }
  if (i < bytes.size()) {
    std::uint64_t word = 0;
    std::memcpy(&word, bytes.data() + i, bytes.size() - i);
    h = mix(h ^ word ^ 0xff);
  }
  return h;
}

struct NodeView {
  std::uint64_t hash;
  std::string_view key;
  std::string_view value;
};

NodeView node_at(const ManagerTransaction& t, std::uint64_t node) {
  const std::byte* p = t.at(node);
  NodeView view;
  std::uint32_t key_size, value_size;
  std::memcpy(&view.hash, p, 8);
  std::memcpy(&key_size, p + 8, 4);
  std::memcpy(&value_size, p + 12, 4);
  const char* chars = reinterpret_cast<const char*>(p + kNodeHeader);
  view.key = std::string_view(chars, key_size);
  view.value = std::string_view(chars + key_size, value_size);
  return view;
}

std::uint64_t new_node(ManagerTransaction& t, std::uint64_t hash, std::string_view key,
                       std::string_view value) {
  if (key.size() > UINT32_MAX || value.size() > UINT32_MAX)
    throw std::length_error("mp::SharedDict: a key or value of 4 GiB or more");
  const std::uint64_t node = t.allocate(kNodeHeader + key.size() + value.size());
  std::byte* p = t.at(node);
  const auto key_size = static_cast<std::uint32_t>(key.size());
  const auto value_size = static_cast<std::uint32_t>(value.size());
  std::memcpy(p, &hash, 8);
  std::memcpy(p + 8, &key_size, 4);
  std::memcpy(p + 12, &value_size, 4);
  std::memcpy(p + kNodeHeader, key.data(), key.size());
  std::memcpy(p + kNodeHeader + key.size(), value.data(), value.size());
  return node;
}

struct Lookup {
  bool found = false;
  std::uint64_t slot = 0;         // where the key is, or where to insert it
  std::uint64_t entry_index = 0;  // if found
  std::uint64_t node = 0;         // if found
};

Lookup dict_find(const ManagerTransaction& t, std::uint64_t root, std::string_view key,
                 std::uint64_t hash) {
  const std::uint64_t table = t.root_word(root, kDictTable);
  const std::uint64_t mask = t.root_word(root, kDictCapacity) - 1;
  const std::uint64_t entries = t.root_word(root, kDictEntries);
  const std::uint64_t tag = hash >> kTagShift;
  Lookup result;
  if (table == 0) return result;  // cleared: no table until the next insertion
  bool have_insert_slot = false;
  // There is always an empty slot: used entries stay below 2/3 of the slots.
  for (std::uint64_t i = hash & mask;; i = (i + 1) & mask) {
    const std::uint64_t slot = t.word(table + i * 8);
    if (slot == kSlotEmpty) {
      if (!have_insert_slot) result.slot = i;
      return result;
    }
    if (slot == kSlotDeleted) {
      if (!have_insert_slot) {
        result.slot = i;
        have_insert_slot = true;
      }
      continue;
    }
    if ((slot >> kTagShift) != tag) continue;
    const std::uint64_t index = (slot & kIndexMask) - 2;
    const std::uint64_t node = t.word(entries + index * 8);
    const NodeView view = node_at(t, node);
    if (view.hash == hash && view.key == key) {
      result.found = true;
      result.slot = i;
      result.entry_index = index;
      result.node = node;
      return result;
    }
  }
}

std::uint64_t table_slot_value(std::uint64_t hash, std::uint64_t index) {
  return ((hash >> kTagShift) << kTagShift) | (index + 2);
}

// Replaces the table and entries by fresh ones with room for `live` entries and more,
// holding the live entries compacted (in order). A few logged root words.
void dict_rebuild(ManagerTransaction& t, std::uint64_t root, std::uint64_t live) {
  std::uint64_t usable_wanted = std::max<std::uint64_t>(5, live * 2);
  std::uint64_t capacity = 8;
  while (capacity * 2 / 3 < usable_wanted) capacity *= 2;
  const std::uint64_t usable = capacity * 2 / 3;
  const std::uint64_t table = t.allocate_array(capacity);
  const std::uint64_t entries = t.allocate_array(usable);
  const std::uint64_t old_table = t.root_word(root, kDictTable);
  const std::uint64_t old_entries = t.root_word(root, kDictEntries);
  const std::uint64_t used = t.root_word(root, kDictUsed);
  std::uint64_t kept = 0;
  for (std::uint64_t i = 0; i < used; ++i) {
    const std::uint64_t node = t.word(old_entries + i * 8);
    if (node == 0) continue;
    const std::uint64_t hash = node_at(t, node).hash;
    std::uint64_t slot = hash & (capacity - 1);
    while (t.word(table + slot * 8) != kSlotEmpty) slot = (slot + 1) & (capacity - 1);
    t.word(table + slot * 8) = table_slot_value(hash, kept);
    t.word(entries + kept * 8) = node;
    ++kept;
  }
  t.set_root_word(root, kDictTable, table);
  t.set_root_word(root, kDictCapacity, capacity);
  t.set_root_word(root, kDictEntries, entries);
  t.set_root_word(root, kDictUsable, usable);
  t.set_root_word(root, kDictUsed, kept);
  if (old_table != 0) {
    t.free_later(old_table);
    t.free_later(old_entries);
  }
}

void dict_store(ManagerTransaction& t, std::uint64_t root, std::string_view key,
                std::string_view value) {
  const std::uint64_t hash = hash_bytes(key);
  Lookup found = dict_find(t, root, key, hash);
  if (found.found) {
    const std::uint64_t node = new_node(t, hash, key, value);
    t.write(t.root_word(root, kDictEntries) + found.entry_index * 8, node);
    t.free_later(found.node);
    return;
  }
  if (t.root_word(root, kDictUsed) >= t.root_word(root, kDictUsable)) {
    dict_rebuild(t, root, t.root_word(root, kDictCount) + 1);
    found = dict_find(t, root, key, hash);
  }
  const std::uint64_t node = new_node(t, hash, key, value);
  const std::uint64_t used = t.root_word(root, kDictUsed);
  // Past `used`: unreachable until the logged write of `used` below.
  t.word(t.root_word(root, kDictEntries) + used * 8) = node;
  t.set_root_word(root, kDictUsed, used + 1);
  t.write(t.root_word(root, kDictTable) + found.slot * 8, table_slot_value(hash, used));
  t.set_root_word(root, kDictCount, t.root_word(root, kDictCount) + 1);
}

void dict_remove(ManagerTransaction& t, std::uint64_t root, const Lookup& found) {
  t.write(t.root_word(root, kDictEntries) + found.entry_index * 8, 0);
  t.write(t.root_word(root, kDictTable) + found.slot * 8, kSlotDeleted);
  t.set_root_word(root, kDictCount, t.root_word(root, kDictCount) - 1);
  t.free_later(found.node);
}

}  // namespace

DictCore::DictCore(const ManagerCore& manager, ContainerKind kind, std::uint64_t fingerprint) {
  ManagerTransaction t(manager);
  const std::uint64_t root = t.allocate_root(kind, fingerprint, kDictWords);
  t.word(root + kDictTable * 8) = t.allocate_array(8);
  t.word(root + kDictCapacity * 8) = 8;
  t.word(root + kDictEntries * 8) = t.allocate_array(5);
  t.word(root + kDictUsable * 8) = 5;
  t.word(root + kDictUsed * 8) = 0;
  t.word(root + kDictCount * 8) = 0;
  t.commit();
  manager_ = manager;
  root_ = root;
}

void DictCore::set(std::string_view key, std::string_view value) const {
  ManagerTransaction t(manager_);
  dict_store(t, root_, key, value);
  t.commit();
}

bool DictCore::get(std::string_view key, std::string& out) const {
  ManagerTransaction t(manager_);
  const Lookup found = dict_find(t, root_, key, hash_bytes(key));
  if (found.found) out.assign(node_at(t, found.node).value);
  t.commit();
  return found.found;
}

bool DictCore::contains(std::string_view key) const {
  ManagerTransaction t(manager_);
  const bool found = dict_find(t, root_, key, hash_bytes(key)).found;
  t.commit();
  return found;
}

bool DictCore::erase(std::string_view key, std::string* out) const {
  ManagerTransaction t(manager_);
  const Lookup found = dict_find(t, root_, key, hash_bytes(key));
  if (found.found) {
    if (out) out->assign(node_at(t, found.node).value);
    dict_remove(t, root_, found);
  }
  t.commit();
  return found.found;
}

bool DictCore::popitem(std::string& key, std::string& value) const {
  ManagerTransaction t(manager_);
  const std::uint64_t entries = t.root_word(root_, kDictEntries);
  std::uint64_t used = t.root_word(root_, kDictUsed);
  while (used > 0 && t.word(entries + (used - 1) * 8) == 0) --used;
  if (used == 0) {
    t.commit();
    return false;
  }
  const NodeView view = node_at(t, t.word(entries + (used - 1) * 8));
  key.assign(view.key);
  value.assign(view.value);
  dict_remove(t, root_, dict_find(t, root_, view.key, view.hash));
  t.commit();
  return true;
}

void DictCore::setdefault(std::string_view key, std::string_view value, std::string& out) const {
  ManagerTransaction t(manager_);
  const Lookup found = dict_find(t, root_, key, hash_bytes(key));
  if (found.found) {
    out.assign(node_at(t, found.node).value);
  } else {
    dict_store(t, root_, key, value);
    out.assign(value);
  }
  t.commit();
}

void DictCore::update(const std::vector<std::string>& keys,
                      const std::vector<std::string>& values) const {
  ManagerTransaction t(manager_);
  // Many keys: fresh arrays first, so that their slots and entries are written unlogged.
  if (keys.size() > 32) dict_rebuild(t, root_, t.root_word(root_, kDictCount) + keys.size());
  for (std::size_t i = 0; i < keys.size(); ++i) dict_store(t, root_, keys[i], values[i]);
  t.commit();
}

void DictCore::modify(std::string_view key, modify_function function, void* context) const {
  ManagerTransaction t(manager_);
  // Copies: the user's function may pickle other keys into the per-thread buffers.
  const std::string key_copy(key);
  const Lookup found = dict_find(t, root_, key_copy, hash_bytes(key_copy));
  std::string old;
  if (found.found) old.assign(node_at(t, found.node).value);
  std::string& out = scratch().copy;
  function(context, found.found ? &old : nullptr, out);  // may throw: rolled back
  t.reset_scratch();  // the function may have run operations of other managers
  dict_store(t, root_, key_copy, out);
  t.commit();
}

std::size_t DictCore::size() const {
  ManagerTransaction t(manager_);
  const std::uint64_t count = t.root_word(root_, kDictCount);
  t.commit();
  return count;
}

void DictCore::clear() const {
  ManagerTransaction t(manager_);
  const std::uint64_t entries = t.root_word(root_, kDictEntries);
  const std::uint64_t used = t.root_word(root_, kDictUsed);
  for (std::uint64_t i = 0; i < used; ++i)
    if (const std::uint64_t node = t.word(entries + i * 8)) t.free_later(node);
  // No arrays at all until the next insertion allocates them: clear() allocates nothing,
  // so it works on a full segment too.
  if (entries != 0) {
    t.free_later(t.root_word(root_, kDictTable));
    t.free_later(entries);
  }
  for (const std::uint64_t index :
       {kDictTable, kDictCapacity, kDictEntries, kDictUsable, kDictUsed, kDictCount})
    t.set_root_word(root_, index, 0);
  t.commit();
}

void DictCore::snapshot(std::vector<std::string>* keys, std::vector<std::string>* values) const {
  ManagerTransaction t(manager_);
  const std::uint64_t entries = t.root_word(root_, kDictEntries);
  const std::uint64_t used = t.root_word(root_, kDictUsed);
  const std::uint64_t count = t.root_word(root_, kDictCount);
  if (keys) keys->reserve(count);
  if (values) values->reserve(count);
  for (std::uint64_t i = 0; i < used; ++i) {
    const std::uint64_t node = t.word(entries + i * 8);
    if (node == 0) continue;
    const NodeView view = node_at(t, node);
    if (keys) keys->emplace_back(view.key);
    if (values) values->emplace_back(view.value);
  }
  t.commit();
}

}  // namespace mp::detail
