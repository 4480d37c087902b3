// mp-map: a process-pool map over command-line input, in the family of `xargs -P` and
// GNU parallel; the command-line face of mp::Pool.
//
//   mp-map [OPTIONS] FUNCTION [::: ITEM...]
//   mp-map [OPTIONS] --exec 'COMMAND {}' [::: ITEM...]
//
// Items come from the arguments after ::: or else from standard input, one per line;
// results go to standard output one per line, in input order (--unordered: as they
// complete). See usage() for the options and exit statuses.
#include <unistd.h>

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
#include <vector>

#include <mp/mp.hpp>

#include "exec.hpp"
#include "functions.hpp"
#include "output.hpp"

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
               "failure\n"
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
                     ", got '" + text + "'"};
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
        throw UsageError{"--timeout needs a number of seconds above 0, got '" + text + "'"};
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
        throw UsageError{"--format must be plain, tsv or jsonl, got '" + format + "'"};
    } else if (name == "--start-method") {
      options.start_method = take_value();
      if (options.start_method != "fork" && options.start_method != "spawn")
        throw UsageError{"--start-method must be fork or spawn, got '" + options.start_method +
                         "'"};
    } else if (name == "--exec") {
      options.exec = take_value();
    } else if (arg.size() > 1 && arg[0] == '-') {
      throw UsageError{"unknown option '" + arg + "'"};
    } else {
      positional.push_back(arg);
    }
  }
  if (options.exec) {
    if (!positional.empty())
      throw UsageError{"--exec takes the command as its value; unexpected '" + positional[0] +
                       "' (put items after :::)"};
  } else {
    if (positional.empty()) throw UsageError{"no function given (or --exec 'COMMAND {}')"};
    if (positional.size() > 1)
      throw UsageError{"one function only; unexpected '" + positional[1] +
                       "' (put items after :::)"};
    options.function = positional[0];
    if (!find_function(options.function))
      throw UsageError{"unknown function '" + options.function + "' (see mp-map --help)"};
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

// Strings packed into one buffer: a chunk of items, or their outputs. Pickles as two
// contiguous arrays (two copies), where a vector of strings pickles string by string.
struct Packed {
  std::string bytes;
  std::vector<std::uint64_t> ends;  // end offset of each string in `bytes`

  std::size_t size() const { return ends.size(); }
  bool empty() const { return ends.empty(); }
  std::string_view operator[](std::size_t i) const {
    const std::uint64_t begin = i == 0 ? 0 : ends[i - 1];
    return std::string_view(bytes).substr(begin, ends[i] - begin);
  }
  void push(std::string_view text) {
    bytes.append(text);
    ends.push_back(bytes.size());
  }
  template <class Archive>
  void serialize(Archive& ar) {
    ar(bytes, ends);
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
  for (std::size_t i = 0; i < items.size(); ++i) {
    try {
      result.outputs.push(job.command ? run(*job.command, items[i], timeout) : function(items[i]));
    } catch (const std::exception& e) {
      result.outputs.push({});
      result.failed.push_back(i);
      result.errors.push_back(job.command ? e.what() : job.function + ": " + e.what());
    }
  }
  return result;
}

// ---- the input ----

// Items one at a time, from the ::: arguments or from stdin (lines without their '\n';
// a final line without one counts too).
class Input {
 public:
  explicit Input(const std::optional<std::vector<std::string>>& arguments)
      : arguments_(arguments ? &*arguments : nullptr) {}

  // The next item, or nullopt at the end.
  std::optional<std::string> next() {
    if (arguments_) {
      if (index_ >= arguments_->size()) return std::nullopt;
      return (*arguments_)[index_++];
    }
    std::string line;
    while (true) {
      const std::size_t newline = buffer_.find('\n', scanned_);
      if (newline != std::string::npos) {
        line.assign(buffer_, start_, newline - start_);
        start_ = scanned_ = newline + 1;
        return line;
      }
      scanned_ = buffer_.size();
      if (eof_) {
        if (start_ == buffer_.size()) return std::nullopt;
        line.assign(buffer_, start_);
        start_ = scanned_ = buffer_.size();
        return line;
      }
      // Keep the partial line, drop what was consumed, read more.
      buffer_.erase(0, start_);
      scanned_ -= start_;
      start_ = 0;
      const std::size_t old = buffer_.size();
      buffer_.resize(old + (1 << 16));
      const std::size_t got = std::fread(buffer_.data() + old, 1, 1 << 16, stdin);
      buffer_.resize(old + got);
      if (got == 0) {
        if (std::ferror(stdin)) throw std::runtime_error("mp-map: reading standard input failed");
        eof_ = true;
      }
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
  const std::vector<std::string>* arguments_;
  std::size_t index_ = 0;
  std::string buffer_;
  std::size_t start_ = 0;    // first byte of the current line
  std::size_t scanned_ = 0;  // bytes before this hold no newline of the current line
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
    mp::Pool pool(pool_options);
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
    while (lookahead_.size() < kLookahead) {
      std::optional<std::string> item = input_.next();
      if (!item) {
        progress_.set_total(lookahead_.size());
        return chunksize_for(lookahead_.size());
      }
      lookahead_.push_back(std::move(*item));
    }
    return chunksize_for(kLookahead * 4);
  }

  std::optional<std::string> next_item() {
    if (lookahead_.empty()) return input_.next();
    std::string item = std::move(lookahead_.front());
    lookahead_.pop_front();
    return item;
  }

  // Reads the next chunk's items and submits them.
  void submit_next() {
    if (chunksize_ == 0) chunksize_ = decide_chunksize();
    auto chunk = std::make_shared<Chunk>();
    chunk->first = next_number_;
    while (chunk->items.size() < chunksize_) {
      std::optional<std::string> item = next_item();
      if (!item) {
        input_done_ = true;
        break;
      }
      chunk->items.push(*item);
    }
    if (chunk->items.empty()) return;
    next_number_ += chunk->items.size();
    pending_.push_back(chunk);
    launch(chunk);
  }

  void launch(const std::shared_ptr<Chunk>& chunk) {
    ++in_flight_;
    auto on_result = [this, chunk](const ChunkResult& result) {
      std::lock_guard guard(mutex_);
      chunk->result = result;
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
        for (std::size_t i = chunk->items.size(); i-- > 0;) {
          auto single = std::make_shared<Chunk>();
          single->first = chunk->first + i;
          single->items.push(chunk->items[i]);
          it = pending_.insert(it, single);
          launch(single);
        }
        continue;  // `it` is the first retry, not done yet
      }
      emit(*chunk);
    }
  }

  void emit(const Chunk& chunk) {
    std::string out;
    const ChunkResult& result = chunk.result;
    std::size_t next_failed = 0;
    for (std::size_t i = 0; i < chunk.items.size(); ++i) {
      std::string_view error;
      if (!chunk.failure.empty()) {
        error = chunk.failure;
      } else if (next_failed < result.failed.size() && result.failed[next_failed] == i) {
        error = result.errors[next_failed++];
      }
      const bool ok = error.empty();
      const std::string_view output = ok ? result.outputs[i] : std::string_view();
      append_record(out, options_.format, chunk.items[i], ok, output, error);
      if (!ok) {
        ++failed_items_;
        progress_.clear();
        std::fwrite(out.data(), 1, out.size(), stdout);  // keep stdout before stderr
        std::fflush(stdout);
        out.clear();
        std::fprintf(stderr, "mp-map: %s: '%s': %.*s\n", input_.where(chunk.first + i).c_str(),
                     printable(chunk.items[i]).c_str(), static_cast<int>(error.size()),
                     error.data());
        if (options_.halt_on_error) {
          halted_ = true;
          break;
        }
      }
    }
    std::fwrite(out.data(), 1, out.size(), stdout);
    if (options_.unordered) std::fflush(stdout);
    done_items_ += chunk.items.size();
    progress_.update(done_items_);
  }

  static std::string printable(std::string_view item) {
    std::string out(item.size() > 80 ? item.substr(0, 77) : item);
    if (item.size() > 80) out += "...";
    for (char& c : out)
      if (static_cast<unsigned char>(c) < 0x20) c = '?';
    return out;
  }

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
  std::deque<std::string> lookahead_;
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
