// A Barrier's action that is a function object with state (see mp::Barrier). Internal.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <utility>

#include <mp/pickle.hpp>

namespace mp::detail {

// Holds the function object; pickles as (its loader, its pickle), so that a process that
// loads the Barrier handle gets its own copy, which copies of the handle there share.
class BarrierAction {
 public:
  BarrierAction() = default;

  template <class F>
  static BarrierAction of(F fn) {
    static_assert(pickle::picklable<F>,
                  "mp::Barrier: the action cannot be pickled; give its type serialize() (it "
                  "runs in whichever process arrives last)");
    BarrierAction action;
    action.loader_ = &load_action<F>;
    action.bytes_ = pickle::dumps(fn);
    action.call_ = load_action<F>(action.bytes_);
    return action;
  }

  explicit operator bool() const noexcept { return static_cast<bool>(call_); }
  void operator()() const { call_(); }

  // Pickles as the loader and the bytes it rebuilds the callable from.
  template <class Archive>
  void serialize(Archive& ar) {
    ar(loader_, bytes_);
    if constexpr (Archive::is_loading::value) call_ = loader_ ? loader_(bytes_) : nullptr;
  }

 private:
  using Loader = std::function<void()> (*)(const std::string&);
  template <class F>
  static std::function<void()> load_action(const std::string& bytes) {
    return [fn = std::make_shared<F>(pickle::loads<F>(bytes))] { (*fn)(); };
  }

  Loader loader_ = nullptr;
  std::string bytes_;
  std::function<void()> call_;
};

}  // namespace mp::detail
