// mp::Pool's MPI transport, rank 0's side: each WorkerLink is one worker process of a
// serving rank's local pool (mpi_serve.cpp). One thread at a time talks to MPI (the
// Hub's rounds, under its comm mutex): a link sends its messages itself, and a pool
// thread that looks for a link's replies while it has tasks out (the caller waiting in
// get(), the result thread's spin) receives and handles what arrived itself, so a short
// task's round trip wakes no other thread at rank 0. The hub thread polls with a
// back-off for the rest. The replies land in the link's LinkState; the result thread
// sleeps on two eventfds per link, which whoever handles a reply signals.
//
// The claim protocol over a network cannot be a compare-and-swap: a task handed to a
// serving rank is never taken back (claim_instead and cancel fail), and the transport's
// window keeps few tasks there; the rest wait at rank 0 where they can be cancelled.
// A serving rank reports how many tasks its worker claimed with its replies and when
// the worker ends, so a lost worker's tasks fail or run elsewhere as on one machine.
#include <sys/eventfd.h>
#include <sys/prctl.h>
#include <unistd.h>

#include <sched.h>
#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <limits>
#include <mutex>
#include <stdexcept>
#include <thread>
#include <unordered_map>

#include <mp/errors.hpp>
#include <mp/pickle.hpp>

#include "../pool_state.hpp"
#include "../pool_transport.hpp"
#include "../posix/fd.hpp"
#include "mpi_doorbell.hpp"
#include "mpi_session.hpp"

namespace mp::detail::mpi {
namespace {

using Clock = std::chrono::steady_clock;

long steady_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now().time_since_epoch())
      .count();
}
using mpi_wire::Kind;
using mpi_wire::Reader;
using mpi_wire::Writer;

posix::unique_fd make_eventfd() {
  posix::unique_fd fd(posix::above_stdio(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)));
  if (!fd) throw std::system_error(posix::last_error(), "mp::mpi: eventfd");
  return fd;
}

void signal_fd(int fd) {
  const std::uint64_t one = 1;
  (void)!::write(fd, &one, sizeof one);
}

// What the hub learnt about one remote worker.
struct LinkState;

// The link whose replies this thread is polling for in receive(), to take them itself.
thread_local const LinkState* collecting = nullptr;

struct LinkState {
  std::mutex mutex;
  std::condition_variable changed;
  bool answered = false;  // to start
  std::string start_error;
  int pid = 0;
  std::vector<WorkerReply> replies;
  std::atomic<bool> any_replies{false};
  std::atomic<std::uint64_t> in_flight{0};  // tasks sent without a reply (about)
  std::uint64_t claimed = 0;
  std::uint64_t replied = 0;  // tasks below this have replies
  Clock::time_point last_reply{};
  bool initialized = false;
  bool ended = false;
  std::optional<int> exitcode;
  bool armed = false;
  // A thread waiting on a result polls MPI for this link's replies itself (muted): the
  // hub thread need not look for them meanwhile.
  std::atomic<bool> waiter_polls{false};
  // The last reply was taken by a thread that polled for it (a caller waiting in get()).
  std::atomic<bool> last_reply_polled{false};
  posix::unique_fd reply_fd = make_eventfd();
  posix::unique_fd ended_fd = make_eventfd();

  // A serving rank's answer about this link, with `mutex` held; false if it is none.
  bool take(Reader& in, TaskTimer& timing) {
    switch (in.kind()) {
      case Kind::started:
        pid = static_cast<int>(in.u64());
        answered = true;
        break;
      case Kind::start_failed:
        start_error = std::string(in.str());
        start_error += ": ";
        start_error += in.str();
        answered = true;
        break;
      case Kind::replies: {
        claimed = in.u64();
        initialized = in.u64() != 0;
        const std::uint64_t count = in.u64();
        const std::uint64_t out = in_flight.load();
        in_flight.store(out - std::min(out, count));
        for (std::uint64_t i = 0; i < count && in.ok(); ++i) {
          WorkerReply reply;
          reply.kind = static_cast<WorkerReply::Kind>(in.u64());
          reply.seq = in.u64();
          reply.run_ns = in.u64();
          if (reply.kind == WorkerReply::Kind::result) {
            reply.result = PoolBytes(std::string(in.str()));
          } else {
            reply.error_type = in.str();
            reply.error_message = in.str();
          }
          if (reply.kind == WorkerReply::Kind::result) timing.record(reply.run_ns);
          replied = std::max(replied, reply.seq + 1);
          replies.push_back(std::move(reply));
        }
        last_reply = Clock::now();
        last_reply_polled.store(this == collecting, std::memory_order_relaxed);
        any_replies.store(true, std::memory_order_release);
        // The result thread sleeps on this link: wake it, unless this thread polled for
        // this link's replies in receive() and takes them now itself (a caller waiting
        // in get()): waking it then would only take a CPU from the ranks for nothing.
        if (armed && this != collecting) {
          armed = false;
          signal_fd(reply_fd.get());
        }
        break;
      }
      case Kind::ended:
        claimed = in.u64();
        initialized = in.u64() != 0;
        if (in.u64()) exitcode = static_cast<int>(in.u64());
        ended = true;
        signal_fd(ended_fd.get());
        break;
      default:
        return false;
    }
    return true;
  }
};

class Hub {
 public:
  Hub(mpi_wire::Comm& comm, std::vector<int> workers, const std::string& job)
      : comm_(comm),
        bells_(job, static_cast<int>(workers.size())),
        last_exchange_ns_(workers.size(), 0),
        workers_(std::move(workers)),
        live_(workers_.size(), 0) {
    thread_ = std::thread([this] { run(); });
  }
  ~Hub() { stop(); }

  int total_workers() const {
    int total = 0;
    for (std::size_t r = 1; r < workers_.size(); ++r) total += workers_[r];
    return total;
  }

  // Sends `message` to `rank` from this thread (after what others queued), without a
  // wake-up of the hub thread unless `unpolled`.
  void post(int rank, std::string message, bool unpolled = true) {
    bool rethink = false;
    {
      std::lock_guard lock(mutex_);
      outbox_.emplace_back(rank, std::move(message));
      // The hub thread in a long nap while nothing was out naps again as while tasks are
      // out, when nobody may poll for the answer: a reply that its sender stops polling
      // for must not wait for that nap's end.
      if (unpolled && idle_nap_ && nap_until_ns_ - steady_ns() > kPolledNs)
        rethink = rethink_ = true;
    }
    if (rethink) wake_.notify_one();
    std::lock_guard comm(comm_mutex_);
    (void)round();
  }

  // Nobody polls for a link's replies any more while tasks are out (a waiter stopped,
  // the result thread went to sleep): the hub thread, if in a nap chosen while a waiter
  // polled or nothing was out, chooses again; about to choose one, it chooses anew.
  void rethink() {
    bool wake = false;
    {
      std::lock_guard lock(mutex_);
      rethink_ = true;
      wake = nap_until_ns_ != 0 && unwatched_nap_;
    }
    if (wake) wake_.notify_one();
  }

  // Any thread: one round with MPI (what is queued goes out, what arrived is handled)
  // unless another thread is in one. A caller waiting for a short task's result polls
  // here itself, so the result needs no wake-up of the hub thread on either way.
  bool poll() {
    std::unique_lock comm(comm_mutex_, std::try_to_lock);
    if (!comm) return false;
    (void)round();
    return true;
  }

  bool rings(int rank) {
    std::lock_guard comm(comm_mutex_);
    return bells_.may_ring(rank);
  }

  // A link to a new worker on the rank with the most free worker places.
  std::pair<int, std::uint64_t> open_link(const std::shared_ptr<LinkState>& state) {
    std::lock_guard lock(mutex_);
    int best = 1;
    for (int r = 2; r < static_cast<int>(workers_.size()); ++r)
      if (workers_[r] - live_[r] > workers_[best] - live_[best]) best = r;
    ++live_[best];
    const std::uint64_t id = next_link_++;
    links_[id] = {best, state};
    return {best, id};
  }
  void close_link(std::uint64_t id) {
    std::lock_guard lock(mutex_);
    const auto it = links_.find(id);
    if (it == links_.end()) return;
    --live_[it->second.first];
    links_.erase(it);
  }

  void stop() {
    {
      std::lock_guard lock(mutex_);
      if (stopping_) return;
      stopping_ = true;
      for (int r = 1; r < static_cast<int>(workers_.size()); ++r)
        outbox_.emplace_back(r, std::move(Writer(Kind::shutdown, 0).bytes()));
    }
    wake_.notify_one();
    thread_.join();
  }

 private:
  // The hub thread: rounds with MPI, with a back-off between them while nothing moves in
  // its rounds. Only replies that no pool thread polled for wait for it.
  void run() {
    precise_naps();
    Backoff backoff;
    const int ranks = static_cast<int>(workers_.size()) - 1;
    for (;;) {
      bool active = false, stopping = false;
      {
        std::lock_guard comm(comm_mutex_);
        active = round();
        stopping = stopping_seen_;
        if (stopping && byes_ == ranks) break;
      }
      const auto [out, polled] = tasks_out();
      const long nap = out != 0 ? nap_while_tasks_out(out, polled) : backoff.after_round(active);
      if (nap == 0) continue;
      std::unique_lock lock(mutex_);
      idle_nap_ = out == 0;
      unwatched_nap_ = out == 0 || polled;
      nap_until_ns_ = steady_ns() + nap;
      wake_.wait_for(lock, std::chrono::nanoseconds(nap),
                     [&] { return !outbox_.empty() || stopping_ != stopping || rethink_; });
      nap_until_ns_ = 0;
    }
    std::lock_guard comm(comm_mutex_);
    comm_.flush();
  }

  // How many tasks the links have without a reply, and whether a waiting thread polls
  // for the replies of every link that has some. A rethink asked for from here on
  // shortens the nap chosen from these.
  std::pair<std::uint64_t, bool> tasks_out() {
    std::lock_guard lock(mutex_);
    rethink_ = false;
    std::uint64_t out = 0;
    bool polled = true;
    for (const auto& [id, link] : links_) {
      const std::uint64_t link_out = link.second->in_flight.load(std::memory_order_relaxed);
      out += link_out;
      if (link_out != 0 && !link.second->waiter_polls.load(std::memory_order_relaxed))
        polled = false;
    }
    return {out, polled};
  }

  // While a caller waiting in get() polls for every reply that is out (`polled`: it spins
  // up to kRemoteHelpSpin and says when it stops), this thread naps long, leaving the
  // CPUs to the ranks and workers that run the tasks. Otherwise, while short tasks are
  // out, the pool's threads poll for their replies first (the result thread spins after
  // progress), so this thread leaves them the CPU for kPolledNs; a
  // reply nobody polls for waits for it: it then naps an eighth of the time since
  // anything last moved, so a short task's reply is late by microseconds and a long
  // task's costs few wake-ups. Nobody else polls for the replies of long tasks: this
  // thread naps at least an eighth of their average run time, a quarter with several
  // out, so the workers, which need the CPUs, are not interrupted every few
  // microseconds. A lone task's reply is late by an eighth of its time at most; with
  // several out (a map), a reply is less urgent (a worker has its next task queued,
  // which lasts longer than the round trip of the reply and the tasks that answer it).
  long nap_while_tasks_out(std::uint64_t out, bool polled) const {
    if (polled && timing_.short_tasks()) return kMaxNapOut;
    const long idle = steady_ns() - last_moved_ns_.load();
    const double share = static_cast<double>(std::min<std::uint64_t>(out, 2)) / 8;
    const long floor =
        timing_.short_tasks() ? kPolledNs - idle : static_cast<long>(timing_.average_ns() * share);
    return std::clamp(std::max(floor, idle / 8), kMinNapOut, kMaxNapOut);
  }
  static constexpr long kPolledNs = 100'000;
  static constexpr long kMinNapOut = 10'000;
  static constexpr long kMaxNapOut = 1'000'000;

  // With comm_mutex_ held: sends what is queued, receives and handles what arrived; true
  // if anything moved.
  bool round() {
    {
      std::lock_guard lock(mutex_);
      outgoing_.swap(outbox_);
      stopping_seen_ = stopping_;
    }
    bool active = !outgoing_.empty();
    const long now = steady_ns();
    for (auto& [rank, bytes] : outgoing_) {
      comm_.post(rank, std::move(bytes));
      // A rank that neither sent nor was sent anything for a while has gone to longer
      // naps: ring it (after the message is on its way).
      long& last = last_exchange_ns_[static_cast<std::size_t>(rank)];
      if (now - last > kRingAfterNs) bells_.ring(rank);
      last = now;
    }
    outgoing_.clear();
    active = comm_.progress() || active;
    int source = 0;
    while (comm_.receive(source, message_)) {
      active = true;
      last_exchange_ns_[static_cast<std::size_t>(source)] = steady_ns();
      Reader in(message_);
      if (in.kind() == Kind::shutdown)
        ++byes_;
      else if (!stopping_seen_)
        handle(in);
    }
    if (active) last_moved_ns_.store(steady_ns());
    return active;
  }

  // A serving rank's answer about one link.
  void handle(Reader& in) {
    std::shared_ptr<LinkState> state;
    {
      std::lock_guard lock(mutex_);
      const auto it = links_.find(in.link());
      if (it == links_.end()) return;  // dropped: the answer is for nobody
      state = it->second.second;
    }
    std::unique_lock lock(state->mutex);
    if (!state->take(in, timing_)) return;
    lock.unlock();
    state->changed.notify_all();
  }

  // A serving rank naps longer once idle for Backoff::kShortNapsNs; rank 0 rings a rank
  // it has not exchanged a message with for half that.
  static constexpr long kRingAfterNs = Backoff::kShortNapsNs / 2;

  // Held by the thread in a round: the only one calling MPI (and using what follows).
  std::mutex comm_mutex_;
  mpi_wire::Comm& comm_;
  DoorbellRinger bells_;
  std::vector<long> last_exchange_ns_;  // steady clock, by rank: the last message either way
  std::vector<std::pair<int, std::string>> outgoing_;
  std::string message_;
  bool stopping_seen_ = false;
  int byes_ = 0;
  std::atomic<long> last_moved_ns_{0};  // steady clock: the last round that moved anything
  TaskTimer timing_;                    // of the tasks whose replies arrived

  std::vector<int> workers_;
  std::mutex mutex_;
  std::condition_variable wake_;
  std::vector<std::pair<int, std::string>> outbox_;
  std::unordered_map<std::uint64_t, std::pair<int, std::shared_ptr<LinkState>>> links_;
  std::vector<int> live_;
  std::uint64_t next_link_ = 1;
  bool stopping_ = false;
  long nap_until_ns_ = 0;  // steady clock: the end of the hub thread's nap (0: awake)
  bool rethink_ = false;   // the hub thread should choose its nap again
  bool idle_nap_ = false;  // the hub thread naps with no task out
  // ... or with no task out or a waiter polling for every reply out: a nap that nobody
  // waiting for a reply counts on.
  bool unwatched_nap_ = false;
  std::thread thread_;
};

Hub* the_hub = nullptr;

class MpiWorkerLink final : public WorkerLink {
 public:
  MpiWorkerLink(Hub& hub, const WorkerLaunch& launch)
      : hub_(hub), state_(std::make_shared<LinkState>()) {
    if (launch.initializer.machine_local)
      throw PicklingError(std::string("mp::mpi: the initializer's arguments hold ") +
                          launch.initializer.machine_local +
                          ", which cannot be pickled for a worker on another machine");
    std::tie(rank_, id_) = hub_.open_link(state_);
    Writer out(Kind::start, id_);
    out.u64(static_cast<std::uint64_t>(launch.number));
    out.str(pickle::dumps(launch.initializer));
    out.u64(launch.maxtasksperchild);
    hub_.post(rank_, std::move(out.bytes()));
    std::unique_lock lock(state_->mutex);
    state_->changed.wait(lock, [&] { return state_->answered; });
    if (!state_->start_error.empty()) {
      const std::string error = "mp::mpi: starting a worker on rank " + std::to_string(rank_) +
                                ": " + state_->start_error;
      lock.unlock();
      hub_.close_link(id_);
      throw std::runtime_error(error);
    }
    pid_ = state_->pid;
  }
  ~MpiWorkerLink() override {
    bool ended = false;
    {
      std::lock_guard lock(state_->mutex);
      ended = state_->ended;
    }
    if (!ended) hub_.post(rank_, std::move(Writer(Kind::forget, id_).bytes()));
    hub_.close_link(id_);
  }

  int pid() const override { return pid_; }

  std::size_t send(std::span<const OutgoingTask> tasks) override {
    if (tasks.empty()) return 0;
    Writer out(Kind::tasks, id_);
    out.u64(tasks.size());
    const auto now = Clock::now();
    for (const OutgoingTask& task : tasks) {
      out.u64(task.seq);
      out.u64(task.job);
      out.str(*task.trampoline);
      out.str(task.input->view());
      sent_at_.push_back(now);
    }
    sent_ += tasks.size();
    state_->in_flight += tasks.size();
    // When a waiting caller took the last reply, the next one is likely awaited the same
    // way (apply_async(...).get() in a loop): that caller polls, and tells the hub thread
    // when it stops polling without its reply (stop_polling), so waking the hub thread
    // now for each task would only take a CPU from the ranks.
    hub_.post(rank_, std::move(out.bytes()),
              !state_->last_reply_polled.load(std::memory_order_relaxed));
    return tasks.size();
  }
  bool send_stop() override {
    hub_.post(rank_, std::move(Writer(Kind::stop, id_).bytes()));
    return true;
  }
  void receive(std::vector<WorkerReply>& out) override {
    collecting = state_.get();
    poll_if_waiting();
    collecting = nullptr;
    std::lock_guard lock(state_->mutex);
    for (auto& reply : state_->replies) out.push_back(std::move(reply));
    state_->replies.clear();
    state_->any_replies.store(false, std::memory_order_relaxed);
  }
  bool has_replies() const override {
    poll_if_waiting();
    return state_->any_replies.load(std::memory_order_acquire);
  }

  std::uint64_t claimed() const override {
    std::lock_guard lock(state_->mutex);
    return std::max(state_->claimed, state_->replied);
  }
  bool claim_instead(std::uint64_t& next) override {
    next = claimed();
    return false;
  }
  bool cancel(std::uint64_t) override { return false; }
  bool has_started(std::uint64_t seq) const override {
    std::lock_guard lock(state_->mutex);
    return seq < sent_ && seq <= std::max(state_->claimed, state_->replied);
  }
  // Estimated: the oldest task without a reply, since it was sent or the task before it
  // finished, whichever is later (a worker runs its tasks in order).
  std::optional<RunningTask> running_task() const override {
    std::lock_guard lock(state_->mutex);
    const std::uint64_t seq = state_->replied;
    if (seq >= sent_) return std::nullopt;
    while (sent_ - sent_at_.size() < seq) sent_at_.pop_front();
    return RunningTask{seq, std::max(sent_at_.front(), state_->last_reply)};
  }
  bool initialized() const override {
    std::lock_guard lock(state_->mutex);
    return state_->initialized;
  }

  void kill() override { hub_.post(rank_, std::move(Writer(Kind::kill, id_).bytes())); }
  void terminate() override { hub_.post(rank_, std::move(Writer(Kind::terminate, id_).bytes())); }
  void join() override {
    std::unique_lock lock(state_->mutex);
    state_->changed.wait(lock, [&] { return state_->ended; });
  }
  std::optional<int> exitcode() override {
    std::lock_guard lock(state_->mutex);
    return state_->exitcode;
  }

  int ended_fd() const override { return state_->ended_fd.get(); }
  int reply_fd() const override { return state_->reply_fd.get(); }
  bool arm() override {
    // The result thread goes to sleep, leaving the replies to the hub thread (a waiter
    // that still polls mutes again).
    state_->waiter_polls.store(false, std::memory_order_relaxed);
    if (state_->in_flight.load(std::memory_order_relaxed) != 0) hub_.rethink();
    std::lock_guard lock(state_->mutex);
    if (!state_->replies.empty()) return false;
    state_->armed = true;
    return true;
  }
  void mute() override { state_->waiter_polls.store(true, std::memory_order_relaxed); }
  bool unmute() override {
    stop_polling();
    return true;
  }
  void disarm(bool readable) override {
    {
      std::lock_guard lock(state_->mutex);
      state_->armed = false;
    }
    if (readable) {
      std::uint64_t count;
      (void)!::read(state_->reply_fd.get(), &count, sizeof count);
    }
  }

 private:
  // No thread waiting on a result polls for this link's replies any more: with tasks
  // still out, the hub thread has to.
  void stop_polling() {
    if (state_->waiter_polls.exchange(false, std::memory_order_relaxed) &&
        state_->in_flight.load(std::memory_order_relaxed) != 0)
      hub_.rethink();
  }

  // The pool's threads look for replies often while they wait for one (the result
  // thread's spin, a caller's help): each look then also polls MPI.
  void poll_if_waiting() const {
    if (state_->in_flight.load(std::memory_order_relaxed) != 0 &&
        !state_->any_replies.load(std::memory_order_relaxed))
      (void)hub_.poll();
  }

  Hub& hub_;
  std::shared_ptr<LinkState> state_;
  int rank_ = 0;
  std::uint64_t id_ = 0;
  int pid_ = 0;
  std::uint64_t sent_ = 0;
  mutable std::deque<Clock::time_point> sent_at_;  // of tasks sent_ - size() .. sent_ - 1
};

class MpiTransport final : public WorkerTransport {
 public:
  explicit MpiTransport(Hub& hub)
      : WorkerTransport(std::numeric_limits<std::size_t>::max() / 2, kRemoteWindow), hub_(hub) {}
  std::unique_ptr<WorkerLink> start(const WorkerLaunch& launch) override {
    return std::make_unique<MpiWorkerLink>(hub_, launch);
  }
  bool remote() const override { return true; }

 private:
  Hub& hub_;
};

std::unique_ptr<WorkerTransport> make_mpi_transport(int& processes) {
  if (!the_hub) return nullptr;  // one rank: a local pool
  if (processes == 0) processes = the_hub->total_workers();
  return std::make_unique<MpiTransport>(*the_hub);
}

std::unique_ptr<WorkerTransport> make_local_transport(int&) { return nullptr; }

}  // namespace

void Backoff::active() {
  idle_since_ns_ = 0;
  nap_ = 0;
}

long Backoff::nap_ns() {
  const long now = steady_ns();
  if (idle_since_ns_ == 0) idle_since_ns_ = now;
  const long idle = now - idle_since_ns_;
  if (idle < kSpinNs) return 0;
  if (idle < kShortNapsNs) return kShortNap;
  nap_ = std::min(std::max(nap_ * 2, 2 * kShortNap), kMaxNap);
  return nap_;
}

long Backoff::after_round(bool was_active) {
  if (was_active) {
    active();
    return 0;
  }
  const long nap = nap_ns();
  if (nap == 0) sched_yield();
  return nap;
}

void precise_naps() { (void)::prctl(PR_SET_TIMERSLACK, 1'000UL, 0UL, 0UL, 0UL); }

void start_hub(mpi_wire::Comm& comm, std::vector<int> workers, const std::string& job) {
  if (workers.size() > 1) the_hub = new Hub(comm, std::move(workers), job);
  register_pool_transport("mpi", the_hub ? &make_mpi_transport : &make_local_transport);
}

bool hub_rings(int rank) { return the_hub && the_hub->rings(rank); }

void stop_hub() {
  register_pool_transport("mpi", nullptr);
  delete the_hub;
  the_hub = nullptr;
}

}  // namespace mp::detail::mpi
