#include "mapper.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <exception>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

#include <mp/mp.hpp>

#include "text.hpp"

namespace mp_map {
namespace {

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
    std::optional<mp::Pool> pool;
    start_pool(pool);
    pool_ = &*pool;
    take_signals();
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
      pool->terminate();
    else
      pool->close();
    pool->join();
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
  // Starts the workers: as many as -j says, or fewer when stdin already holds the
  // whole input and it needs fewer. Throws std::runtime_error naming a worker that
  // could not start.
  void start_pool(std::optional<mp::Pool>& pool) {
    // What stdin holds already: when that is all of it, no more workers start than
    // there are chunks to run. A few MiB at most: forked workers would count a larger
    // buffer in their own memory use (its pages are shared with mp-map, but resident).
    constexpr std::size_t kStartLookahead = 1 << 16;
    constexpr std::size_t kStartLookaheadBytes = 4 << 20;
    while (!input_.ended() && input_.ready() < kStartLookahead &&
           input_.buffered() < kStartLookaheadBytes && stdin_readable())
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
    try {
      pool.emplace(pool_options);
    } catch (const std::system_error& e) {
      // The library's message names the worker and the step ("mp: starting
      // ForkPoolWorker-3: fork: ..."); mp-map's own prefix replaces "mp: ".
      std::string_view what = e.what();
      if (what.starts_with("mp: ")) what.remove_prefix(4);
      throw std::runtime_error(std::string(what));
    }
  }

  // From here on SIGINT, SIGTERM and SIGHUP wake the main loop, and a write to a closed
  // pipe fails with EPIPE in this thread (the pool's threads and workers keep the
  // default), so that the workers are stopped before mp-map ends by SIGPIPE.
  void take_signals() {
    g_main_pid = ::getpid();
    g_wake_fd = wake_write_;
    install_signal_handlers();
    sigset_t pipe_signal;
    ::sigemptyset(&pipe_signal);
    ::sigaddset(&pipe_signal, SIGPIPE);
    ::pthread_sigmask(SIG_BLOCK, &pipe_signal, nullptr);
  }

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
    chunk->items.share();  // a large chunk goes to its worker as a handle
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
      output_.write(result.outputs.view());
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

}  // namespace

int run_map(const Options& options, Job job, Input& input, Output& output, bool sigpipe_ignored) {
  Mapper mapper(options, std::move(job), input, output);
  mapper.set_sigpipe_ignored(sigpipe_ignored);
  return mapper.run();
}

}  // namespace mp_map
