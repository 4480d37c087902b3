// mp-map: a process-pool map over command-line input, in the family of `xargs -P` and
// GNU parallel; the command-line face of mp::Pool.
//
//   mp-map [OPTIONS] FUNCTION [::: ITEM...]
//   mp-map [OPTIONS] --exec 'COMMAND {}' [::: ITEM...]
//
// Items come from the arguments after ::: or else from standard input, one per line;
// results go to standard output one per line, in input order (--unordered: as they
// complete). See usage() for the options and exit statuses.
#include <fcntl.h>
#include <malloc.h>
#include <poll.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <exception>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <thread>
#include <vector>

#include <mp/mp.hpp>

#include "exec.hpp"
#include "functions.hpp"
#include "output.hpp"
#include "text.hpp"

namespace mp_map {
namespace {

constexpr const char* kVersion = "0.1.0";

struct UsageError {
  std::string message;
};

// --help and --version: printed; main checks standard output and exits with `status`.
struct ExitNow {
  int status;
};

struct Options {
  std::string function;             // a built-in, or empty with --exec
  std::optional<std::string> exec;  // the command template
  unsigned jobs = 0;                // 0: cpu_count()
  std::size_t chunksize = 0;        // 0: chosen as Pool.map does (1 for --exec/--timeout)
  bool unordered = false;
  std::optional<double> timeout;  // seconds per item
  bool halt_on_error = false;
  std::optional<bool> progress;  // default: whether stderr is a terminal
  Format format = Format::plain;
  std::string start_method;
  std::optional<std::vector<std::string>> arguments;  // the items after :::
};

void usage(std::FILE* out) {
  std::fprintf(out,
               "usage: mp-map [OPTIONS] FUNCTION [::: ITEM...]\n"
               "       mp-map [OPTIONS] --exec 'COMMAND {}' [::: ITEM...]\n"
               "\nApplies FUNCTION (or COMMAND) to every item in a pool of worker processes.\n"
               "Items are the arguments after ::: or else the lines of standard input;\n"
               "results go to standard output, one per line, in input order.\n"
               "\nfunctions:\n");
  for (const auto& f : functions())
    std::fprintf(out, "  %-14s %.*s\n", std::string(f.name).c_str(),
                 static_cast<int>(f.summary.size()), f.summary.data());
  std::fprintf(out,
               "\noptions:\n"
               "  --exec 'CMD {}'      run CMD per item ({} is the item, quoted; appended if\n"
               "                       absent); its stdout is the result, a non-zero exit a "
               "failure;\n"
               "                       leave {} unquoted ('rm -- {}', not \"rm '{}'\"), with -- "
               "before it\n"
               "                       if an item may start with '-'; nothing CMD starts "
               "outlives mp-map\n"
               "  -j, --jobs N         worker processes (default: the number of CPUs; at most "
               "1024)\n"
               "  --chunksize N        items per task (default: as Pool.map; 1 with --exec or "
               "--timeout)\n"
               "  --unordered          print results as they complete\n"
               "  --timeout SECONDS    per item: an overdue item fails, its worker is replaced\n"
               "  --keep-going         go on after a failed item (the default)\n"
               "  --halt-on-error      stop at the first failed item\n"
               "  --progress, --no-progress\n"
               "                       progress on stderr (default: when stderr is a "
               "terminal)\n"
               "  --format FORMAT      plain (default), tsv (input, output, ok, error) or jsonl\n"
               "                       (plain writes outputs as they are, control bytes and all)\n"
               "  --start-method M     fork (default) or spawn\n"
               "  -h, --help           show this help\n"
               "  --version            show the version\n"
               "\nResults are printed as soon as they are complete and next in order, while\n"
               "the input is still arriving. SIGINT, SIGTERM and SIGHUP print the complete\n"
               "results first, then end mp-map by that signal.\n"
               "\nExit status: 0 if every item succeeded, 1 if any failed or the output could "
               "not\nbe written, 2 for a usage error, 128+N after signal N.\n");
}

std::size_t parse_count(const std::string& name, const std::string& text, std::size_t max) {
  std::size_t value = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (text.empty() || ec != std::errc() || end != text.data() + text.size() || value == 0 ||
      value > max)
    throw UsageError{name + " needs a whole number between 1 and " + std::to_string(max) +
                     ", got '" + shown(text) + "'"};
  return value;
}

// The most workers -j accepts: each is a process with its own rings, descriptors and
// memory, and a machine with more CPUs than this is rare.
constexpr unsigned kMaxJobs = 1024;

unsigned parse_jobs(const std::string& name, const std::string& text) {
  unsigned value = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (!text.empty() && end == text.data() + text.size() &&
      (ec == std::errc::result_out_of_range || (ec == std::errc() && value > kMaxJobs)))
    throw UsageError{name + ": at most " + std::to_string(kMaxJobs) + " worker processes, got " +
                     text};
  return static_cast<unsigned>(parse_count(name, text, kMaxJobs));
}

Options parse_options(int argc, char** argv) {
  Options options;
  std::vector<std::string> args(argv + 1, argv + argc);
  std::vector<std::string> positional;
  for (std::size_t i = 0; i < args.size(); ++i) {
    const std::string& arg = args[i];
    if (arg == ":::") {
      options.arguments.emplace(args.begin() + static_cast<std::ptrdiff_t>(i) + 1, args.end());
      break;
    }
    std::string name = arg, value;
    bool has_value = false;
    if (arg.rfind("--", 0) == 0 && arg.find('=') != std::string::npos) {
      name = arg.substr(0, arg.find('='));
      value = arg.substr(arg.find('=') + 1);
      has_value = true;
    }
    auto take_value = [&]() -> std::string {
      if (has_value) return value;
      if (i + 1 >= args.size()) throw UsageError{name + " needs a value"};
      return args[++i];
    };
    auto no_value = [&] {
      if (has_value) throw UsageError{name + " takes no value"};
    };
    if (name == "-h" || name == "--help") {
      usage(stdout);
      throw ExitNow{0};
    } else if (name == "--version") {
      std::printf("mp-map %s\n", kVersion);
      throw ExitNow{0};
    } else if (name == "-j" || name == "--jobs") {
      options.jobs = parse_jobs(name, take_value());
    } else if (name.rfind("-j", 0) == 0 && name.size() > 2 && name[2] != '-') {
      options.jobs = parse_jobs("-j", name.substr(2));
    } else if (name == "--chunksize") {
      options.chunksize = parse_count(name, take_value(), std::size_t{1} << 24);
    } else if (name == "--unordered") {
      no_value();
      options.unordered = true;
    } else if (name == "--timeout") {
      const std::string text = take_value();
      double seconds = 0;
      const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), seconds);
      if (text.empty() || ec != std::errc() || end != text.data() + text.size() ||
          !std::isfinite(seconds) || seconds <= 0 || seconds > 1e6)
        throw UsageError{"--timeout needs a number of seconds above 0, got '" + shown(text) + "'"};
      options.timeout = seconds;
    } else if (name == "--keep-going") {
      no_value();
      options.halt_on_error = false;
    } else if (name == "--halt-on-error") {
      no_value();
      options.halt_on_error = true;
    } else if (name == "--progress") {
      no_value();
      options.progress = true;
    } else if (name == "--no-progress") {
      no_value();
      options.progress = false;
    } else if (name == "--format") {
      const std::string format = take_value();
      if (format == "plain")
        options.format = Format::plain;
      else if (format == "tsv")
        options.format = Format::tsv;
      else if (format == "jsonl")
        options.format = Format::jsonl;
      else
        throw UsageError{"--format must be plain, tsv or jsonl, got '" + shown(format) + "'"};
    } else if (name == "--start-method") {
      options.start_method = take_value();
      if (options.start_method != "fork" && options.start_method != "spawn")
        throw UsageError{"--start-method must be fork or spawn, got '" +
                         shown(options.start_method) + "'"};
    } else if (name == "--exec") {
      options.exec = take_value();
    } else if (arg.size() > 1 && arg[0] == '-') {
      throw UsageError{"unknown option '" + shown(arg) + "'"};
    } else {
      positional.push_back(arg);
    }
  }
  if (options.exec) {
    if (!positional.empty())
      throw UsageError{"--exec takes the command as its value; unexpected '" +
                       shown(positional[0]) + "' (put items after :::)"};
  } else {
    if (positional.empty()) throw UsageError{"no function given (or --exec 'COMMAND {}')"};
    if (positional.size() > 1)
      throw UsageError{"one function only; unexpected '" + shown(positional[1]) +
                       "' (put items after :::)"};
    options.function = positional[0];
    if (!find_function(options.function))
      throw UsageError{"unknown function '" + shown(options.function) + "' (see mp-map --help)"};
  }
  return options;
}

// ---- the work, in the workers ----

// What every task carries besides its items: which function (or command) to run.
struct Job {
  std::string function;
  std::optional<Command> command;
  std::optional<double> timeout;

  template <class Archive>
  void serialize(Archive& ar) {
    ar(function, command, timeout);
  }
};

// Strings packed one after another into one buffer, each followed by '\n': a chunk of
// items, or their outputs. A chunk of stdin lines is then one copy of the input, outputs
// in the plain format are written out as they are, and the whole pickles as one or two
// contiguous arrays (a vector of strings pickles string by string). The separators alone
// mark the strings unless one of them holds a '\n' itself; from then on `ends` holds
// every string's end (the offset of its separator).
struct Packed {
  std::string bytes;
  std::vector<std::uint64_t> ends;  // empty until a string holds a '\n'
  std::uint64_t count = 0;

  std::size_t size() const { return count; }
  bool empty() const { return count == 0; }

  void push(std::string_view text) {
    const bool index = !ends.empty() || text.find('\n') != std::string_view::npos;
    if (index && ends.empty()) index_all();
    bytes.append(text);
    bytes.push_back('\n');
    if (index) ends.push_back(bytes.size() - 1);
    ++count;
  }
  // Appends `n` lines: `lines` is n strings without '\n', each followed by one.
  void push_lines(std::string_view lines, std::size_t n) {
    const std::size_t from = bytes.size();
    bytes.append(lines);
    if (!ends.empty())
      for (std::size_t at = from; at < bytes.size(); ++at)
        if (bytes[at] == '\n') ends.push_back(at);
    count += n;
  }

  // As push_lines, taking over `lines` when nothing was pushed yet.
  void adopt_lines(std::string&& lines, std::size_t n) {
    if (count != 0) {
      push_lines(lines, n);
      return;
    }
    bytes = std::move(lines);
    count = n;
  }

  // Reads the strings in order.
  class Reader {
   public:
    explicit Reader(const Packed& packed) : packed_(packed) {}
    std::string_view next() {
      const std::string_view bytes = packed_.bytes;
      const std::size_t stop = !packed_.ends.empty()
                                   ? static_cast<std::size_t>(packed_.ends[index_])
                                   : separator(bytes, offset_);
      const std::string_view text = bytes.substr(offset_, stop - offset_);
      offset_ = stop + 1;
      ++index_;
      return text;
    }

   private:
    // The next '\n' from `from` (there is one: every string is followed by one). Items
    // are mostly short, where a plain loop beats a call to memchr.
    static std::size_t separator(std::string_view bytes, std::size_t from) {
      const std::size_t stop = std::min(bytes.size(), from + 16);
      for (std::size_t at = from; at < stop; ++at)
        if (bytes[at] == '\n') return at;
      return bytes.find('\n', stop);
    }

    const Packed& packed_;
    std::size_t offset_ = 0;
    std::size_t index_ = 0;
  };

  template <class Archive>
  void serialize(Archive& ar) {
    ar(bytes, ends, count);
  }

 private:
  // The first string holding a '\n' is coming: record the ends of those so far.
  void index_all() {
    ends.reserve(count + 1);
    for (std::size_t at = 0; at < bytes.size(); ++at)
      if (bytes[at] == '\n') ends.push_back(at);
  }
};

// What a task returns: every item's output ("" for a failed one), and which failed why.
struct ChunkResult {
  Packed outputs;
  std::vector<std::uint64_t> failed;  // indices, increasing
  std::vector<std::string> errors;    // one per failed index

  template <class Archive>
  void serialize(Archive& ar) {
    ar(outputs, failed, errors);
  }
};

// Which item of a chunk its worker is running (index + 1), in shared memory: when the
// worker is killed for overrunning the per-item timeout, the parent reads which item it
// was. Only with --timeout and a built-in function.
using ItemSlot = std::optional<mp::RawValue<std::uint64_t>>;

// The exit status of a worker that a Watchdog ended (timeout(1)'s).
constexpr int kTimedOutExit = 124;

// Ends this worker process when the item it runs takes longer than `limit`: a built-in
// function cannot be interrupted otherwise. The pool then reports the worker lost, and
// the parent fails that item (ItemSlot says which) and retries the others.
class Watchdog {
 public:
  explicit Watchdog(std::chrono::duration<double> limit)
      : limit_(std::chrono::ceil<Clock::duration>(limit)), thread_([this] { watch(); }) {}
  ~Watchdog() {
    {
      std::lock_guard guard(mutex_);
      stop_ = true;
    }
    changed_.notify_one();
    thread_.join();
  }
  Watchdog(const Watchdog&) = delete;
  Watchdog& operator=(const Watchdog&) = delete;

  void start_item() {
    {
      std::lock_guard guard(mutex_);
      deadline_ = Clock::now() + limit_;
    }
    changed_.notify_one();
  }

 private:
  using Clock = std::chrono::steady_clock;
  void watch() {
    std::unique_lock lock(mutex_);
    while (!stop_) {
      const Clock::time_point deadline = deadline_;
      if (deadline == Clock::time_point::max()) {
        changed_.wait(lock);
      } else if (changed_.wait_until(lock, deadline) == std::cv_status::timeout && !stop_ &&
                 deadline_ == deadline) {
        ::_exit(kTimedOutExit);
      }
    }
  }

  const Clock::duration limit_;
  std::mutex mutex_;
  std::condition_variable changed_;
  Clock::time_point deadline_ = Clock::time_point::max();
  bool stop_ = false;
  std::thread thread_;  // last: starts once the members above exist
};

// A task: runs the job over a chunk of items. Runs in a pool worker (a free function, so
// that it crosses into spawned workers too). Never throws for a bad item: the result
// says which items failed and why.
ChunkResult run_chunk(const Job& job, const Packed& items, const ItemSlot& slot) {
  ChunkResult result;
  result.outputs.bytes.reserve(items.bytes.size() * 2);
  result.outputs.ends.reserve(items.size());
  const Function function = job.command ? nullptr : find_function(job.function);
  const std::optional<std::chrono::duration<double>> timeout =
      job.timeout ? std::optional<std::chrono::duration<double>>(*job.timeout) : std::nullopt;
  std::optional<Watchdog> watchdog;
  if (timeout && !job.command) watchdog.emplace(*timeout);
  Packed::Reader reader(items);
  for (std::size_t i = 0; i < items.size(); ++i) {
    const std::string_view item = reader.next();
    if (slot) slot->set_value(i + 1);
    if (watchdog) watchdog->start_item();
    try {
      result.outputs.push(job.command ? run(*job.command, item, timeout) : function(item));
    } catch (const std::exception& e) {
      result.outputs.push({});
      result.failed.push_back(i);
      result.errors.push_back(job.command ? e.what() : job.function + ": " + e.what());
    }
  }
  return result;
}

// ---- the input ----

// Finds where the first `n` lines of [p, end) end: returns the byte after the last '\n'
// taken (p if none) and sets `n` to how many lines that is. Counts whole blocks first,
// which compilers vectorize, so short lines cost no call each.
const char* skip_lines(const char* p, const char* end, std::size_t& n) {
  constexpr std::size_t kBlock = 4096;
  const char* after = p;
  std::size_t found = 0;
  while (found < n && p < end) {
    const std::size_t length = std::min<std::size_t>(static_cast<std::size_t>(end - p), kBlock);
    const auto in_block = static_cast<std::size_t>(std::count(p, p + length, '\n'));
    if (found + in_block <= n) {
      found += in_block;
      if (in_block != 0) after = static_cast<const char*>(::memrchr(p, '\n', length)) + 1;
      p += length;
      continue;
    }
    while (found < n) {
      p = static_cast<const char*>(std::memchr(p, '\n', static_cast<std::size_t>(end - p))) + 1;
      ++found;
    }
    after = p;
  }
  n = found;
  return after;
}

// The items, from the ::: arguments or from stdin (lines without their '\n'; a final
// line without one counts too). Stdin is read only when the caller knows it is readable
// (poll), so that results keep flowing while the input is slow or idle. Every byte read
// is scanned once for line ends as it arrives (and once more when its chunk is taken),
// so a line of any length costs what reading it costs.
class Input {
 public:
  Input(const std::optional<std::vector<std::string>>& arguments, bool stdin_closed)
      : arguments_(arguments ? &*arguments : nullptr), stdin_closed_(stdin_closed) {}

  bool from_stdin() const { return arguments_ == nullptr; }
  // No more bytes will come (the items are then exactly those ready()).
  bool ended() const { return !from_stdin() || eof_; }

  // The items that can be taken now, without reading.
  std::size_t ready() const {
    if (arguments_) return arguments_->size() - index_;
    return lines_ + (eof_ && lines_end_ < filled_ ? 1 : 0);
  }

  // Reads once from stdin (call it when poll says stdin is readable: it may block
  // otherwise); sets ended() at the end of the input. Throws std::runtime_error.
  void read_some() {
    if (ended()) return;
    make_room();
    while (true) {
      const ssize_t got = stdin_closed_
                              ? (errno = EBADF, -1)
                              : ::read(0, buffer_.data() + filled_, buffer_.size() - filled_);
      if (got > 0) {
        scan(filled_, filled_ + static_cast<std::size_t>(got));
        filled_ += static_cast<std::size_t>(got);
        return;
      }
      if (got == 0) break;
      if (errno != EINTR)
        throw std::runtime_error("reading standard input failed: " +
                                 std::string(std::strerror(errno)));
    }
    eof_ = true;
  }

  // Appends the next min(n, ready()) items to `into`; returns how many. Never reads.
  std::size_t take(std::size_t n, Packed& into) {
    n = std::min(n, ready());
    if (arguments_) {
      for (std::size_t i = 0; i < n; ++i) into.push((*arguments_)[index_++]);
      return n;
    }
    std::size_t lines = std::min(n, lines_);
    if (lines != 0) {
      const char* begin = buffer_.data() + start_;
      // Every ready line: they end where the scan found the last '\n'. Fewer: find the
      // end of the n-th line (only the bytes taken are scanned again).
      const char* after = lines == lines_ ? buffer_.data() + lines_end_
                                          : skip_lines(begin, buffer_.data() + lines_end_, lines);
      const auto size = static_cast<std::size_t>(after - begin);
      if (start_ == 0 && into.empty() && size >= kAdoptFrom && size * 2 >= buffer_.size()) {
        // A long line fills most of the buffer: the buffer becomes the chunk, and what
        // follows the line moves to a fresh buffer, so the line is not copied.
        std::string rest = buffer_.substr(size, filled_ - size);
        buffer_.resize(size);
        into.adopt_lines(std::move(buffer_), lines);
        buffer_ = std::move(rest);
        filled_ -= size;
        lines_end_ -= size;
        start_ = 0;
      } else {
        into.push_lines(std::string_view(begin, size), lines);
        start_ += size;
      }
      lines_ -= lines;
    }
    if (lines < n) {  // the last line, without its '\n'
      into.push(std::string_view(buffer_).substr(start_, filled_ - start_));
      start_ = lines_end_ = filled_;
      ++lines;
    }
    return lines;
  }

  // How the n-th item (from 1) is named in messages.
  std::string where(std::uint64_t n) const {
    return (arguments_ ? "argument " : "line ") + std::to_string(n);
  }
  std::optional<std::size_t> known_size() const {
    if (!arguments_) return std::nullopt;
    return arguments_->size();
  }

 private:
  // Counts the line ends in the new bytes [from, to).
  void scan(std::size_t from, std::size_t to) {
    const char* begin = buffer_.data() + from;
    const auto length = to - from;
    const auto found = static_cast<std::size_t>(std::count(begin, begin + length, '\n'));
    if (found == 0) return;
    lines_ += found;
    lines_end_ = static_cast<std::size_t>(static_cast<const char*>(::memrchr(begin, '\n', length)) +
                                          1 - buffer_.data());
  }

  // Makes at least kRead / 2 bytes of room after what is buffered: moves the bytes not
  // taken to the front, or grows the buffer (doubling, so a long line is moved O(1)
  // times per byte).
  void make_room() {
    if (buffer_.size() - filled_ >= kRead / 2) return;
    if (start_ != 0) {
      std::memmove(buffer_.data(), buffer_.data() + start_, filled_ - start_);
      filled_ -= start_;
      lines_end_ -= start_;
      start_ = 0;
    }
    if (buffer_.size() - filled_ < kRead / 2) buffer_.resize(std::max(2 * buffer_.size(), kRead));
  }

  static constexpr std::size_t kRead = 1 << 20;
  static constexpr std::size_t kAdoptFrom = 4 << 20;

  const std::vector<std::string>* arguments_;
  bool stdin_closed_;
  std::size_t index_ = 0;
  std::string buffer_;         // stdin's bytes: [start_, filled_) not yet taken
  std::size_t start_ = 0;      // the first byte not taken
  std::size_t lines_end_ = 0;  // after the last '\n' read (<= filled_)
  std::size_t filled_ = 0;     // the end of what was read
  std::size_t lines_ = 0;      // complete lines in [start_, lines_end_)
  bool eof_ = false;
};

// ---- signals ----

// SIGINT, SIGTERM and SIGHUP end mp-map after it printed what is complete (and next in
// order). The handler only records the signal and wakes the main loop through a pipe.
volatile sig_atomic_t g_signal = 0;
pid_t g_main_pid = 0;
int g_wake_fd = -1;

extern "C" void on_signal(int sig) {
  // A forked pool worker inherits this handler: there, and for a second signal, the
  // signal does what it does by default.
  if (::getpid() != g_main_pid || g_signal != 0) {
    ::signal(sig, SIG_DFL);
    ::raise(sig);  // delivered when the handler returns
    return;
  }
  g_signal = sig;
  const int saved = errno;
  (void)!::write(g_wake_fd, "s", 1);
  errno = saved;
}

void install_signal_handlers() {
  for (int sig : {SIGINT, SIGTERM, SIGHUP}) {
    struct sigaction old {};
    (void)::sigaction(sig, nullptr, &old);
    if (old.sa_handler == SIG_IGN) continue;  // nohup: stays ignored
    struct sigaction action {};
    action.sa_handler = &on_signal;
    ::sigemptyset(&action.sa_mask);
    action.sa_flags = SA_RESTART;
    (void)::sigaction(sig, &action, nullptr);
  }
}

// Ends this process by `sig`, as if it had not been handled (exit status 128 + sig).
[[noreturn]] void die_by(int sig) {
  ::signal(sig, SIG_DFL);
  sigset_t set;
  ::sigemptyset(&set);
  ::sigaddset(&set, sig);
  ::pthread_sigmask(SIG_UNBLOCK, &set, nullptr);
  ::raise(sig);
  std::_Exit(128 + sig);
}

// ---- the map ----

struct Chunk {
  std::uint64_t first = 0;  // number of its first item (from 1)
  Packed items;
  ItemSlot slot;  // with a per-item timeout: the item its worker runs
  // Written by the pool's result thread under Mapper::mutex_ before `done`; read by the
  // main thread after it saw `done` under the same mutex.
  ChunkResult result;
  std::string failure;     // the task failed (worker lost, timed out): why; items retried
  bool timed_out = false;  // ... because an item overran the timeout
  bool done = false;
};

// Feeds chunks of input to the pool, at most a window of them in flight, and prints the
// outcomes in input order (or as they complete). The pool's result thread only marks
// chunks done (under mutex_) and wakes the main thread through a pipe; everything else
// happens in the main thread, which waits in poll() for results, input and signals
// together, so that neither a slow input delays results nor the reverse.
class Mapper {
 public:
  Mapper(const Options& options, Job job, Input& input, Output& output)
      : options_(options),
        job_(std::move(job)),
        input_(input),
        output_(output),
        progress_(options.progress.value_or(::isatty(2) == 1)),
        jobs_(options.jobs ? options.jobs : static_cast<unsigned>(mp::cpu_count())) {
    int fds[2];
    if (::pipe2(fds, O_CLOEXEC | O_NONBLOCK) != 0)
      throw std::system_error(errno, std::generic_category(), "pipe");
    wake_read_ = fds[0];
    wake_write_ = fds[1];
  }
  ~Mapper() {
    ::close(wake_read_);
    ::close(wake_write_);
  }
  Mapper(const Mapper&) = delete;
  Mapper& operator=(const Mapper&) = delete;

  int run() {
    // What stdin holds already: when that is all of it, no more workers start than
    // there are chunks to run.
    constexpr std::size_t kStartLookahead = 1 << 16;
    while (!input_.ended() && input_.ready() < kStartLookahead && stdin_readable())
      input_.read_some();
    mp::PoolOptions pool_options{.processes = static_cast<int>(workers_to_start()),
                                 .start_method = options_.start_method};
    if (options_.timeout) {
      // Each item's limit is enforced in the worker (a Watchdog, or --exec's own); the
      // pool's limit on the whole task is the backstop.
      const double per_item = *options_.timeout + 5;
      const double items = static_cast<double>(std::max<std::size_t>(chunksize_hint(), 1));
      pool_options.task_timeout = std::chrono::ceil<std::chrono::nanoseconds>(
          std::chrono::duration<double>(per_item * items));
    }
    if (auto size = input_.known_size()) progress_.set_total(*size);
    std::optional<mp::Pool> started;
    try {
      started.emplace(pool_options);
    } catch (const std::system_error& e) {
      throw std::runtime_error("starting the " +
                               std::to_string(pool_options.processes.value_or(0)) +
                               " worker processes: " + e.what());
    }
    mp::Pool& pool = *started;
    pool_ = &pool;
    g_main_pid = ::getpid();
    g_wake_fd = wake_write_;
    install_signal_handlers();
    // A write to a closed pipe then fails with EPIPE here (the pool's threads and
    // workers keep the default): the workers are stopped before mp-map ends by SIGPIPE.
    sigset_t pipe_signal;
    ::sigemptyset(&pipe_signal);
    ::sigaddset(&pipe_signal, SIGPIPE);
    ::pthread_sigmask(SIG_BLOCK, &pipe_signal, nullptr);
    int status = 0;
    int write_error = 0;
    try {
      loop();
      status = failed_items_ > 0 ? 1 : 0;
    } catch (const WriteError& e) {
      write_error = e.error;
      halted_ = true;
    }
    if (halted_ || g_signal != 0)
      pool.terminate();
    else
      pool.close();
    pool.join();
    pool_ = nullptr;
    progress_.update(done_items_, true);
    progress_.clear();
    if (g_signal != 0) die_by(g_signal);
    if (write_error != 0) {
      if (write_error == EPIPE && !sigpipe_ignored_) die_by(SIGPIPE);
      std::fprintf(stderr, "mp-map: write error: %s\n", std::strerror(write_error));
      return 1;
    }
    return status;
  }

  void set_sigpipe_ignored(bool ignored) { sigpipe_ignored_ = ignored; }

 private:
  void loop() {
    const std::size_t window = 4 * static_cast<std::size_t>(jobs_);
    while (true) {
      if (g_signal != 0) break;
      submit_ready(window);
      emit_ready();
      output_.flush();
      if (halted_ || g_signal != 0) break;
      if (input_.ended() && input_.ready() == 0 && pending_.empty()) break;
      wait(window);
    }
    if (g_signal != 0) {
      // Interrupted: print what is complete (and next in order), then end.
      emit_ready();
      output_.flush();
    }
  }

  // Waits until a task finishes, a signal comes or (when more input is wanted) stdin is
  // readable.
  void wait(std::size_t window) {
    pollfd fds[2] = {{wake_read_, POLLIN, 0}, {-1, POLLIN, 0}};
    if (!halted_ && !input_.ended() && in_flight_.load() < window) fds[1].fd = 0;
    const int ready = ::poll(fds, 2, 1000);
    if (ready < 0 && errno != EINTR)
      throw std::system_error(errno, std::generic_category(), "poll");
    if (ready > 0 && fds[0].revents) {
      char buffer[256];
      while (::read(wake_read_, buffer, sizeof buffer) > 0) {
      }
    }
    wake_pending_.store(false);
    if (ready > 0 && fds[1].fd == 0 && fds[1].revents) input_.read_some();
  }

  // Whether stdin has bytes (or its end) to read now.
  static bool stdin_readable() {
    pollfd fd{0, POLLIN, 0};
    return ::poll(&fd, 1, 0) > 0;
  }

  // Submits every chunk that is ready: a full one, the rest at the end of the input, or,
  // while a worker is idle and stdin has nothing more to give right now, what has
  // arrived (so items start as soon as they arrive). Reads stdin only while it is
  // readable: never blocks.
  void submit_ready(std::size_t window) {
    while (!halted_ && in_flight_.load() < window) {
      const std::size_t full = chunk_limit();
      if (!input_.ended()) {
        while (!input_.ended() && input_.ready() < full && stdin_readable()) input_.read_some();
      }
      const std::size_t ready = input_.ready();
      if (input_.ended() && !total_known_) {
        // The whole input is here: Python's formula on its size (unless --chunksize).
        if (chunksize_ == 0) chunksize_ = chunksize_for(ready);
        progress_.set_total(next_number_ - 1 + ready);
        total_known_ = true;
      }
      if (ready == 0) return;
      const std::size_t limit = chunk_limit();
      std::size_t take = 0;
      if (ready >= limit || input_.ended()) {
        take = limit;
      } else if (in_flight_.load() < jobs_) {
        const std::size_t idle = jobs_ - in_flight_.load();
        take = std::min(limit, (ready + idle - 1) / idle);
      } else {
        return;  // wait for more input, or for a worker to be free
      }
      submit(take);
    }
  }

  std::size_t chunksize_hint() const {
    if (options_.chunksize) return options_.chunksize;
    if (job_.command || options_.timeout) return 1;
    return 0;  // decided by the input's size
  }

  // Workers to start: -j, or fewer when the whole input is known to need fewer.
  unsigned workers_to_start() const {
    if (!input_.ended()) return jobs_;
    const std::size_t items = input_.ready();
    const std::size_t hint = chunksize_hint();
    const std::size_t chunks = hint ? (items + hint - 1) / hint : items;
    return static_cast<unsigned>(std::clamp<std::size_t>(chunks, 1, jobs_));
  }

  // Python's Pool.map: divmod(len, 4 * processes), one more if there is a remainder.
  std::size_t chunksize_for(std::size_t count) const {
    const std::size_t jobs = jobs_;
    std::size_t size = count / (4 * jobs);
    if (count % (4 * jobs)) ++size;
    return std::max<std::size_t>(size, 1);
  }

  // The largest chunk: --chunksize; Python's formula when the input's size is known; for
  // a stream of unknown length, as for 256k items.
  std::size_t chunk_limit() {
    if (chunksize_ == 0) {
      if (const std::size_t hint = chunksize_hint()) {
        chunksize_ = hint;
      } else if (auto size = input_.known_size()) {
        chunksize_ = chunksize_for(*size);
      } else {
        return chunksize_for(std::size_t{1} << 18);  // until the end of the input is seen
      }
    }
    return chunksize_;
  }

  void submit(std::size_t n) {
    auto chunk = std::make_shared<Chunk>();
    chunk->first = next_number_;
    input_.take(n, chunk->items);
    if (chunk->items.empty()) return;
    next_number_ += chunk->items.size();
    pending_.push_back(chunk);
    launch(chunk);
  }

  void launch(const std::shared_ptr<Chunk>& chunk) {
    if (options_.timeout && !job_.command) chunk->slot.emplace(0);
    ++in_flight_;
    auto on_result = [this, chunk](const ChunkResult& result) {
      std::lock_guard guard(mutex_);
      // Moved, not copied: the value belongs to the AsyncResult that launch() drops, so
      // nothing else reads it (and it is not a const object, so the cast is sound).
      chunk->result = std::move(const_cast<ChunkResult&>(result));
      finish(*chunk);
    };
    auto on_error = [this, chunk](std::exception_ptr error) {
      bool timed_out = false;
      std::string why = describe_failure(error, timed_out);
      std::lock_guard guard(mutex_);
      chunk->failure = std::move(why);
      chunk->timed_out = timed_out;
      finish(*chunk);
    };
    pool_->apply_async_with(std::move(on_result), std::move(on_error), &run_chunk, job_,
                            chunk->items, chunk->slot);
  }

  // Why a whole task failed (the worker died, an item timed out, ...), as one line.
  std::string describe_failure(const std::exception_ptr& error, bool& timed_out) const {
    try {
      std::rethrow_exception(error);
    } catch (const mp::TimeoutError&) {
      timed_out = true;
    } catch (const mp::WorkerLostError& e) {
      if (!(options_.timeout && e.exitcode() == kTimedOutExit)) return e.what();
      timed_out = true;
    } catch (const std::exception& e) {
      return e.what();
    } catch (...) {
      return "an unknown error";
    }
    char seconds[32];
    std::snprintf(seconds, sizeof seconds, "%g", options_.timeout.value_or(0));
    return std::string("timed out after ") + seconds + " s (the worker was killed and replaced)";
  }

  // In the result thread, under mutex_.
  void finish(Chunk& chunk) {
    chunk.done = true;
    --in_flight_;
    if (!wake_pending_.exchange(true)) (void)!::write(wake_write_, "r", 1);
  }

  bool is_done(const Chunk& chunk) {
    std::lock_guard guard(mutex_);
    return chunk.done;
  }

  // Prints what is ready: the front chunks in order, or any chunk with --unordered.
  void emit_ready() {
    for (auto it = pending_.begin(); it != pending_.end() && !halted_;) {
      const std::shared_ptr<Chunk> chunk = *it;
      if (!is_done(*chunk)) {
        if (!options_.unordered) break;
        ++it;
        continue;
      }
      it = pending_.erase(it);
      if (!chunk->failure.empty() && chunk->items.size() > 1) {
        // A worker died or an item timed out: retry the items one by one, so that only
        // the item that causes it fails. An item known to have timed out fails at once.
        std::optional<std::size_t> overdue;
        if (chunk->timed_out && chunk->slot && chunk->slot->value() != 0)
          overdue = static_cast<std::size_t>(chunk->slot->value() - 1);
        std::vector<std::string_view> items;
        Packed::Reader reader(chunk->items);
        for (std::size_t i = 0; i < chunk->items.size(); ++i) items.push_back(reader.next());
        for (std::size_t i = items.size(); i-- > 0;) {
          auto single = std::make_shared<Chunk>();
          single->first = chunk->first + i;
          single->items.push(items[i]);
          it = pending_.insert(it, single);
          if (overdue == i) {
            single->failure = chunk->failure;
            single->done = true;
          } else {
            launch(single);
          }
        }
        continue;  // `it` is the first of the singles
      }
      emit(*chunk);
    }
  }

  void emit(const Chunk& chunk) {
    const ChunkResult& result = chunk.result;
    if (options_.format == Format::plain && chunk.failure.empty() && result.failed.empty()) {
      // Every item succeeded: the outputs, each followed by '\n', are the plain output.
      output_.write(result.outputs.bytes);
      finish_emit(chunk);
      return;
    }
    std::string out;
    std::size_t next_failed = 0;
    Packed::Reader items(chunk.items);
    Packed::Reader outputs(result.outputs);
    for (std::size_t i = 0; i < chunk.items.size(); ++i) {
      const std::string_view item = items.next();
      std::string_view error;
      if (!chunk.failure.empty()) {
        error = chunk.failure;
      } else if (next_failed < result.failed.size() && result.failed[next_failed] == i) {
        error = result.errors[next_failed++];
      }
      const bool ok = error.empty();
      // A whole-task failure has no outputs; a failed item's output is empty.
      const std::string_view output = chunk.failure.empty() ? outputs.next() : std::string_view();
      append_record(out, options_.format, item, ok, output, error);
      if (!ok) {
        ++failed_items_;
        progress_.clear();
        output_.write(out);  // keep stdout before stderr
        output_.flush();
        out.clear();
        std::fprintf(stderr, "mp-map: %s: '%s': %.*s\n", input_.where(chunk.first + i).c_str(),
                     printable(item).c_str(), static_cast<int>(error.size()), error.data());
        if (options_.halt_on_error) {
          halted_ = true;
          break;
        }
      }
    }
    output_.write(out);
    finish_emit(chunk);
  }

  void finish_emit(const Chunk& chunk) {
    done_items_ += chunk.items.size();
    progress_.update(done_items_);
  }

  static std::string printable(std::string_view item) { return shown(item); }

  const Options& options_;
  Job job_;
  Input& input_;
  Output& output_;
  Progress progress_;
  const unsigned jobs_;
  mp::Pool* pool_ = nullptr;
  int wake_read_ = -1, wake_write_ = -1;  // the result thread wakes the main thread
  std::atomic<bool> wake_pending_{false};
  std::mutex mutex_;
  std::atomic<std::size_t> in_flight_{0};
  std::deque<std::shared_ptr<Chunk>> pending_;  // submitted, not printed; in input order
  std::size_t chunksize_ = 0;
  std::uint64_t next_number_ = 1;
  std::uint64_t done_items_ = 0;
  std::uint64_t failed_items_ = 0;
  bool halted_ = false;
  bool total_known_ = false;  // the input's end was seen: the progress total is set
  bool sigpipe_ignored_ = false;
};

// A standard descriptor that was closed when mp-map started gets /dev/null, so that no
// descriptor opened later (the pool's pipes, ...) takes its number; true if it was closed.
bool occupy_if_closed(int fd) {
  if (::fcntl(fd, F_GETFD) != -1 || errno != EBADF) return false;
  const int null = ::open("/dev/null", fd == 0 ? O_RDONLY : O_WRONLY);
  if (null >= 0 && null != fd) {
    ::dup2(null, fd);
    ::close(null);
  }
  return true;
}

// Standard output written by stdio (--help, --version): a failed write is an error.
int check_stdout(int status) {
  if (std::fflush(stdout) != 0 || std::ferror(stdout)) {
    std::fprintf(stderr, "mp-map: write error: %s\n", std::strerror(errno));
    return 1;
  }
  return status;
}

}  // namespace
}  // namespace mp_map

int main(int argc, char** argv) {
  mp::freeze_support(argc, argv);
  using namespace mp_map;
  const bool stdin_closed = occupy_if_closed(0);
  const bool stdout_closed = occupy_if_closed(1);
  (void)occupy_if_closed(2);
  // Chunks and their results are buffers of a few MiB, allocated and freed all the time:
  // keep them in the heap (glibc would map and unmap each, and fault in its pages anew).
  ::mallopt(M_MMAP_THRESHOLD, 32 << 20);
  ::mallopt(M_TRIM_THRESHOLD, 64 << 20);
  Options options;
  Job job;
  try {
    options = parse_options(argc, argv);
    job.function = options.function;
    job.timeout = options.timeout;
    if (options.exec) job.command = prepare(*options.exec);
  } catch (const UsageError& e) {
    std::fprintf(stderr, "mp-map: %s\n(mp-map --help lists the options)\n", e.message.c_str());
    return 2;
  } catch (const std::invalid_argument& e) {
    std::fprintf(stderr, "mp-map: %s\n", e.what());
    return 2;
  } catch (const ExitNow& e) {
    if (stdout_closed && e.status == 0) {
      std::fprintf(stderr, "mp-map: write error: %s\n", std::strerror(EBADF));
      return 1;
    }
    return check_stdout(e.status);
  }
  struct sigaction pipe_action {};
  (void)::sigaction(SIGPIPE, nullptr, &pipe_action);
  try {
    Input input(options.arguments, stdin_closed);
    Output output(1, stdout_closed);
    Mapper mapper(options, std::move(job), input, output);
    mapper.set_sigpipe_ignored(pipe_action.sa_handler == SIG_IGN);
    return mapper.run();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "mp-map: %s\n", e.what());
    return 1;
  }
}
