// mp::mpi's serving ranks: each remote worker rank 0 asks for is a local worker process
// reached through the shared-memory transport, exactly as a local pool's. This loop
// forwards rank 0's tasks to it and its replies back, and reports when it ends with how
// many tasks it claimed. The MPI process runs no user code.
//
// Task numbers: rank 0 numbers a worker's tasks 0, 1, 2...; the local worker numbers
// those it is given the same way. A task whose input cannot go to the worker (the shared
// heap is full) gets its error reply here and no local number, so the two numberings
// are kept apart (Entry) and replies always leave in rank 0's order.
#include <poll.h>
#include <time.h>

#include <algorithm>
#include <cstdlib>
#include <deque>
#include <limits>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <mp/pickle.hpp>

#include "../exception_text.hpp"
#include "../pool_state.hpp"
#include "../pool_transport.hpp"
#include "mpi_doorbell.hpp"
#include "mpi_session.hpp"

namespace mp::detail::mpi {
namespace {

using mpi_wire::Kind;

// poll(2) for at most `ns` nanoseconds; the number of fds with events (0 on EINTR, as
// a timeout: the caller loops anyway).
int poll_for(std::vector<pollfd>& fds, long ns) {
  const timespec timeout{ns / 1'000'000'000, ns % 1'000'000'000};
  const int ready = ::ppoll(fds.data(), fds.size(), &timeout, nullptr);
  return ready < 0 ? 0 : ready;
}
using mpi_wire::Reader;
using mpi_wire::Writer;

struct Entry {
  std::uint64_t seq = 0;  // rank 0's
  std::uint64_t job = 0;
  std::string trampoline;
  PoolBytes input;
  std::optional<std::uint64_t> local_seq;  // once given to the worker
  std::optional<WorkerReply> reply;        // once it has one
};

// One worker process here, with the tasks rank 0 sent it.
struct Served {
  std::unique_ptr<WorkerLink> local;
  std::deque<Entry> entries;     // tasks without a reply sent to rank 0, in order
  std::size_t given = 0;         // entries given to the worker or answered here
  std::uint64_t next_local = 0;  // the worker's next task number
  std::uint64_t next_seq = 0;    // rank 0's next task number
  bool stop_wanted = false;
  bool stop_sent = false;

  // Queues the tasks of a `tasks` message.
  void add_tasks(Reader& in) {
    const std::uint64_t count = in.u64();
    for (std::uint64_t i = 0; i < count && in.ok(); ++i) {
      Entry& e = entries.emplace_back();
      e.seq = in.u64();
      e.job = in.u64();
      e.trampoline = in.str();
      e.input = PoolBytes(std::string(in.str()));
      next_seq = e.seq + 1;
    }
  }

  // Gives the worker the tasks it has room for (`outgoing` is scratch space); a task
  // whose input cannot go to the shared heap is answered here with its error. True if
  // any task was given or answered.
  bool give(WorkerTransport& transport, std::vector<OutgoingTask>& outgoing) {
    if (given == entries.size()) return false;
    const std::size_t answered_before = given;
    outgoing.clear();
    std::vector<std::size_t> indices;
    for (std::size_t i = given; i < entries.size(); ++i) {
      Entry& e = entries[i];
      if (transport.input_in_heap(e.trampoline.size(), e.input.size())) {
        try {
          e.input.move_to_heap();
        } catch (...) {
          if (!outgoing.empty()) break;  // keep the order: give those first
          const ExceptionText error = describe_current_exception();
          e.reply.emplace();
          e.reply->kind = WorkerReply::Kind::error;
          e.reply->seq = e.seq;
          e.reply->error_type = error.type;
          e.reply->error_message = error.message;
          ++given;
          continue;
        }
      }
      outgoing.push_back(
          OutgoingTask{next_local + outgoing.size(), e.job, &e.trampoline, &e.input});
      indices.push_back(i);
    }
    const std::size_t taken = outgoing.empty() ? 0 : local->send(outgoing);
    for (std::size_t k = 0; k < taken; ++k) entries[indices[k]].local_seq = next_local++;
    given += taken;
    return given != answered_before;
  }

  // Files the worker's reply under its task, renumbered as rank 0's.
  void take(WorkerReply& reply) {
    for (Entry& e : entries)
      if (e.local_seq == reply.seq) {
        reply.seq = e.seq;
        e.reply = std::move(reply);
        e.input = {};
        return;
      }
  }

  // How many tasks the worker was given and has not answered.
  std::size_t running() const {
    return static_cast<std::size_t>(std::count_if(
        entries.begin(), entries.end(), [](const Entry& e) { return e.local_seq && !e.reply; }));
  }

  // rank 0's number of the first task the worker has not claimed.
  std::uint64_t claimed() const {
    const std::uint64_t mark = local->claimed();
    for (const Entry& e : entries)
      if (!e.reply && !(e.local_seq && *e.local_seq < mark)) return e.seq;
    return next_seq;
  }
};

class Server {
 public:
  Server(mpi_wire::Comm& comm, DoorbellListener bell)
      : comm_(comm), transport_(make_shared_memory_transport()), bell_(std::move(bell)) {}

  void run() {
    precise_naps();
    Backoff backoff;
    std::string message;
    auto last_liveness = std::chrono::steady_clock::now();
    for (;;) {
      bool active = comm_.progress();
      int source = 0;
      while (comm_.receive(source, message)) {
        active = true;
        Reader in(message);
        if (in.kind() == Kind::shutdown) {
          served_.clear();  // kills and reaps the workers
          comm_.post(0, std::move(Writer(Kind::shutdown, 0).bytes()));
          comm_.flush();
          return;
        }
        handle(in);
      }
      for (auto& [id, s] : served_) active = pump(id, s) || active;
      const auto now = std::chrono::steady_clock::now();
      if (now - last_liveness > std::chrono::milliseconds(2)) {
        last_liveness = now;
        check_ended();
      }
      if (active) {
        backoff.active();
        continue;
      }
      // While every worker here runs a task that is not short, nothing rank 0 may send
      // is urgent and the workers need the CPU, which polling (yielding, then short
      // naps) would take from them the whole time. With the next task queued everywhere,
      // sleep until a worker rings (it does when it runs short of tasks, or ends),
      // polling MPI every kBusyNapNs. A worker down to its running task has rung: rank 0
      // answers with more tasks within a round trip, well before that task ends; nap a
      // sixteenth of a task's time at a time. A worker without a task needs rank 0's at
      // once: poll closely, as when idle.
      if (!timing_.short_tasks() && min_given() >= 1) {
        const long nap = min_given() >= 2 ? kBusyNapNs
                                          : std::clamp(static_cast<long>(timing_.average_ns() / 16),
                                                       kShortBusyNapNs, kBusyNapNs);
        if (sleep(nap)) backoff.active();
        continue;
      }
      // Rung: what rank 0 sent may take a moment to show; poll closely again.
      if (const long nap = backoff.after_round(false))
        if (sleep(nap)) backoff.active();
    }
  }

 private:
  void handle(Reader& in) {
    const std::uint64_t id = in.link();
    if (in.kind() == Kind::start) {
      start(in, id);
      return;
    }
    const auto it = served_.find(id);
    if (it == served_.end()) return;  // ended already
    Served& s = it->second;
    switch (in.kind()) {
      case Kind::tasks:
        s.add_tasks(in);
        break;
      case Kind::stop:
        s.stop_wanted = true;
        break;
      case Kind::kill:
        s.local->kill();
        break;
      case Kind::terminate:
        s.local->terminate();
        break;
      case Kind::forget:
        served_.erase(it);  // kills and reaps the worker
        break;
      default:
        break;
    }
  }

  void start(Reader& in, std::uint64_t id) {
    try {
      WorkerLaunch launch;
      launch.number = static_cast<int>(in.u64());
      launch.start_method = kServingStartMethod;
      launch.initializer = pickle::loads<InitCall>(in.str());
      launch.maxtasksperchild = in.u64();
      Served s;
      s.local = transport_->start(launch);
      Writer out(Kind::started, id);
      out.u64(static_cast<std::uint64_t>(s.local->pid()));
      comm_.post(0, std::move(out.bytes()));
      served_.emplace(id, std::move(s));
    } catch (...) {
      const ExceptionText error = describe_current_exception();
      Writer out(Kind::start_failed, id);
      out.str(error.type);
      out.str(error.message);
      comm_.post(0, std::move(out.bytes()));
    }
  }

  // Gives the worker its tasks and sends its replies on; true if anything moved.
  bool pump(std::uint64_t id, Served& s) {
    bool active = s.give(*transport_, outgoing_);
    replies_.clear();
    s.local->receive(replies_);
    active = active || !replies_.empty();
    for (WorkerReply& reply : replies_) {
      if (reply.kind == WorkerReply::Kind::init_failed) {
        init_failures_.push_back(std::move(reply));
        continue;
      }
      if (reply.kind == WorkerReply::Kind::result) timing_.record(reply.run_ns);
      s.take(reply);
    }
    send_replies(id, s);
    if (s.stop_wanted && !s.stop_sent && s.given == s.entries.size() && s.local->send_stop())
      s.stop_sent = true;
    return active;
  }

  // The fewest tasks a worker here was given and has not answered (0 with no worker).
  std::size_t min_given() const {
    if (served_.empty()) return 0;
    std::size_t fewest = std::numeric_limits<std::size_t>::max();
    for (const auto& [id, s] : served_) fewest = std::min(fewest, s.running());
    return fewest;
  }

  void send_replies(std::uint64_t id, Served& s, bool always = false) {
    std::size_t ready = 0;
    while (ready < s.entries.size() && s.entries[ready].reply) ++ready;
    if (ready == 0 && init_failures_.empty() && !always) return;
    Writer out(Kind::replies, id);
    out.u64(s.claimed());
    out.u64(s.local->initialized() ? 1 : 0);
    out.u64(ready + init_failures_.size());
    const auto put = [&](const WorkerReply& r) {
      out.u64(static_cast<std::uint64_t>(r.kind));
      out.u64(r.seq);
      out.u64(r.run_ns);
      if (r.kind == WorkerReply::Kind::result) {
        out.str(r.result.view());
      } else {
        out.str(r.error_type);
        out.str(r.error_message);
      }
    };
    for (const WorkerReply& r : init_failures_) put(r);
    init_failures_.clear();
    for (std::size_t i = 0; i < ready; ++i) put(*s.entries[i].reply);
    s.entries.erase(s.entries.begin(), s.entries.begin() + static_cast<std::ptrdiff_t>(ready));
    s.given -= std::min(s.given, ready);
    comm_.post(0, std::move(out.bytes()));
  }

  void check_ended() {
    std::vector<pollfd> fds;
    std::vector<std::uint64_t> ids;
    for (auto& [id, s] : served_) {
      fds.push_back({s.local->ended_fd(), POLLIN, 0});
      ids.push_back(id);
    }
    if (fds.empty() || poll_for(fds, 0) == 0) return;
    for (std::size_t i = 0; i < fds.size(); ++i)
      if (fds[i].revents) ended(ids[i]);
  }

  void ended(std::uint64_t id) {
    Served& s = served_.at(id);
    pump(id, s);  // its last replies first
    Writer out(Kind::ended, id);
    out.u64(s.claimed());
    out.u64(s.local->initialized() ? 1 : 0);
    const std::optional<int> exitcode = s.local->exitcode();
    out.u64(exitcode ? 1 : 0);
    out.u64(static_cast<std::uint64_t>(exitcode.value_or(0)));
    comm_.post(0, std::move(out.bytes()));
    served_.erase(id);
  }

  // Waits for a worker's reply or end, or the doorbell, at most `nap_ns`. True if the
  // doorbell rang: rank 0 sent something.
  bool sleep(long nap_ns) {
    std::vector<pollfd> fds;
    fds.push_back({bell_.fd(), POLLIN, 0});
    bool ready = false;
    for (auto& [id, s] : served_) {
      if (!s.local->arm()) ready = true;
      fds.push_back({s.local->reply_fd(), POLLIN, 0});
      fds.push_back({s.local->ended_fd(), POLLIN, 0});
    }
    if (!ready) (void)poll_for(fds, nap_ns);
    std::size_t i = 1;
    bool any_ended = false;
    for (auto& [id, s] : served_) {
      s.local->disarm(fds[i].fd >= 0 && fds[i].revents);
      any_ended = any_ended || fds[i + 1].revents;
      i += 2;
    }
    if (any_ended) check_ended();
    const bool rung = fds[0].fd >= 0 && fds[0].revents;
    if (rung) bell_.drain();
    return rung;
  }

  // The longest sleep while every worker is busy: how late a message from rank 0 may
  // be seen then (tasks for a busy worker, a kill, a new worker).
  static constexpr long kBusyNapNs = 1'000'000;
  static constexpr long kShortBusyNapNs = 20'000;

  mpi_wire::Comm& comm_;
  std::unique_ptr<WorkerTransport> transport_;
  TaskTimer timing_;  // of the tasks the workers here ran
  DoorbellListener bell_;
  std::map<std::uint64_t, Served> served_;
  std::vector<WorkerReply> replies_;
  std::vector<WorkerReply> init_failures_;
  std::vector<OutgoingTask> outgoing_;
};

}  // namespace

void serve(mpi_wire::Comm& comm, DoorbellListener bell) { Server(comm, std::move(bell)).run(); }

}  // namespace mp::detail::mpi
