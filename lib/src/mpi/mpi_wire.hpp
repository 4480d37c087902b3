// Private to mp::mpi: the messages between rank 0 and the serving ranks, and the one
// object that moves them (Comm). Only one thread of a process calls MPI at a time.
//
// A message is a byte string: a Kind, a link id (one remote worker), then fields packed
// by Writer and read back by Reader, which never reads past the end (a short or corrupt
// message reads as zeros and sets !ok()). MPI counts are ints, so a message travels in
// parts of at most max_part bytes (1 GiB), the first prefixed with the message's length.
#pragma once

#include <mpi.h>

#include <cstdint>
#include <cstring>
#include <deque>
#include <string>
#include <string_view>
#include <vector>

namespace mp::detail::mpi_wire {

enum class Kind : std::uint32_t {
  // rank 0 -> serving rank
  start = 1,  // number, pickled InitCall, maxtasksperchild
  tasks,      // count, then per task: seq, job, trampoline, input
  stop,       // the worker exits after its tasks
  kill,
  terminate,
  forget,    // rank 0 dropped the link: end the worker if it runs
  shutdown,  // link 0: the Session ends
  // serving rank -> rank 0
  started,       // pid
  start_failed,  // error type, message
  replies,       // claimed, initialized, count, then per reply: kind, seq, run_ns, bytes...
  ended,         // claimed, initialized, has exit code, exit code
};

class Writer {
 public:
  Writer(Kind kind, std::uint64_t link) {
    u64(static_cast<std::uint64_t>(kind));
    u64(link);
  }
  void u64(std::uint64_t v) { out_.append(reinterpret_cast<const char*>(&v), sizeof v); }
  void str(std::string_view s) {
    u64(s.size());
    out_.append(s);
  }
  std::string& bytes() { return out_; }

 private:
  std::string out_;
};

class Reader {
 public:
  explicit Reader(std::string_view in) : in_(in) {
    kind_ = static_cast<Kind>(u64());
    link_ = u64();
  }
  Kind kind() const { return kind_; }
  std::uint64_t link() const { return link_; }
  std::uint64_t u64() {
    std::uint64_t v = 0;
    if (in_.size() < sizeof v) {
      ok_ = false;
      in_ = {};
      return 0;
    }
    std::memcpy(&v, in_.data(), sizeof v);
    in_.remove_prefix(sizeof v);
    return v;
  }
  std::string_view str() {
    const std::uint64_t size = u64();
    if (size > in_.size()) {
      ok_ = false;
      in_ = {};
      return {};
    }
    const std::string_view s = in_.substr(0, size);
    in_.remove_prefix(size);
    return s;
  }
  bool ok() const { return ok_; }

 private:
  std::string_view in_;
  Kind kind_{};
  std::uint64_t link_ = 0;
  bool ok_ = true;
};

// Sends and receives whole messages on one communicator, never blocking on a peer for
// long: sends are posted (MPI_Isend) and kept until complete. Not thread-safe.
class Comm {
 public:
  static constexpr int kTag = 7321;
  // max_part: the largest MPI message, at most INT_MAX.
  Comm(MPI_Comm comm, std::size_t max_part) : comm_(comm), max_part_(max_part) {}
  ~Comm();
  Comm(const Comm&) = delete;
  Comm& operator=(const Comm&) = delete;

  // Posts `message` to `rank`.
  void post(int rank, std::string message);
  // Completes the sends the peers took; true if any completed.
  bool progress();
  bool sending() const { return !sends_.empty(); }
  // Waits until every posted send is complete.
  void flush();
  // Takes a message if one has arrived (then waits for its remaining parts).
  bool receive(int& source, std::string& message);

 private:
  struct Send {
    std::string bytes;
    std::vector<MPI_Request> requests;
  };
  MPI_Comm comm_;
  std::size_t max_part_;
  std::deque<Send> sends_;
};

// Throws std::runtime_error naming `what` unless `rc` is MPI_SUCCESS.
void check(int rc, const char* what);

}  // namespace mp::detail::mpi_wire
