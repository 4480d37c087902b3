// What a pool task is, for the typed front ends (<mp/pool.hpp>, <mp/futures.hpp>): the
// compile-time checks on what they ship to workers, the trampolines that run a task in
// a worker, and the two halves of a map: cutting the input into pickled chunks, and
// decoding the chunks' results. Internal to mp.
#pragma once

#include <mp/detail/export.hpp>

#include <concepts>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>
#include <iterator>
#include <memory>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <tuple>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

#include <mp/detail/chrono.hpp>
#include <mp/detail/pool_core.hpp>
#include <mp/detail/pool_results.hpp>
#include <mp/detail/ranges.hpp>
#include <mp/pickle.hpp>

namespace mp::detail {

// A function a pool can ship to its workers: it is pickled, with fork workers too.
template <class F>
concept pool_function = pickle::picklable<F>;

// The one check of a function given to Pool, ProcessPoolExecutor or initializer(): its
// message is the one users see for a capturing lambda.
template <class F>
constexpr void check_pool_function() {
  static_assert(pool_function<F>,
                "mp::Pool / mp::ProcessPoolExecutor: the function cannot be pickled for the "
                "worker processes (a capturing lambda or a function object without "
                "serialize()); pass the captured values as arguments, use a free function or a "
                "captureless lambda, or give the function object a serialize() member");
}

// apply_async / submit: fn(args...) must cross to a worker and its result back.
template <class F, class... Args>
constexpr void check_pool_call() {
  check_pool_function<F>();
  static_assert(
      (pickle::picklable<Args> && ...),
      "mp::Pool / mp::ProcessPoolExecutor: an argument cannot be pickled; give its type a "
      "serialize() member");
  using R = std::invoke_result_t<F&, Args&...>;
  if constexpr (!std::is_void_v<R>)
    static_assert(
        pickle::picklable<R>,
        "mp::Pool / mp::ProcessPoolExecutor: the function's result cannot be pickled; give "
        "its type serialize()");
}

template <class F, class... Args>
void run_initializer(std::string_view bound) {
  auto call = pickle::loads<std::tuple<F, Args...>>(bound);
  std::apply([](auto& f, auto&... args) { std::invoke(f, args...); }, call);
}

// The trampolines. Their pickled code references are computed once per instantiation.
template <class F, class... Args>
void pool_apply_call(std::string_view input, std::string& result) {
  auto bound = pickle::loads<std::tuple<F, Args...>>(input);
  using R = std::invoke_result_t<F&, Args&...>;
  if constexpr (std::is_void_v<R>) {
    std::apply([](auto& f, auto&... args) { std::invoke(f, args...); }, bound);
    pickle::dump(true, result);
  } else {
    pickle::dump(
        std::apply([](auto& f, auto&... args) -> R { return std::invoke(f, args...); }, bound),
        result);
  }
}

// A chunk of map (Star false: f(item)) or starmap (Star true: std::apply(f, item)).
// What fn returns for one item: fn(item) or std::apply(fn, item).
template <class F, class Item, bool Star>
struct map_result {
  using type = std::invoke_result_t<F&, Item&>;
};
template <class F, class Item>
struct map_result<F, Item, true> {
  using type = decltype(std::apply(std::declval<F&>(), std::declval<Item&>()));
};
// The value map/imap give for one item: std::monostate for a function returning void
// (Python's None).
template <class F, class Item, bool Star>
using map_value_t =
    std::conditional_t<std::is_void_v<typename map_result<F, Item, Star>::type>, std::monostate,
                       std::remove_cvref_t<typename map_result<F, Item, Star>::type>>;

// Numbers (not bool, whose pickle is checked byte by byte): maps of them take a shorter
// way through the pickles (pool_map_numbers, ChunkSubmitter, decode_aligned_chunks).
template <class T>
inline constexpr bool is_pool_number = std::is_arithmetic_v<T> && !std::is_same_v<T, bool>;

// A chunk of map of a function from numbers to numbers (or to void), in the worker: the
// items are read where they lie in the chunk's pickle and the results are written
// straight into `result` as the pickle of a std::vector of them. No vector of the items
// and none of the results: each would be a fresh allocation as large as the chunk, so
// their pages would be faulted in anew for every chunk. Accepts exactly the bytes that
// pickle::loads<std::tuple<F, std::vector<Item>>> does, and throws as it does.
template <class F, class Item>
void pool_map_numbers(std::string_view input, std::string& result) {
  using Bound = std::tuple<F, std::vector<Item>>;
  using R = std::invoke_result_t<F&, Item&>;
  std::string_view body = pickle_body<Bound>(input);
  F f{};
  std::string_view items;
  try {
    // The thread's reused archive when the function is made of built-in types only, as
    // pickle::load does: constructing one costs more than a short chunk.
    ArchiveLease<PickleInputArchive, pickle_traits<Bound>::builtin, std::string_view> lease(body);
    PickleInputArchive& archive = *lease;
    archive(f);
    const std::uint64_t count = archive.read_size();
    items = archive.read_view(static_cast<std::size_t>(count) * sizeof(Item));
    if (archive.remaining() != 0) [[unlikely]]
      throw_trailing_bytes(archive.remaining(), type_name<Bound>());
  } catch (const UnpicklingError&) {
    throw;
  } catch (...) {
    rethrow_unpickling_error(type_name<Bound>());
  }
  const std::size_t count = items.size() / sizeof(Item);
  const auto item_at = [&items](std::size_t i) {
    Item item;
    std::memcpy(&item, items.data() + i * sizeof(Item), sizeof item);
    return item;
  };
  std::size_t position = 0;
  try {
    if constexpr (std::is_void_v<R>) {
      for (; position < count; ++position) {
        Item item = item_at(position);
        std::invoke(f, item);
      }
      pickle::dump(static_cast<std::uint64_t>(count), result);  // see load_chunk
    } else {
      using Value = std::remove_cvref_t<R>;
      const std::uint64_t prefix[2] = {pickle_header<std::vector<Value>>(),
                                       static_cast<std::uint64_t>(count)};
      result.reserve(result.size() + sizeof prefix + count * sizeof(Value));
      result.append(reinterpret_cast<const char*>(prefix), sizeof prefix);
      // Through a small buffer: std::string has no append without zero-filling first.
      Value block[512];
      while (position < count) {
        const std::size_t n = std::min(count - position, std::size(block));
        for (std::size_t i = 0; i < n; ++i, ++position) {
          Item item = item_at(position);
          block[i] = static_cast<Value>(std::invoke(f, item));
        }
        result.append(reinterpret_cast<const char*>(block), n * sizeof(Value));
      }
    }
  } catch (...) {
    note_failed_item(position);
    throw;
  }
}

// Any other chunk: the items unpickled into a vector, the results collected into one.
template <class F, class Item, bool Star>
void pool_map_items(std::string_view input, std::string& result) {
  auto bound = pickle::loads<std::tuple<F, std::vector<Item>>>(input);
  auto& f = std::get<0>(bound);
  auto& items = std::get<1>(bound);
  using R = typename map_result<F, Item, Star>::type;
  auto call = [&f](Item& item) -> decltype(auto) {
    if constexpr (Star)
      return std::apply(f, item);
    else
      return std::invoke(f, item);
  };
  // The failed item's position goes with the error: the message names the item.
  std::uint64_t position = 0;
  if constexpr (std::is_void_v<R>) {
    try {
      for (auto& item : items) call(item), ++position;
    } catch (...) {
      note_failed_item(position);
      throw;
    }
    pickle::dump(static_cast<std::uint64_t>(items.size()), result);  // see load_chunk
  } else {
    std::vector<R> out;
    out.reserve(items.size());
    try {
      for (auto& item : items) out.push_back(call(item)), ++position;
    } catch (...) {
      note_failed_item(position);
      throw;
    }
    pickle::dump(out, result);
  }
}

// The trampoline of a chunk of map / imap / starmap.
template <class F, class Item, bool Star>
void pool_map_call(std::string_view input, std::string& result) {
  if constexpr (!Star && is_pool_number<Item> &&
                (std::is_void_v<typename map_result<F, Item, Star>::type> ||
                 is_pool_number<map_value_t<F, Item, Star>>))
    pool_map_numbers<F, Item>(input, result);
  else
    pool_map_items<F, Item, Star>(input, result);
}

// Decodes a chunk's results written by pool_map_call. A chunk of a function returning
// void is the number of its items: a std::monostate pickles to no bytes at all.
template <class T>
void load_chunk(std::string_view bytes, std::vector<T>& out) {
  if constexpr (std::is_same_v<T, std::monostate>) {
    const auto count = pickle::loads<std::uint64_t>(bytes);
    if (count > std::uint64_t{1} << 40)
      throw std::length_error("mp::Pool: a chunk claims " + std::to_string(count) + " results");
    out.assign(static_cast<std::size_t>(count), std::monostate{});
  } else {
    pickle::load(bytes, out);
  }
}

// A timeout in nanoseconds, saturated: a coarser duration too large for nanoseconds
// (std::chrono::hours::max()) becomes nanoseconds::max(), which waits forever.
template <class Rep, class Period>
std::chrono::nanoseconds saturated_nanoseconds(std::chrono::duration<Rep, Period> timeout) {
  const std::chrono::duration<long double, std::nano> wide(timeout);
  if (wide.count() >= static_cast<long double>(std::chrono::nanoseconds::max().count()))
    return std::chrono::nanoseconds::max();
  if (wide.count() <= 0) return std::chrono::nanoseconds::zero();
  return std::chrono::duration_cast<std::chrono::nanoseconds>(timeout);
}

template <auto Trampoline>
const std::string* trampoline_ref() {
  static const std::string ref = pickle::dumps(Trampoline);
  return &ref;
}

// Whether map (Star false: fn(item)) or starmap (Star true: std::apply(fn, item)) can
// call fn with an Item.
template <class F, class Item, bool Star>
inline constexpr bool map_callable = std::is_invocable_v<F&, Item&>;
template <class F, class Item>
inline constexpr bool map_callable<F, Item, true> = requires(F& f, Item& item) {
  std::apply(f, item);
};

// map / imap / starmap: fn must cross to the workers, the items too, and the results back.
template <class F, class Item, bool Star>
constexpr void check_pool_map() {
  check_pool_function<F>();
  static_assert(pickle::picklable<Item>, "mp::Pool: the items cannot be pickled");
  static_assert(map_callable<F, Item, Star>,
                "mp::Pool::map / starmap / imap, mp::ProcessPoolExecutor::map: the function "
                "cannot be called with an item of the range (starmap and several ranges: with "
                "an item's elements)");
  if constexpr (map_callable<F, Item, Star>)
    static_assert(pickle::picklable<map_value_t<F, Item, Star>>,
                  "mp::Pool: the function's result cannot be pickled");
}

// The first half of map_async: cuts items into chunks of `chunksize`, pickles each chunk
// (with the function) into a reused buffer, copies it to the shared heap, and hands the
// chunks to the pool about every kBatchBytes, so workers start on the first chunks while
// later ones are being pickled.
template <class F, class Item, bool Star>
class ChunkSubmitter {
 public:
  ChunkSubmitter(PoolCore& core, std::shared_ptr<ResultState> state, const F& fn,
                 std::size_t chunksize)
      : core_(core),
        state_(std::move(state)),
        bound_(fn, std::vector<Item>{}),
        chunksize_(chunksize) {}

  template <class T>
  void add(T&& item) {
    auto& part = std::get<1>(bound_);
    if (part.capacity() < chunksize_) part.reserve(chunksize_);
    part.push_back(static_cast<Item>(std::forward<T>(item)));
    if (part.size() == chunksize_) add_chunk();
  }

  // Numbers: a contiguous run of `count` items, copied from where they lie straight into
  // the chunks (no copy through the vector that add() fills).
  void add_numbers(const Item* items, std::size_t count) requires is_pool_number<Item> {
    if (std::get<1>(bound_).empty())  // whole chunks from here
      for (; count > 0 && count >= chunksize_; items += chunksize_, count -= chunksize_)
        add_chunk_of(std::span(items, chunksize_));
    for (; count > 0; --count) add(*items++);
  }

  // Submits what is left (and an empty job, whose result is ready at once).
  void finish() {
    if (!std::get<1>(bound_).empty()) add_chunk();
    if (!tasks_.empty() || first_index_ == 0) core_.submit(state_, first_index_, std::move(tasks_));
  }

 private:
  static constexpr std::size_t kBatchBytes = 256 * 1024;

  // Numbers: a vector of them pickles as its 8-byte size, then the elements in one block
  // (pickle_archive.hpp), so a chunk's pickle is that of (fn, an empty vector) with the
  // size set, followed by the items: pickled once, and each chunk copied once (from the
  // caller's range itself when it is contiguous: add_numbers).
  static constexpr bool kNumbers = is_pool_number<Item>;

  // A chunk of numbers from where they lie.
  void add_chunk_of(std::span<const Item> part) {
    if (empty_chunk_.empty()) {
      const RemotePicklingScope remote(core_.remote());
      pickle::dump(std::tuple<F, std::vector<Item>>(std::get<0>(bound_), {}), empty_chunk_);
    }
    const std::uint64_t count = part.size();
    std::memcpy(empty_chunk_.data() + empty_chunk_.size() - sizeof count, &count, sizeof count);
    const std::string_view items(reinterpret_cast<const char*>(part.data()), part.size_bytes());
    tasks_.push_back(
        {trampoline_ref<&pool_map_call<F, Item, Star>>(), PoolBytes::copy_of(empty_chunk_, items)});
    submit_if_due(empty_chunk_.size() + items.size());
  }

  void add_chunk() {
    auto& part = std::get<1>(bound_);
    if constexpr (kNumbers) {
      add_chunk_of(part);
    } else {
      pickled_.clear();
      {
        const RemotePicklingScope remote(core_.remote());
        pickle::dump(bound_, pickled_);
      }
      tasks_.push_back(
          {trampoline_ref<&pool_map_call<F, Item, Star>>(), PoolBytes::copy_of(pickled_)});
      submit_if_due(pickled_.size());
    }
    part.clear();
  }

  // Hands the chunks added so far to the pool once they hold about kBatchBytes.
  void submit_if_due(std::size_t size) {
    batch_bytes_ += size;
    if (batch_bytes_ >= kBatchBytes) {
      const std::size_t count = tasks_.size();
      core_.submit(state_, first_index_, std::exchange(tasks_, {}));
      first_index_ += count;
      batch_bytes_ = 0;
    }
  }

  PoolCore& core_;
  std::shared_ptr<ResultState> state_;
  std::tuple<F, std::vector<Item>> bound_;
  std::size_t chunksize_;
  std::string pickled_;
  std::string empty_chunk_;  // kNumbers: the pickle of (fn, an empty vector)
  std::vector<PoolTaskInput> tasks_;
  std::size_t batch_bytes_ = 0;
  std::size_t first_index_ = 0;
};

// decode_chunks for numbers, copied once: when every chunk is a well-formed pickle of a
// vector of numbers (pickle_archive.hpp: its header, its 8-byte size, then the elements
// in one block) whose elements lie aligned, they are appended straight to `out`, sized
// from all the chunks' counts first. False, with nothing done, if any chunk is not:
// decode_chunks then loads them one by one, which reports what is wrong.
template <class Result>
bool decode_aligned_chunks(std::vector<PoolBytes>& results, std::vector<Result>& out) {
  constexpr std::size_t kPrefix = kPickleHeaderSize + sizeof(std::uint64_t);
  const std::uint64_t header = pickle_header<std::vector<Result>>();
  std::size_t total = 0;
  for (const PoolBytes& chunk : results) {
    const std::string_view bytes = chunk.view();
    if (bytes.size() < kPrefix || (bytes.size() - kPrefix) % sizeof(Result) != 0 ||
        reinterpret_cast<std::uintptr_t>(bytes.data() + kPrefix) % alignof(Result) != 0)
      return false;
    std::uint64_t found = 0, count = 0;
    std::memcpy(&found, bytes.data(), sizeof found);
    std::memcpy(&count, bytes.data() + kPickleHeaderSize, sizeof count);
    if (found != header || count != (bytes.size() - kPrefix) / sizeof(Result)) return false;
    total += static_cast<std::size_t>(count);
  }
  out.reserve(total);
  prefault_for_write(out.data(), total * sizeof(Result));
  for (PoolBytes& chunk : results) {
    const std::string_view bytes = chunk.view();
    const auto* first = reinterpret_cast<const Result*>(bytes.data() + kPrefix);
    out.insert(out.end(), first, first + (bytes.size() - kPrefix) / sizeof(Result));
    chunk = {};
  }
  return true;
}

// The second half of map_async: the chunks' results, decoded in order into one vector.
// Each chunk is decoded into one reused vector, then moved to the end of the output:
// one allocation for the output, one for the chunks, whatever their number. Each
// chunk's heap block is given back as soon as it is decoded.
template <class Result>
std::vector<Result> decode_chunks(std::vector<PoolBytes>& results) {
  std::vector<Result> out;
  if constexpr (is_pool_number<Result>) {
    if (results.size() > 1 && decode_aligned_chunks(results, out)) return out;
  }
  std::vector<Result> part;
  for (std::size_t i = 0; i < results.size(); ++i) {
    load_chunk(results[i].view(), part);
    results[i] = {};
    if (i == 0) {
      out.reserve(part.size() * results.size());
      if (results.size() == 1) return part;
    }
    out.insert(out.end(), std::make_move_iterator(part.begin()),
               std::make_move_iterator(part.end()));
  }
  return out;
}

}  // namespace mp::detail
