// mp's exceptions. Mirrors the exception classes of Python's `multiprocessing`
// (ProcessError, BufferTooShort, AuthenticationError, TimeoutError,
// pool.MaybeEncodingError/RemoteError), `queue` (Empty, Full, ShutDown), `pickle`
// (PicklingError, UnpicklingError), `concurrent.futures` (BrokenProcessPool,
// CancelledError) and `threading` (BrokenBarrierError), and MemoryError for an exhausted
// shared heap.
//
// Python's built-in exceptions map onto the standard library:
//   ValueError -> std::invalid_argument, KeyError/IndexError -> std::out_of_range,
//   misuse (AssertionError) -> std::logic_error, OSError -> std::system_error.
//
// Differences from Python, on purpose:
//   - mp::WorkerLostError (a BrokenProcessPool) names the lost worker's pid and how it
//     ended; Python's pool hangs and its executor reports nothing specific.
//   - mp::RemoteError keeps the remote exception's type name, message, task and stack as
//     fields, instead of one formatted traceback string.
#pragma once

#include <mp/detail/export.hpp>

#include <sys/types.h>
#include <cstdint>
#include <new>
#include <optional>
#include <stdexcept>
#include <string>

namespace mp {

// Root of mp's own errors. Python: multiprocessing.ProcessError.
class MP_API ProcessError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// A blocking call ran out of time. Python: multiprocessing.TimeoutError.
class MP_API TimeoutError : public ProcessError {
 public:
  using ProcessError::ProcessError;
};

// recv_bytes_into() got a message larger than the buffer; the message is kept.
// Python: multiprocessing.BufferTooShort (message in args[0]).
class MP_API BufferTooShort : public ProcessError {
 public:
  // Keeps `message`, the whole message received.
  explicit BufferTooShort(std::string message)
      : ProcessError("message does not fit the buffer (" + std::to_string(message.size()) +
                     " bytes)"),
        message_(std::move(message)) {}
  // The whole message that did not fit.
  const std::string& message() const noexcept { return message_; }

 private:
  std::string message_;
};

// Python: multiprocessing.AuthenticationError.
class MP_API AuthenticationError : public ProcessError {
 public:
  using ProcessError::ProcessError;
};

// The other end of a connection is closed and nothing is left to read.
// Python: EOFError.
class MP_API EOFError : public ProcessError {
 public:
  using ProcessError::ProcessError;
};

// An exception escaped a function run in another process. Carries the remote
// exception's (demangled) type name and its what() text, which task raised it, and the
// stack of the throw when the program links mp::stacktrace. what() holds all of it, so
// that an uncaught RemoteError explains itself:
//   std::invalid_argument: bad x [in map item 17]
//   Remote traceback (most recent call first):
//    0# check(int) at /src/app.cpp:12
//    ...
// Python: multiprocessing.pool.RemoteTraceback as __cause__ of the re-raised error.
class MP_API RemoteError : public ProcessError {
 public:
  // The remote exception's type name and what(), which task raised it, and its stack (see
  // the accessors below).
  RemoteError(std::string type_name, std::string message, std::string task = {},
              std::string traceback = {})
      : ProcessError(describe(type_name, message, task, traceback)),
        type_name_(std::move(type_name)),
        message_(std::move(message)),
        task_(std::move(task)),
        traceback_(std::move(traceback)) {}
  // The remote exception's type, e.g. "std::invalid_argument".
  const std::string& type_name() const noexcept { return type_name_; }
  // The remote exception's what().
  const std::string& message() const noexcept { return message_; }
  // Which task raised it: "map item 17" (its index in the input of map, imap, starmap),
  // "the submitted call" (apply, submit); empty if unknown.
  const std::string& task() const noexcept { return task_; }
  // The remote stack at the throw, one frame a line, innermost first (symbolized where
  // debug information exists); empty unless the program links mp::stacktrace.
  const std::string& traceback() const noexcept { return traceback_; }

 private:
  static std::string describe(const std::string& type_name, const std::string& message,
                              const std::string& task, const std::string& traceback) {
    std::string text = type_name + ": " + message;
    if (!task.empty()) text += " [in " + task + "]";
    if (!traceback.empty()) text += "\nRemote traceback (most recent call first):\n" + traceback;
    return text;
  }

  std::string type_name_;
  std::string message_;
  std::string task_;
  std::string traceback_;
};

// A pool can no longer run a task. Python: concurrent.futures.process.BrokenProcessPool.
class MP_API BrokenProcessPool : public ProcessError {
 public:
  using ProcessError::ProcessError;
};

// The result of a cancelled Future was asked for. Python: concurrent.futures.CancelledError.
class MP_API CancelledError : public ProcessError {
 public:
  using ProcessError::ProcessError;
};

// The worker that held a task died before finishing it. The pool replaces the worker
// and stays usable. Python has no equivalent (Pool hangs; the executor breaks).
class MP_API WorkerLostError : public BrokenProcessPool {
 public:
  // `exitcode` as Process::exitcode(): N for exit(N), -N for signal N.
  WorkerLostError(pid_t pid, std::optional<int> exitcode);
  // The lost worker's pid.
  pid_t pid() const noexcept { return pid_; }
  // How it ended: N for exit(N), -N for signal N; nullopt if unknown.
  std::optional<int> exitcode() const noexcept { return exitcode_; }

 private:
  pid_t pid_;
  std::optional<int> exitcode_;
};

// Serialization failed while pickling. Python: pickle.PicklingError.
class MP_API PicklingError : public ProcessError {
 public:
  using ProcessError::ProcessError;
};

// Bytes that do not hold a valid pickle of the requested type (truncated, corrupt,
// another type, absurd sizes). Python: pickle.UnpicklingError.
class MP_API UnpicklingError : public ProcessError {
 public:
  using ProcessError::ProcessError;
};

// A barrier was aborted or reset, or a party died. Python: threading.BrokenBarrierError.
class MP_API BrokenBarrierError : public ProcessError {
 public:
  using ProcessError::ProcessError;
};

// The shared heap (where Lock, Event, Value... live) has no room left for a new object.
// Derives from std::bad_alloc, as Python's MemoryError is what an exhausted heap raises.
// Set the environment variable MP_HEAP_SIZE (bytes, read when the heap is created) for a
// larger heap; its default reserves 64 GiB of address space (less on a machine with less
// memory and swap, or under `ulimit -v`), of which only the pages touched cost memory.
class MP_API HeapExhausted : public std::bad_alloc {
 public:
  // An allocation of `requested` bytes did not fit the heap of `heap_size` bytes.
  HeapExhausted(std::uint64_t requested, std::uint64_t heap_size)
      : message_("mp shared heap exhausted (" + std::to_string(heap_size) +
                 " bytes; set MP_HEAP_SIZE): cannot allocate " + std::to_string(requested) +
                 " bytes"),
        requested_(requested),
        heap_size_(heap_size) {}
  // The same with another explanation: a Manager's segment (of `heap_size` bytes) is full.
  HeapExhausted(std::string message, std::uint64_t requested, std::uint64_t heap_size)
      : message_(std::move(message)), requested_(requested), heap_size_(heap_size) {}
  // What did not fit, and what to set or lower.
  const char* what() const noexcept override { return message_.c_str(); }
  // The bytes asked for.
  std::uint64_t requested() const noexcept { return requested_; }
  // The size of the heap (or Manager segment) that had no room.
  std::uint64_t heap_size() const noexcept { return heap_size_; }

 private:
  std::string message_;
  std::uint64_t requested_;
  std::uint64_t heap_size_;
};

// Python: queue.Empty. Derives from std::runtime_error (not ProcessError), as in Python.
class Empty : public std::runtime_error {
 public:
  Empty() : std::runtime_error("queue is empty") {}
  using std::runtime_error::runtime_error;
};

// Python: queue.Full.
class Full : public std::runtime_error {
 public:
  Full() : std::runtime_error("queue is full") {}
  using std::runtime_error::runtime_error;
};

// put() on a queue that was shut down, or get() on one that is also empty.
// Python 3.13: queue.ShutDown.
class ShutDown : public std::runtime_error {
 public:
  ShutDown() : std::runtime_error("queue is shut down") {}
  using std::runtime_error::runtime_error;
};

// JoinableQueue::join(): a process that got items ended (killed, crashed, or its target
// threw) without calling task_done() for `tasks()` of them, so they can never be done.
// join() counts them as done before it throws, so a later join() waits for the rest only.
// Python has no equivalent (its join() hangs forever).
class MP_API ConsumerLostError : public ProcessError {
 public:
  // The consumer `pid` ended with `tasks` items got and never marked done; what() says so.
  ConsumerLostError(pid_t pid, std::uint64_t tasks)
      : ProcessError("consumer process " + std::to_string(pid) + " ended with " +
                     std::to_string(tasks) + " unfinished task(s) (got, never task_done)"),
        pid_(pid),
        tasks_(tasks) {}
  // The process id of the consumer that ended.
  pid_t pid() const noexcept { return pid_; }
  // How many items it got without calling task_done() (join() counted them as done).
  std::uint64_t tasks() const noexcept { return tasks_; }

 private:
  pid_t pid_;
  std::uint64_t tasks_;
};

// How a process ended, in words: "exit code 3", "killed by SIGKILL", "still running".
MP_API std::string describe_exitcode(std::optional<int> exitcode);

}  // namespace mp
