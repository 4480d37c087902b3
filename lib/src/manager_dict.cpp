// SharedDict's and Namespace's store (DictCore): compact hash tables as CPython's dict,
// whose entries arrays keep insertion order, in a manager's segment. A dict is one such
// table (a stripe) per lane of its segment; a key's hash picks its stripe, so writers of
// different keys mostly hold different lanes. Each node carries a sequence number from
// the monotonic clock (strictly increasing in each thread, and read under the stripe's
// lane), which orders the entries of all stripes in insertion order. Each operation is
// one ManagerTransaction (manager_segment.hpp): on the key's lane, or on every lane when
// it reads or changes all stripes (size, iteration, clear, update, popitem).
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "manager_segment.hpp"

namespace mp::detail {
namespace {

// The root's words after kRootKind and kRootFingerprint: how many stripes, then the
// offset of each stripe's root. Both never change after the dict is made.
constexpr std::uint64_t kDictStripeCount = 2;
constexpr std::uint64_t kDictStripe0 = 3;

// A stripe root's words (the first two unused).
constexpr std::uint64_t kDictTable = 2;     // offset of the index table
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

// A dict node: hash, key length, value length, sequence number, key bytes, value bytes.
constexpr std::uint64_t kNodeHeader = 24;

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
  std::uint64_t sequence;
  std::string_view key;
  std::string_view value;
};

// A new key's sequence number: the monotonic clock, so that an insertion that happens
// after another (in any process) numbers after it; strictly increasing in a thread.
std::uint64_t next_sequence() {
  thread_local std::uint64_t last = 0;
  const auto now =
      static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                     std::chrono::steady_clock::now().time_since_epoch())
                                     .count());
  last = std::max(now, last + 1);
  return last;
}

NodeView node_at(const ManagerTransaction& t, std::uint64_t node) {
  const std::byte* p = t.at(node);
  NodeView view;
  std::uint32_t key_size, value_size;
  std::memcpy(&view.hash, p, 8);
  std::memcpy(&key_size, p + 8, 4);
  std::memcpy(&value_size, p + 12, 4);
  std::memcpy(&view.sequence, p + 16, 8);
  const char* chars = reinterpret_cast<const char*>(p + kNodeHeader);
  view.key = std::string_view(chars, key_size);
  view.value = std::string_view(chars + key_size, value_size);
  return view;
}

std::uint64_t new_node(ManagerTransaction& t, std::uint64_t hash, std::uint64_t sequence,
                       std::string_view key, std::string_view value) {
  if (key.size() > UINT32_MAX || value.size() > UINT32_MAX)
    throw std::length_error("mp::SharedDict: a key or value of 4 GiB or more");
  const std::uint64_t node = t.allocate(kNodeHeader + key.size() + value.size());
  std::byte* p = t.at(node);
  const auto key_size = static_cast<std::uint32_t>(key.size());
  const auto value_size = static_cast<std::uint32_t>(value.size());
  std::memcpy(p, &hash, 8);
  std::memcpy(p + 8, &key_size, 4);
  std::memcpy(p + 12, &value_size, 4);
  std::memcpy(p + 16, &sequence, 8);
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
  t.free_later(old_table);
  t.free_later(old_entries);
}

void dict_store(ManagerTransaction& t, std::uint64_t root, std::string_view key, std::uint64_t hash,
                std::string_view value) {
  Lookup found = dict_find(t, root, key, hash);
  if (found.found) {  // keeps its place in the order
    const std::uint64_t node = new_node(t, hash, node_at(t, found.node).sequence, key, value);
    t.write(t.root_word(root, kDictEntries) + found.entry_index * 8, node);
    t.free_later(found.node);
    return;
  }
  if (t.root_word(root, kDictUsed) >= t.root_word(root, kDictUsable)) {
    dict_rebuild(t, root, t.root_word(root, kDictCount) + 1);
    found = dict_find(t, root, key, hash);
  }
  const std::uint64_t node = new_node(t, hash, next_sequence(), key, value);
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

void init_stripe(ManagerTransaction& t, std::uint64_t stripe) {
  t.word(stripe + kDictTable * 8) = t.allocate_array(8);
  t.word(stripe + kDictCapacity * 8) = 8;
  t.word(stripe + kDictEntries * 8) = t.allocate_array(5);
  t.word(stripe + kDictUsable * 8) = 5;
  t.word(stripe + kDictUsed * 8) = 0;
  t.word(stripe + kDictCount * 8) = 0;
}

// A key's stripe and the lane that guards it, read without a lane (they never change).
struct Stripe {
  std::size_t lane;
  std::uint64_t root;
};

Stripe stripe_of(const ManagerCore& manager, std::uint64_t root, std::uint64_t hash) {
  const std::uint64_t count = ManagerTransaction::fixed_word(manager, root + kDictStripeCount * 8);
  const std::uint64_t stripe = (hash >> 56) % count;
  return {stripe, ManagerTransaction::fixed_word(manager, root + (kDictStripe0 + stripe) * 8)};
}

std::uint64_t stripe_root(const ManagerTransaction& t, std::uint64_t root, std::uint64_t hash) {
  const std::uint64_t stripe = (hash >> 56) % t.root_word(root, kDictStripeCount);
  return t.root_word(root, kDictStripe0 + stripe);
}

// Runs `operation(t, stripe root)` as one transaction on the key's lane; again on every
// lane if that lane's allocator has no room (the allocation then uses any lane's room).
template <class Operation>
void on_key(const ManagerCore& manager, std::uint64_t root, std::uint64_t hash,
            Operation&& operation) {
  const Stripe stripe = stripe_of(manager, root, hash);
  try {
    ManagerTransaction t(manager, stripe.lane);
    operation(t, stripe.root);
    t.commit();
    return;
  } catch (const LaneFull&) {  // rolled back
  }
  ManagerTransaction t(manager, AllLanes{});
  operation(t, stripe.root);
  t.commit();
}

// The stripe roots of a dict (under every lane).
std::vector<std::uint64_t> stripes(const ManagerTransaction& t, std::uint64_t root) {
  std::vector<std::uint64_t> result(t.root_word(root, kDictStripeCount));
  for (std::size_t s = 0; s < result.size(); ++s) result[s] = t.root_word(root, kDictStripe0 + s);
  return result;
}

}  // namespace

DictCore::DictCore(const ManagerCore& manager, ContainerKind kind, std::uint64_t fingerprint) {
  ManagerTransaction t(manager);
  const std::size_t count = t.lane_count();
  const std::uint64_t root = t.allocate_root(kind, fingerprint, kDictStripe0 + count);
  t.word(root + kDictStripeCount * 8) = count;
  for (std::size_t s = 0; s < count; ++s) {
    const std::uint64_t stripe = t.allocate(kDictWords * 8);
    std::memset(t.at(stripe), 0, kDictWords * 8);
    init_stripe(t, stripe);
    t.word(root + (kDictStripe0 + s) * 8) = stripe;
  }
  t.commit();
  manager_ = manager;
  root_ = root;
}

void DictCore::set(std::string_view key, std::string_view value) const {
  const std::uint64_t hash = hash_bytes(key);
  on_key(manager_, root_, hash, [&](ManagerTransaction& t, std::uint64_t stripe) {
    dict_store(t, stripe, key, hash, value);
  });
}

bool DictCore::get(std::string_view key, std::string& out) const {
  const std::uint64_t hash = hash_bytes(key);
  bool found = false;
  on_key(manager_, root_, hash, [&](ManagerTransaction& t, std::uint64_t stripe) {
    const Lookup lookup = dict_find(t, stripe, key, hash);
    if (lookup.found) out.assign(node_at(t, lookup.node).value);
    found = lookup.found;
  });
  return found;
}

bool DictCore::contains(std::string_view key) const {
  const std::uint64_t hash = hash_bytes(key);
  bool found = false;
  on_key(manager_, root_, hash, [&](ManagerTransaction& t, std::uint64_t stripe) {
    found = dict_find(t, stripe, key, hash).found;
  });
  return found;
}

bool DictCore::erase(std::string_view key, std::string* out) const {
  const std::uint64_t hash = hash_bytes(key);
  bool found = false;
  on_key(manager_, root_, hash, [&](ManagerTransaction& t, std::uint64_t stripe) {
    const Lookup lookup = dict_find(t, stripe, key, hash);
    if (lookup.found) {
      if (out) out->assign(node_at(t, lookup.node).value);
      dict_remove(t, stripe, lookup);
    }
    found = lookup.found;
  });
  return found;
}

bool DictCore::popitem(std::string& key, std::string& value) const {
  ManagerTransaction t(manager_, AllLanes{});
  // The last inserted pair: the newest of each stripe's last live entry.
  std::uint64_t best_stripe = 0, best_node = 0, best_sequence = 0;
  for (const std::uint64_t stripe : stripes(t, root_)) {
    const std::uint64_t entries = t.root_word(stripe, kDictEntries);
    std::uint64_t used = t.root_word(stripe, kDictUsed);
    while (used > 0 && t.word(entries + (used - 1) * 8) == 0) --used;
    if (used == 0) continue;
    const std::uint64_t node = t.word(entries + (used - 1) * 8);
    const std::uint64_t sequence = node_at(t, node).sequence;
    if (best_node == 0 || sequence > best_sequence)
      best_stripe = stripe, best_node = node, best_sequence = sequence;
  }
  if (best_node == 0) {
    t.commit();
    return false;
  }
  const NodeView view = node_at(t, best_node);
  key.assign(view.key);
  value.assign(view.value);
  dict_remove(t, best_stripe, dict_find(t, best_stripe, view.key, view.hash));
  t.commit();
  return true;
}

void DictCore::setdefault(std::string_view key, std::string_view value, std::string& out) const {
  const std::uint64_t hash = hash_bytes(key);
  on_key(manager_, root_, hash, [&](ManagerTransaction& t, std::uint64_t stripe) {
    const Lookup found = dict_find(t, stripe, key, hash);
    if (found.found) {
      out.assign(node_at(t, found.node).value);
    } else {
      dict_store(t, stripe, key, hash, value);
      out.assign(value);
    }
  });
}

void DictCore::update(const std::vector<std::string>& keys,
                      const std::vector<std::string>& values) const {
  ManagerTransaction t(manager_, AllLanes{});
  std::vector<std::uint64_t> hashes(keys.size());
  for (std::size_t i = 0; i < keys.size(); ++i) hashes[i] = hash_bytes(keys[i]);
  // Many keys: fresh arrays first, so that their slots and entries are written unlogged.
  if (keys.size() > 32) {
    const std::vector<std::uint64_t> all = stripes(t, root_);
    std::vector<std::uint64_t> wanted(all.size());
    for (const std::uint64_t hash : hashes) ++wanted[(hash >> 56) % all.size()];
    for (std::size_t s = 0; s < all.size(); ++s)
      if (wanted[s] > 0) dict_rebuild(t, all[s], t.root_word(all[s], kDictCount) + wanted[s]);
  }
  for (std::size_t i = 0; i < keys.size(); ++i)
    dict_store(t, stripe_root(t, root_, hashes[i]), keys[i], hashes[i], values[i]);
  t.commit();
}

void DictCore::modify(std::string_view key, modify_function function, void* context) const {
  // Copies: the user's function may pickle other keys into the per-thread buffers.
  const std::string key_copy(key);
  const std::uint64_t hash = hash_bytes(key_copy);
  // Called again (its first result dropped) if the key's lane had no room for the new value.
  on_key(manager_, root_, hash, [&](ManagerTransaction& t, std::uint64_t stripe) {
    const Lookup found = dict_find(t, stripe, key_copy, hash);
    std::string old;
    if (found.found) old.assign(node_at(t, found.node).value);
    std::string& out = scratch().copy;
    function(context, found.found ? &old : nullptr, out);  // may throw: rolled back
    t.reset_scratch();  // the function may have run operations of other managers
    dict_store(t, stripe, key_copy, hash, out);
  });
}

std::size_t DictCore::size() const {
  ManagerTransaction t(manager_, AllLanes{});
  std::uint64_t count = 0;
  for (const std::uint64_t stripe : stripes(t, root_)) count += t.root_word(stripe, kDictCount);
  t.commit();
  return count;
}

void DictCore::clear() const {
  ManagerTransaction t(manager_, AllLanes{});
  for (const std::uint64_t stripe : stripes(t, root_)) {
    const std::uint64_t entries = t.root_word(stripe, kDictEntries);
    const std::uint64_t used = t.root_word(stripe, kDictUsed);
    for (std::uint64_t i = 0; i < used; ++i)
      if (const std::uint64_t node = t.word(entries + i * 8)) t.free_later(node);
    t.set_root_word(stripe, kDictCount, 0);
    t.set_root_word(stripe, kDictUsed, 0);  // so the rebuild keeps nothing
    dict_rebuild(t, stripe, 0);
  }
  t.commit();
}

void DictCore::snapshot(std::vector<std::string>* keys, std::vector<std::string>* values) const {
  ManagerTransaction t(manager_, AllLanes{});
  std::vector<std::pair<std::uint64_t, std::uint64_t>> nodes;  // (sequence, node)
  for (const std::uint64_t stripe : stripes(t, root_)) {
    const std::uint64_t entries = t.root_word(stripe, kDictEntries);
    const std::uint64_t used = t.root_word(stripe, kDictUsed);
    for (std::uint64_t i = 0; i < used; ++i)
      if (const std::uint64_t node = t.word(entries + i * 8))
        nodes.emplace_back(node_at(t, node).sequence, node);
  }
  std::sort(nodes.begin(), nodes.end());
  if (keys) keys->reserve(nodes.size());
  if (values) values->reserve(nodes.size());
  for (const auto& [sequence, node] : nodes) {
    const NodeView view = node_at(t, node);
    if (keys) keys->emplace_back(view.key);
    if (values) values->emplace_back(view.value);
  }
  t.commit();
}

}  // namespace mp::detail
