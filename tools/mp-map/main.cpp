// mp-map: a process-pool map over command-line input, in the family of `xargs -P` and
// GNU parallel; the command-line face of mp::Pool.
//
//   mp-map [OPTIONS] FUNCTION [::: ITEM...]
//   mp-map [OPTIONS] --exec 'COMMAND {}' [::: ITEM...]
//
// Items come from the arguments after ::: or else from standard input, one per line;
// results go to standard output one per line, in input order (--unordered: as they
// complete). See usage() for the options and exit statuses.
#include <malloc.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <deque>
#include <exception>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
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
               "  -j, --jobs N         worker processes (default: the number of CPUs)\n"
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
               "\nExit status: 0 if every item succeeded, 1 if any failed, 2 for a usage "
               "error.\n");
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
      std::exit(0);
    } else if (name == "--version") {
      std::printf("mp-map %s\n", kVersion);
      std::exit(0);
    } else if (name == "-j" || name == "--jobs") {
      options.jobs = static_cast<unsigned>(parse_count(name, take_value(), 4096));
    } else if (name.rfind("-j", 0) == 0 && name.size() > 2 && name[2] != '-') {
      options.jobs = static_cast<unsigned>(parse_count("-j", name.substr(2), 4096));
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

  // Reads the strings in order.
  class Reader {
   public:
    explicit Reader(const Packed& packed) : packed_(packed) {}
    std::string_view next() {
      const std::string_view bytes = packed_.bytes;
      const std::size_t end = !packed_.ends.empty() ? static_cast<std::size_t>(packed_.ends[index_])
                                                    : separator(bytes, offset_);
      const std::string_view text = bytes.substr(offset_, end - offset_);
      offset_ = end + 1;
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

// A task: runs the job over a chunk of items. Runs in a pool worker (a free function, so
// that it crosses into spawned workers too). Never throws for a bad item: the result
// says which items failed and why.
ChunkResult run_chunk(const Job& job, const Packed& items) {
  ChunkResult result;
  result.outputs.bytes.reserve(items.bytes.size() * 2);
  result.outputs.ends.reserve(items.size());
  const Function function = job.command ? nullptr : find_function(job.function);
  const std::optional<std::chrono::duration<double>> timeout =
      job.timeout ? std::optional<std::chrono::duration<double>>(*job.timeout) : std::nullopt;
  Packed::Reader reader(items);
  for (std::size_t i = 0; i < items.size(); ++i) {
    const std::string_view item = reader.next();
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
// line without one counts too), taken a chunk at a time. Stdin is read in large blocks
// into one buffer, from which a chunk's lines are copied at once.
class Input {
 public:
  explicit Input(const std::optional<std::vector<std::string>>& arguments)
      : arguments_(arguments ? &*arguments : nullptr) {}

  // Appends the next `n` items to `into` (fewer at the end of the input); returns how
  // many it appended.
  std::size_t take(std::size_t n, Packed& into) {
    std::size_t taken = 0;
    if (arguments_) {
      for (; taken < n && index_ < arguments_->size(); ++taken) into.push((*arguments_)[index_++]);
      return taken;
    }
    while (taken < n) {
      std::size_t lines = n - taken;
      const char* begin = buffer_.data() + start_;
      const char* after = skip_lines(begin, buffer_.data() + filled_, lines);
      if (lines != 0) {
        into.push_lines(std::string_view(begin, static_cast<std::size_t>(after - begin)), lines);
        start_ = static_cast<std::size_t>(after - buffer_.data());
        taken += lines;
      }
      if (taken == n) break;
      if (!fill()) {
        if (start_ < filled_) {  // the last line, without its '\n'
          into.push(std::string_view(buffer_).substr(start_, filled_ - start_));
          start_ = filled_;
          ++taken;
        }
        break;
      }
    }
    return taken;
  }

  // Reads ahead until `n` items are waiting or the input ended; returns how many wait.
  std::size_t look_ahead(std::size_t n) {
    if (arguments_) return std::min(n, arguments_->size() - index_);
    std::size_t lines = 0;
    std::size_t scanned = 0;  // bytes after start_ holding those lines
    while (true) {
      std::size_t more = n - lines;
      const char* from = buffer_.data() + start_ + scanned;
      scanned += static_cast<std::size_t>(skip_lines(from, buffer_.data() + filled_, more) - from);
      lines += more;
      if (lines == n) return n;
      if (!fill()) return lines + (start_ + scanned < filled_ ? 1 : 0);
    }
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
  // Reads more of stdin after what is buffered (moving that to the front, or growing the
  // buffer, to make room); false at the end of the input.
  bool fill() {
    if (eof_) return false;
    if (start_ != 0) {
      std::memmove(buffer_.data(), buffer_.data() + start_, filled_ - start_);
      filled_ -= start_;
      start_ = 0;
    }
    if (buffer_.size() - filled_ < kRead / 2) buffer_.resize(std::max(2 * buffer_.size(), kRead));
    while (true) {
      const ssize_t got = ::read(0, buffer_.data() + filled_, buffer_.size() - filled_);
      if (got > 0) {
        filled_ += static_cast<std::size_t>(got);
        return true;
      }
      if (got == 0) break;
      if (errno != EINTR)
        throw std::runtime_error("reading standard input failed: " +
                                 std::string(std::strerror(errno)));
    }
    eof_ = true;
    return false;
  }

  static constexpr std::size_t kRead = 1 << 20;

  const std::vector<std::string>* arguments_;
  std::size_t index_ = 0;
  std::string buffer_;      // stdin's bytes: [start_, filled_) not yet taken
  std::size_t start_ = 0;   // the first byte not taken
  std::size_t filled_ = 0;  // the end of what was read
  bool eof_ = false;
};

// ---- the map ----

struct Chunk {
  std::uint64_t first = 0;  // number of its first item (from 1)
  Packed items;
  // Written by the pool's result thread under Mapper::mutex_ before `done`; read by the
  // main thread after it saw `done` under the same mutex.
  ChunkResult result;
  std::string failure;  // the task failed (worker lost, timed out): why; items retried
  bool done = false;
};

// Why a whole task failed (the worker died, the task timed out, ...), as one line.
std::string describe_failure(const std::exception_ptr& error) {
  try {
    std::rethrow_exception(error);
  } catch (const mp::TimeoutError&) {
    return "timed out (the worker was killed and replaced)";
  } catch (const std::exception& e) {
    return e.what();
  } catch (...) {
    return "an unknown error";
  }
}

// Feeds chunks of input to the pool, at most a window of them in flight, and prints the
// outcomes in input order (or as they complete). The pool's result thread only marks
// chunks done (under mutex_); everything else happens in the main thread, which never
// holds mutex_ while it calls the pool.
class Mapper {
 public:
  Mapper(const Options& options, Job job, Input& input)
      : options_(options),
        job_(std::move(job)),
        input_(input),
        progress_(options.progress.value_or(::isatty(2) == 1)) {}

  int run() {
    const unsigned jobs = options_.jobs ? options_.jobs : static_cast<unsigned>(mp::cpu_count());
    mp::PoolOptions pool_options{.processes = static_cast<int>(jobs),
                                 .start_method = options_.start_method};
    if (options_.timeout) {
      // --exec enforces the timeout in the worker (and kills the command); the pool's own
      // limit is the backstop that also covers the built-in functions.
      const double per_item = job_.command ? *options_.timeout + 5 : *options_.timeout;
      const double items = static_cast<double>(std::max<std::size_t>(chunksize_hint(), 1));
      pool_options.task_timeout = std::chrono::ceil<std::chrono::nanoseconds>(
          std::chrono::duration<double>(per_item * items));
    }
    if (auto size = input_.known_size()) progress_.set_total(*size);
    std::optional<mp::Pool> started;
    try {
      started.emplace(pool_options);
    } catch (const std::system_error& e) {
      throw std::runtime_error("starting the " + std::to_string(jobs) +
                               " worker processes: " + e.what());
    }
    mp::Pool& pool = *started;
    pool_ = &pool;
    const std::size_t window = 4 * static_cast<std::size_t>(jobs);
    while (true) {
      while (!halted_ && !input_done_ && in_flight_.load() < window) submit_next();
      const std::uint64_t seen = generation();
      emit_ready();
      if (halted_ || (input_done_ && pending_.empty())) break;
      std::unique_lock lock(mutex_);
      changed_.wait_for(lock, std::chrono::milliseconds(200), [&] { return generation_ != seen; });
    }
    if (halted_)
      pool.terminate();
    else
      pool.close();
    pool.join();
    pool_ = nullptr;
    progress_.update(done_items_, true);
    progress_.clear();
    std::fflush(stdout);
    return failed_items_ > 0 ? 1 : 0;
  }

 private:
  std::uint64_t generation() {
    std::lock_guard guard(mutex_);
    return generation_;
  }

  std::size_t chunksize_hint() const {
    if (options_.chunksize) return options_.chunksize;
    if (job_.command || options_.timeout) return 1;
    return 0;  // decided by the input's size
  }

  // Python's Pool.map: divmod(len, 4 * processes), one more if there is a remainder.
  std::size_t chunksize_for(std::size_t count) const {
    const std::size_t jobs = options_.jobs ? options_.jobs : mp::cpu_count();
    std::size_t size = count / (4 * jobs);
    if (count % (4 * jobs)) ++size;
    return std::max<std::size_t>(size, 1);
  }

  // The default chunk size: Python's formula when the input's size is known (or fits the
  // lookahead of 64k items); for a long or endless stream, as for 256k items.
  std::size_t decide_chunksize() {
    if (const std::size_t hint = chunksize_hint()) return hint;
    if (auto size = input_.known_size()) return chunksize_for(*size);
    constexpr std::size_t kLookahead = 1 << 16;
    const std::size_t waiting = input_.look_ahead(kLookahead);
    if (waiting < kLookahead) {
      progress_.set_total(waiting);
      return chunksize_for(waiting);
    }
    return chunksize_for(kLookahead * 4);
  }

  // Reads the next chunk's items and submits them.
  void submit_next() {
    if (chunksize_ == 0) chunksize_ = decide_chunksize();
    auto chunk = std::make_shared<Chunk>();
    chunk->first = next_number_;
    if (input_.take(chunksize_, chunk->items) < chunksize_) input_done_ = true;
    if (chunk->items.empty()) return;
    next_number_ += chunk->items.size();
    pending_.push_back(chunk);
    launch(chunk);
  }

  void launch(const std::shared_ptr<Chunk>& chunk) {
    ++in_flight_;
    auto on_result = [this, chunk](const ChunkResult& result) {
      std::lock_guard guard(mutex_);
      // Moved, not copied: the value belongs to the AsyncResult that launch() drops, so
      // nothing else reads it (and it is not a const object, so the cast is sound).
      chunk->result = std::move(const_cast<ChunkResult&>(result));
      finish(*chunk);
    };
    auto on_error = [this, chunk](std::exception_ptr error) {
      std::string why = describe_failure(error);
      std::lock_guard guard(mutex_);
      chunk->failure = std::move(why);
      finish(*chunk);
    };
    pool_->apply_async_with(std::move(on_result), std::move(on_error), &run_chunk, job_,
                            chunk->items);
  }

  // In the result thread, under mutex_.
  void finish(Chunk& chunk) {
    chunk.done = true;
    --in_flight_;
    ++generation_;
    changed_.notify_all();
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
        // A worker died or the task timed out: retry its items one by one, so that only
        // the item that causes it fails.
        std::vector<std::string_view> items;
        Packed::Reader reader(chunk->items);
        for (std::size_t i = 0; i < chunk->items.size(); ++i) items.push_back(reader.next());
        for (std::size_t i = items.size(); i-- > 0;) {
          auto single = std::make_shared<Chunk>();
          single->first = chunk->first + i;
          single->items.push(items[i]);
          it = pending_.insert(it, single);
          launch(single);
        }
        continue;  // `it` is the first retry, not done yet
      }
      emit(*chunk);
    }
  }

  void emit(const Chunk& chunk) {
    const ChunkResult& result = chunk.result;
    if (options_.format == Format::plain && chunk.failure.empty() && result.failed.empty()) {
      // Every item succeeded: the outputs, each followed by '\n', are the plain output.
      std::fwrite(result.outputs.bytes.data(), 1, result.outputs.bytes.size(), stdout);
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
        std::fwrite(out.data(), 1, out.size(), stdout);  // keep stdout before stderr
        std::fflush(stdout);
        out.clear();
        std::fprintf(stderr, "mp-map: %s: '%s': %.*s\n", input_.where(chunk.first + i).c_str(),
                     printable(item).c_str(), static_cast<int>(error.size()), error.data());
        if (options_.halt_on_error) {
          halted_ = true;
          break;
        }
      }
    }
    std::fwrite(out.data(), 1, out.size(), stdout);
    finish_emit(chunk);
  }

  void finish_emit(const Chunk& chunk) {
    if (options_.unordered) std::fflush(stdout);
    done_items_ += chunk.items.size();
    progress_.update(done_items_);
  }

  static std::string printable(std::string_view item) { return shown(item); }

  const Options& options_;
  Job job_;
  Input& input_;
  Progress progress_;
  mp::Pool* pool_ = nullptr;
  std::mutex mutex_;
  std::condition_variable changed_;
  std::uint64_t generation_ = 0;  // under mutex_: counts finished tasks
  std::atomic<std::size_t> in_flight_{0};
  std::deque<std::shared_ptr<Chunk>> pending_;  // submitted, not printed; in input order
  std::size_t chunksize_ = 0;
  std::uint64_t next_number_ = 1;
  std::uint64_t done_items_ = 0;
  std::uint64_t failed_items_ = 0;
  bool input_done_ = false;
  bool halted_ = false;
};

}  // namespace
}  // namespace mp_map

int main(int argc, char** argv) {
  mp::freeze_support(argc, argv);
  // Chunks and their results are buffers of a few MiB, allocated and freed all the time:
  // keep them in the heap (glibc would map and unmap each, and fault in its pages anew).
  ::mallopt(M_MMAP_THRESHOLD, 32 << 20);
  ::mallopt(M_TRIM_THRESHOLD, 64 << 20);
  using namespace mp_map;
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
  }
  try {
    Input input(options.arguments);
    Mapper mapper(options, std::move(job), input);
    return mapper.run();
  } catch (const std::exception& e) {
    std::fflush(stdout);
    std::fprintf(stderr, "mp-map: %s\n", e.what());
    return 1;
  }
}
