// SharedValue's store (ValueCore): one item node in a manager's segment. Each operation
// is one ManagerTransaction (manager_segment.hpp).
#include <cstdint>
#include <string>
#include <string_view>

#include "manager_segment.hpp"

namespace mp::detail {
namespace {

// The root's word after kRootKind and kRootFingerprint.
constexpr std::uint64_t kValueItem = 2;
constexpr std::uint64_t kValueWords = 3;

void value_store(ManagerTransaction& t, std::uint64_t root, std::string_view value) {
  const std::uint64_t old = t.root_word(root, kValueItem);
  t.set_root_word(root, kValueItem, new_item(t, value));
  t.free_later(old);
}

}  // namespace

ValueCore::ValueCore(const ManagerCore& manager, std::uint64_t fingerprint,
                     std::string_view initial) {
  ManagerTransaction t(manager);
  const std::uint64_t root = t.allocate_root(ContainerKind::value, fingerprint, kValueWords);
  t.word(root + kValueItem * 8) = new_item(t, initial);
  t.commit();
  manager_ = manager;
  root_ = root;
}

void ValueCore::get(std::string& out) const {
  ManagerTransaction t(manager_);
  out.assign(item_at(t, t.root_word(root_, kValueItem)));
  t.commit();
}

void ValueCore::set(std::string_view value) const {
  ManagerTransaction t(manager_);
  value_store(t, root_, value);
  t.commit();
}

void ValueCore::modify(DictCore::modify_function function, void* context) const {
  ManagerTransaction t(manager_);
  const std::string old(item_at(t, t.root_word(root_, kValueItem)));
  std::string& out = scratch().copy;
  function(context, &old, out);  // may throw: rolled back
  t.reset_scratch();             // the function may have run operations of other managers
  value_store(t, root_, out);
  t.commit();
}

}  // namespace mp::detail
