// mp::Pool's byte buffer for pickled task inputs and results. Internal to mp; public
// only because the typed front end (<mp/pool.hpp>) decodes results from it.
#pragma once

#include <mp/detail/export.hpp>

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

#include <mp/detail/heap.hpp>

namespace mp::detail {

// A pickled task input or result: in a std::string when small, else in a block of the
// shared heap, which a worker reads (input) or wrote (result) in place, so a chunk of
// several MiB is copied once per direction instead of through fresh malloc'd strings.
// Move-only; frees its block.
class MP_API PoolBytes {
 public:
  static constexpr std::size_t kHeapFrom = 16 * 1024;  // the pool's records hold less inline

  PoolBytes() noexcept = default;
  PoolBytes(std::string bytes) noexcept : bytes_(std::move(bytes)) {}  // NOLINT: implicit
  // A copy of `bytes`: in the shared heap from kHeapFrom bytes on. Throws HeapExhausted.
  static PoolBytes copy_of(std::string_view bytes);
  // The same for `head` followed by `tail`.
  static PoolBytes copy_of(std::string_view head, std::string_view tail);
  // Takes over a heap block of which the first `size` bytes are the value.
  static PoolBytes adopt(shared_ref block, std::size_t size) noexcept;
  PoolBytes(PoolBytes&& other) noexcept;
  PoolBytes& operator=(PoolBytes&& other) noexcept;
  PoolBytes(const PoolBytes&) = delete;
  PoolBytes& operator=(const PoolBytes&) = delete;
  ~PoolBytes();

  std::string_view view() const noexcept;
  std::size_t size() const noexcept { return view().size(); }
  // The heap block holding the bytes, if any.
  const std::optional<shared_ref>& block() const noexcept { return block_; }
  // Moves bytes held in a string into the shared heap. Throws HeapExhausted.
  void move_to_heap();

 private:
  static PoolBytes heap_copy(std::string_view bytes);

  std::string bytes_;
  std::optional<shared_ref> block_;
  const char* data_ = nullptr;  // with block_: its address in this process
  std::size_t size_ = 0;
};

}  // namespace mp::detail
