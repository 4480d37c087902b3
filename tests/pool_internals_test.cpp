// Tests for mp::Pool's internals behind the public header: the frames of the
// shared-memory ring (lib/src/pool_ring.hpp, pool_channel.hpp), and the transport seam
// (lib/src/pool_transport.hpp): the untyped pool runs tasks through a second transport,
// here workers that are threads of this process, without knowing it.
#include <gtest/gtest.h>

#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <mp/connection.hpp>
#include <mp/detail/fd_passing.hpp>
#include <mp/futures.hpp>
#include <mp/pool.hpp>

#include "help_wait.hpp"
#include "pool_channel.hpp"
#include "pool_ring.hpp"
#include "pool_transport.hpp"

using namespace std::chrono_literals;

namespace {

using namespace mp::detail;
using namespace mp::detail::pool_wire;

// A ring over plain memory.
struct PlainRing {
  RingControl control;
  std::vector<char> data = std::vector<char>(kRingSize);
  Ring producer{control, data.data()};
  Ring consumer{control, data.data()};
};

// ChunkSubmitter and decode_chunks build and read the chunks of numbers from this layout
// instead of pickling them item by item: the layout must hold.
int negate(int x) { return -x; }

template <class F, class T>
void expect_chunk_is_empty_chunk_then_items(F fn, std::vector<T> items) {
  std::string expected;
  mp::pickle::dump(std::tuple<F, std::vector<T>>(fn, items), expected);
  std::string built;
  mp::pickle::dump(std::tuple<F, std::vector<T>>(fn, {}), built);
  const std::uint64_t count = items.size();
  ASSERT_GE(built.size(), sizeof count);
  std::memcpy(built.data() + built.size() - sizeof count, &count, sizeof count);
  built.append(reinterpret_cast<const char*>(items.data()), items.size() * sizeof(T));
  EXPECT_EQ(built, expected);

  std::string results;
  mp::pickle::dump(items, results);
  ASSERT_EQ(results.size(), kPickleHeaderSize + sizeof count + items.size() * sizeof(T));
  EXPECT_EQ(results.substr(kPickleHeaderSize + sizeof count),
            std::string(reinterpret_cast<const char*>(items.data()), items.size() * sizeof(T)));
}

TEST(PoolChunks, AChunkOfNumbersIsTheEmptyChunkWithItsSizeThenTheItems) {
  expect_chunk_is_empty_chunk_then_items(&negate, std::vector<int>{1, -2, 3});
  expect_chunk_is_empty_chunk_then_items([](double x) { return x; }, std::vector<double>{0.5, 2});
  expect_chunk_is_empty_chunk_then_items(&negate, std::vector<std::uint8_t>{7});
}

// A chunk that is not what the shorter way expects is decoded one by one, which says
// what is wrong with it.
TEST(PoolChunks, DecodingChunksOfNumbersRefusesACorruptChunk) {
  std::vector<PoolBytes> chunks;
  chunks.emplace_back(mp::pickle::dumps(std::vector<std::int64_t>{1, 2}));
  chunks.emplace_back(mp::pickle::dumps(std::vector<std::int64_t>{3}));
  EXPECT_EQ(decode_chunks<std::int64_t>(chunks), (std::vector<std::int64_t>{1, 2, 3}));

  const auto corrupt = [](std::string bytes) {
    std::vector<PoolBytes> out;
    out.emplace_back(mp::pickle::dumps(std::vector<std::int64_t>{1, 2}));
    out.emplace_back(std::move(bytes));
    return out;
  };
  std::string longer = mp::pickle::dumps(std::vector<std::int64_t>{3});
  longer += std::string(8, '\0');  // one more element than its size says
  auto chunks_longer = corrupt(longer);
  EXPECT_THROW(decode_chunks<std::int64_t>(chunks_longer), mp::UnpicklingError);
  auto chunks_cut = corrupt(mp::pickle::dumps(std::vector<std::int64_t>{3}).substr(0, 12));
  EXPECT_THROW(decode_chunks<std::int64_t>(chunks_cut), mp::UnpicklingError);
  auto chunks_other = corrupt(mp::pickle::dumps(std::vector<double>{3}));
  EXPECT_THROW(decode_chunks<std::int64_t>(chunks_other), mp::UnpicklingError);
}

// A chunk of numbers mapped by a function returning numbers (or void) runs in place
// (pool_map_numbers): its reply must be the bytes that unpickling the chunk and pickling
// the results would give (pool_map_items), and it must refuse what unpickling refuses.
std::int64_t twice(std::int64_t x) { return 2 * x; }
double halve_to_double(int x) { return x / 2.0; }
void ignore_number(float) {}

template <class F, class Item>
void expect_numbers_chunk_runs_as_unpickled(F fn, const std::vector<Item>& items) {
  const std::string input = mp::pickle::dumps(std::tuple<F, std::vector<Item>>(fn, items));
  std::string generic;
  pool_map_items<F, Item, false>(input, generic);
  std::string fast;
  pool_map_numbers<F, Item>(input, fast);
  EXPECT_EQ(fast, generic);
  // Items that do not lie aligned in the chunk (a function's pickle has any length).
  const std::string shifted = "x" + input;
  std::string unaligned;
  pool_map_numbers<F, Item>(std::string_view(shifted).substr(1), unaligned);
  EXPECT_EQ(unaligned, generic);
}

TEST(PoolChunks, ChunksOfNumbersRunInPlaceToTheSameBytes) {
  std::vector<std::int64_t> many(5000);
  for (std::size_t i = 0; i < many.size(); ++i) many[i] = static_cast<std::int64_t>(i) - 7;
  expect_numbers_chunk_runs_as_unpickled(&twice, many);
  expect_numbers_chunk_runs_as_unpickled(&twice, std::vector<std::int64_t>{});
  expect_numbers_chunk_runs_as_unpickled(&halve_to_double, std::vector<int>{1, -3, 8});
  expect_numbers_chunk_runs_as_unpickled(&ignore_number, std::vector<float>{1.5f, 2});
  expect_numbers_chunk_runs_as_unpickled([](std::uint8_t x) { return x + 1; },
                                         std::vector<std::uint8_t>{0, 255});
}

TEST(PoolChunks, ChunksOfNumbersRefuseWhatUnpicklingRefuses) {
  using F = std::int64_t (*)(std::int64_t);
  const std::string input = mp::pickle::dumps(
      std::tuple<F, std::vector<std::int64_t>>(&twice, std::vector<std::int64_t>{1, 2, 3}));
  std::string too_many = input;  // a size claiming more items than there are bytes
  std::uint64_t count = 0;
  std::memcpy(&count, too_many.data() + too_many.size() - 3 * 8 - 8, 8);
  ASSERT_EQ(count, 3u);
  count = 1000;
  std::memcpy(too_many.data() + too_many.size() - 3 * 8 - 8, &count, 8);
  const std::string other_type =
      mp::pickle::dumps(std::tuple<F, std::vector<double>>(nullptr, std::vector<double>{1}));
  for (const std::string& bad : {input.substr(0, input.size() - 1), input + "!", input.substr(0, 5),
                                 other_type, too_many, std::string()}) {
    std::string generic, fast;
    EXPECT_THROW((pool_map_items<F, std::int64_t, false>(bad, generic)), mp::UnpicklingError);
    EXPECT_THROW((pool_map_numbers<F, std::int64_t>(bad, fast)), mp::UnpicklingError);
    EXPECT_TRUE(fast.empty());
  }
}

TEST(PoolRing, FramesKeepTheirKindSequenceAndNamedWord) {
  PlainRing ring;
  ASSERT_TRUE(ring.producer.try_write(FrameHeader::task(FrameKind::task, 7, 42), {"ab", "cd"}));
  ASSERT_TRUE(ring.producer.try_write(FrameHeader::result(FrameKind::result, 8, 1234), {"xyz"}));
  FrameHeader header;
  std::string_view payload;
  ASSERT_TRUE(ring.consumer.peek(header, payload));
  EXPECT_EQ(header.kind, FrameKind::task);
  EXPECT_EQ(header.seq, 7u);
  EXPECT_EQ(header.job(), 42u);
  EXPECT_EQ(payload, "abcd");
  ring.consumer.consume();
  ASSERT_TRUE(ring.consumer.peek(header, payload));
  EXPECT_EQ(header.kind, FrameKind::result);
  EXPECT_EQ(header.run_ns(), 1234u);
  EXPECT_EQ(payload, "xyz");
  ring.consumer.consume();
  EXPECT_FALSE(ring.consumer.peek(header, payload));
  EXPECT_TRUE(ring.consumer.empty());
}

TEST(PoolRing, FramesWrapAroundTheEndWithoutSplitting) {
  PlainRing ring;
  const std::string big(kRingSize / 3, 'q');
  std::uint64_t written = 0, read = 0;
  for (int round = 0; round < 20; ++round) {
    while (ring.producer.try_write(FrameHeader::other(FrameKind::error, written),
                                   {std::string_view(big).substr(0, big.size() - written % 13)}))
      ++written;
    FrameHeader header;
    std::string_view payload;
    ASSERT_TRUE(ring.consumer.peek(header, payload));
    EXPECT_EQ(header.seq, read);
    EXPECT_EQ(payload.size(), big.size() - read % 13);
    EXPECT_EQ(payload.find_first_not_of('q'), std::string_view::npos);
    ring.consumer.consume();
    ++read;
  }
  EXPECT_GT(written, 20u);
}

TEST(PoolRing, AFullRingRefusesAndAnEmptyOneSaysSo) {
  PlainRing ring;
  const std::string half(kRingSize / 2, 'h');
  EXPECT_TRUE(ring.producer.try_write(FrameHeader::other(FrameKind::error, 0), {half}));
  EXPECT_FALSE(ring.producer.try_write(FrameHeader::other(FrameKind::error, 1), {half}));
  FrameHeader header;
  std::string_view payload;
  ASSERT_TRUE(ring.consumer.peek(header, payload));
  ring.consumer.consume();
  EXPECT_TRUE(ring.producer.try_write(FrameHeader::other(FrameKind::error, 1), {half}));
}

TEST(PoolRing, QueuedOfCountsOneJobsTasksFromTheFront) {
  PlainRing ring;
  for (std::uint64_t seq = 0; seq < 5; ++seq)
    ASSERT_TRUE(
        ring.producer.try_write(FrameHeader::task(FrameKind::task, seq, seq < 3 ? 9 : 4), {"t"}));
  EXPECT_EQ(ring.consumer.queued_of(9, 10, 0), 3u);
  EXPECT_EQ(ring.consumer.queued_of(9, 2, 0), 2u);
  EXPECT_EQ(ring.consumer.queued_of(4, 10, 0), 0u);  // another job's task comes first
  EXPECT_EQ(ring.consumer.queued_of(4, 10, 3), 2u);  // tasks below seq 3 were taken back
}

// A worker waiting for tasks learns from its spins: when the parent is not about to send
// (a busy machine, a remote feeder, a pause between jobs), spinning only takes the CPU
// from it.
TEST(PoolRing, AWaitWhoseSpinFoundNothingMakesTheNextWaitsSleepAtOnce) {
  PlainRing ring;
  SpinHistory history = 0;
  std::thread late([&] {
    std::this_thread::sleep_for(20ms);  // far beyond the spin's budget
    ASSERT_TRUE(ring.producer.try_write(FrameHeader::other(FrameKind::result, 1), {"a"}));
    if (ring.producer.consumer_wants_wake()) ring.producer.futex_wake_consumer();
  });
  ring.consumer.wait_data(history);
  late.join();
  EXPECT_NE(history, 0) << "the spin found nothing";
  FrameHeader header;
  std::string_view payload;
  ASSERT_TRUE(ring.consumer.peek(header, payload));
  ring.consumer.consume();
  // The rest ends; spins that find their frame (here at once) forget the fruitless one.
  for (int i = 0; i < 10 * kMaxWaitsWithoutSpin && history != 0; ++i) {
    ASSERT_TRUE(ring.producer.try_write(FrameHeader::other(FrameKind::result, 2), {"b"}));
    ring.consumer.wait_data(history);
    ASSERT_TRUE(ring.consumer.peek(header, payload));
    ring.consumer.consume();
  }
  EXPECT_EQ(history, 0);
}

TEST(PoolRing, AFrameClaimingMoreBytesThanTheRingHoldsIsReadAsEmpty) {
  PlainRing ring;
  ASSERT_TRUE(ring.producer.try_write(FrameHeader::other(FrameKind::result, 3), {"abc"}));
  FrameHeader forged = FrameHeader::other(FrameKind::result, 3);
  forged.size = 0xffffffffu;
  std::memcpy(ring.data.data(), &forged, sizeof forged);
  FrameHeader header;
  std::string_view payload;
  ASSERT_TRUE(ring.consumer.peek(header, payload));
  EXPECT_EQ(payload.size(), 0u);
}

TEST(PoolChannel, TaskPayloadsShorterThanTheyClaimAreRefused) {
  EXPECT_FALSE(split_task_payload("ab").has_value());
  const std::uint32_t claims = 100;
  std::string payload(reinterpret_cast<const char*>(&claims), 4);
  payload += "short";
  EXPECT_FALSE(split_task_payload(payload).has_value());
  const std::uint32_t three = 3;
  payload = std::string(reinterpret_cast<const char*>(&three), 4) + "abcinput";
  const auto task = split_task_payload(payload);
  ASSERT_TRUE(task.has_value());
  EXPECT_EQ(task->trampoline, "abc");
  EXPECT_EQ(task->input, "input");
}

TEST(PoolChannel, ErrorsRoundTripAndShortOnesDecodeSafely) {
  const auto decoded = decode_error(encode_error({"std::runtime_error", "boom", " 0# f\n", 3}));
  EXPECT_EQ(decoded.type, "std::runtime_error");
  EXPECT_EQ(decoded.message, "boom");
  EXPECT_EQ(decoded.traceback, " 0# f\n");
  EXPECT_EQ(decoded.item, 3u);
  EXPECT_EQ(decode_error("xy").type, "unknown exception");
  const std::uint32_t claims = 1000;
  const auto cut = decode_error(std::string(reinterpret_cast<const char*>(&claims), 4) + "T");
  EXPECT_EQ(cut.type, "T");
  EXPECT_EQ(cut.message, "");
}

namespace {
void initializer_probe(std::string_view) {}
}  // namespace

// A spawned or forkserver worker reads its arguments from these bytes (not a pickle):
// they must come back whole, and any cut, extension or bad fd index must be refused.
TEST(PoolWorkerArgs, RoundTripAndRefuseDamagedBytes) {
  int fds[2];
  ASSERT_EQ(::pipe2(fds, O_CLOEXEC), 0);
  WorkerArgs args{shared_ref{0x1234, 4096}, mp::Connection(fds[1], false, true),
                  InitCall(&initializer_probe, "bound call"), 7};
  std::string bytes;
  {
    mp::detail::FdCollector collector;
    bytes = encode_worker_args(args);
    ASSERT_EQ(collector.collected().size(), 1u);
    EXPECT_EQ(collector.collected()[0], fds[1]);
  }
  mp::detail::set_inherited_fds({::dup(fds[1])});
  const WorkerArgs back = decode_worker_args(bytes);
  EXPECT_EQ(back.channel.arena, 0x1234u);
  EXPECT_EQ(back.channel.offset, 4096u);
  EXPECT_EQ(back.maxtasks, 7u);
  EXPECT_EQ(back.init.run, &initializer_probe);
  EXPECT_EQ(back.init.bound, "bound call");
  EXPECT_FALSE(back.doorbell.readable());
  EXPECT_TRUE(back.doorbell.writable());
  ::close(fds[0]);

  WorkerArgs no_init{shared_ref{1, 2}, mp::Connection(::dup(fds[1]), false, true), InitCall(), 0};
  std::string plain;
  {
    mp::detail::FdCollector collector;
    plain = encode_worker_args(no_init);
  }
  mp::detail::set_inherited_fds({::dup(fds[1])});
  EXPECT_EQ(decode_worker_args(plain).init.run, nullptr);

  for (std::size_t cut = 0; cut < bytes.size(); ++cut) {
    mp::detail::set_inherited_fds({::dup(fds[1])});
    EXPECT_THROW(decode_worker_args(std::string_view(bytes).substr(0, cut)), mp::UnpicklingError)
        << "cut at " << cut;
  }
  mp::detail::set_inherited_fds({::dup(fds[1])});
  EXPECT_THROW(decode_worker_args(bytes + "x"), mp::UnpicklingError);
  mp::detail::set_inherited_fds({});
  EXPECT_THROW(decode_worker_args(bytes), mp::UnpicklingError);  // no fd 0 was passed
  mp::detail::close_inherited_fds();
}

// ---------------------------------------------------------------- a second transport

// Workers that are threads of this process: tasks and replies go through queues under a
// mutex, and the descriptors the result loop polls are pipes. Each counts the calls the
// pool makes through the seam.
struct SeamCounters {
  std::atomic<int> started{0};
  std::atomic<int> send_calls{0};
  std::atomic<int> tasks_sent{0};
  std::atomic<int> receive_calls{0};
};

class ThreadLink final : public WorkerLink {
 public:
  explicit ThreadLink(SeamCounters& counters) : counters_(counters) {
    if (::pipe2(ended_, O_CLOEXEC | O_NONBLOCK) || ::pipe2(bell_, O_CLOEXEC | O_NONBLOCK))
      throw std::runtime_error("pipe2");
    thread_ = std::thread([this] { loop(); });
  }
  ~ThreadLink() override {
    kill();
    join();
    for (int fd : {ended_[0], ended_[1], bell_[0], bell_[1]}) ::close(fd);
  }

  int pid() const override { return ::getpid(); }
  std::size_t send(std::span<const OutgoingTask> tasks) override {
    ++counters_.send_calls;
    counters_.tasks_sent += static_cast<int>(tasks.size());
    std::lock_guard lock(mutex_);
    for (const auto& task : tasks) {
      queue_.push_back({task.seq, *task.trampoline, std::string(task.input->view())});
      states_[task.seq] = TaskState::queued;
    }
    changed_.notify_all();
    return tasks.size();
  }
  bool send_stop() override {
    std::lock_guard lock(mutex_);
    stop_ = true;
    changed_.notify_all();
    return true;
  }
  void receive(std::vector<WorkerReply>& out) override {
    ++counters_.receive_calls;
    std::lock_guard lock(mutex_);
    for (auto& reply : replies_) out.push_back(std::move(reply));
    replies_.clear();
  }
  bool has_replies() const override {
    std::lock_guard lock(mutex_);
    return !replies_.empty();
  }
  std::uint64_t claimed() const override {
    std::lock_guard lock(mutex_);
    return claimed_;
  }
  bool claim_instead(std::uint64_t& next) override {
    std::lock_guard lock(mutex_);
    if (claimed_ != next) {
      next = claimed_;
      return false;
    }
    ++claimed_;
    return true;
  }
  bool cancel(std::uint64_t seq) override {
    std::lock_guard lock(mutex_);
    if (states_[seq] != TaskState::queued) return false;
    states_[seq] = TaskState::cancelled;
    return true;
  }
  bool has_started(std::uint64_t seq) const override {
    std::lock_guard lock(mutex_);
    auto it = states_.find(seq);
    return it != states_.end() && it->second == TaskState::running;
  }
  std::optional<RunningTask> running_task() const override { return std::nullopt; }
  bool initialized() const override { return true; }
  void kill() override {
    std::lock_guard lock(mutex_);
    killed_ = true;
    changed_.notify_all();
  }
  void terminate() override { kill(); }
  void join() override {
    if (thread_.joinable()) thread_.join();
  }
  std::optional<int> exitcode() override {
    std::lock_guard lock(mutex_);
    if (!ended_flag_) return std::nullopt;
    return killed_ ? -9 : 0;
  }
  int ended_fd() const override { return ended_[0]; }
  int reply_fd() const override { return bell_[0]; }
  bool arm() override {
    std::lock_guard lock(mutex_);
    if (!replies_.empty()) return false;
    armed_ = true;
    return true;
  }
  void disarm(bool readable) override {
    std::lock_guard lock(mutex_);
    armed_ = false;
    char buffer[64];
    if (readable)
      while (::read(bell_[0], buffer, sizeof buffer) > 0) {
      }
  }

 private:
  struct Queued {
    std::uint64_t seq;
    std::string trampoline;
    std::string input;
  };

  // The worker loop of this transport, with the same claim protocol as pool_worker.cpp.
  void loop() {
    std::unique_lock lock(mutex_);
    for (;;) {
      changed_.wait(lock, [&] { return killed_ || stop_ || !queue_.empty(); });
      if (killed_ || queue_.empty()) break;
      Queued task = std::move(queue_.front());
      queue_.pop_front();
      if (claimed_ != task.seq) continue;  // taken back for another worker
      ++claimed_;
      if (states_[task.seq] != TaskState::queued) continue;  // cancelled
      states_[task.seq] = TaskState::running;
      lock.unlock();
      WorkerReply reply;
      reply.seq = task.seq;
      std::string result;
      try {
        mp::pickle::loads<PoolTrampoline>(task.trampoline)(task.input, result);
        reply.result = std::move(result);
      } catch (const std::exception& e) {
        reply.kind = WorkerReply::Kind::error;
        reply.error_type = "std::exception";
        reply.error_message = e.what();
      }
      lock.lock();
      states_.erase(task.seq);
      replies_.push_back(std::move(reply));
      if (armed_) (void)!::write(bell_[1], "x", 1);
    }
    ended_flag_ = true;
    (void)!::write(ended_[1], "x", 1);
  }

  SeamCounters& counters_;
  mutable std::mutex mutex_;
  std::condition_variable changed_;
  std::deque<Queued> queue_;
  std::map<std::uint64_t, TaskState> states_;
  std::vector<WorkerReply> replies_;
  std::uint64_t claimed_ = 0;
  bool stop_ = false, killed_ = false, armed_ = false, ended_flag_ = false;
  int ended_[2] = {-1, -1};
  int bell_[2] = {-1, -1};
  std::thread thread_;
};

class ThreadTransport final : public WorkerTransport {
 public:
  // remote: the pool treats these workers as if they were on another machine.
  explicit ThreadTransport(SeamCounters& counters, bool remote = false)
      : WorkerTransport(SIZE_MAX, 1 << 20), counters_(counters), remote_(remote) {}
  std::unique_ptr<WorkerLink> start(const WorkerLaunch&) override {
    ++counters_.started;
    return std::make_unique<ThreadLink>(counters_);
  }
  bool remote() const override { return remote_; }

 private:
  SeamCounters& counters_;
  bool remote_;
};

PoolCoreOptions with_processes(int processes) {
  PoolCoreOptions options;
  options.processes = processes;
  return options;
}

int triple(int x) { return 3 * x; }
int refuse_seven(int x) {
  if (x == 7) throw std::invalid_argument("seven");
  return x;
}

// Submits fn(x) for x in [0, count) as one job through `core`, and waits.
std::shared_ptr<ResultState> run_job(PoolCore& core, int (*fn)(int), int count) {
  auto state = std::make_shared<ResultState>(static_cast<std::size_t>(count));
  state->set_helper(core.helper());
  std::vector<PoolTaskInput> tasks;
  for (int x = 0; x < count; ++x)
    tasks.push_back({trampoline_ref<&pool_apply_call<int (*)(int), int>>(),
                     mp::pickle::dumps(std::tuple<int (*)(int), int>(fn, x))});
  core.submit(state, 0, std::move(tasks));
  EXPECT_TRUE(state->wait_for(std::chrono::seconds(30)));
  return state;
}

TEST(PoolTransportSeam, TheUntypedPoolRunsTasksThroughAnotherTransport) {
  SeamCounters counters;
  {
    PoolCore core(with_processes(3), std::make_unique<ThreadTransport>(counters));
    auto state = run_job(core, &triple, 2000);
    ASSERT_FALSE(state->error());
    ASSERT_EQ(state->results().size(), 2000u);
    for (int x = 0; x < 2000; ++x)
      EXPECT_EQ(mp::pickle::loads<int>(state->results()[x].view()), 3 * x);
    core.close();
    core.join();
  }
  EXPECT_EQ(counters.started.load(), 3);
  EXPECT_GE(counters.tasks_sent.load(), 2000);
  // A send() call carries one task or a run of them; how long the runs are depends on
  // how fast the workers drain them, which a loaded machine decides.
  EXPECT_LE(counters.send_calls.load(), counters.tasks_sent.load());
  EXPECT_GT(counters.receive_calls.load(), 0);
}

TEST(PoolTransportSeam, ATaskErrorArrivesAsRemoteErrorThroughAnyTransport) {
  SeamCounters counters;
  PoolCore core(with_processes(2), std::make_unique<ThreadTransport>(counters));
  auto state = run_job(core, &refuse_seven, 10);
  ASSERT_TRUE(state->error());
  try {
    std::rethrow_exception(state->error());
  } catch (const mp::RemoteError& e) {
    EXPECT_NE(std::string(e.what()).find("seven"), std::string::npos);
  }
  core.terminate();
  core.join();
}

// A waiting thread that helps mutes the workers' wake-ups of the sleeping result thread;
// whenever it stops, results it did not collect (there already, or on their way) must
// still reach their jobs through that thread. Tasks without a helper of their own, after
// a helper that stopped at every point of its work.
TEST(PoolHelpers, ResultsArriveAfterAHelperStopsWhereverItStopped) {
  PoolCore core(with_processes(1));
  const auto helper = core.helper();
  for (int round = 0; round < 300; ++round) {
    auto state = std::make_shared<ResultState>(1);  // waits without helping
    std::vector<PoolTaskInput> tasks;
    tasks.push_back({trampoline_ref<&pool_apply_call<int (*)(int), int>>(),
                     mp::pickle::dumps(std::tuple<int (*)(int), int>(&triple, round))});
    core.submit(state, 0, std::move(tasks));
    for (int i = 0; i < round % 40; ++i) (void)helper(false);
    (void)helper(true);
    ASSERT_TRUE(state->wait_for(std::chrono::seconds(30))) << "round " << round;
    ASSERT_FALSE(state->error());
    EXPECT_EQ(mp::pickle::loads<int>(state->results().at(0).view()), 3 * round);
  }
  core.close();
  core.join();
}

TEST(PoolTransportSeam, AHelperOfAPoolThatIsGoneSaysWaitInstead) {
  SeamCounters counters;
  std::function<HelpResult(bool)> helper;
  {
    PoolCore core(with_processes(1), std::make_unique<ThreadTransport>(counters));
    helper = core.helper();
    EXPECT_NE(helper(false), HelpResult::not_worth_spinning);
    (void)helper(true);
    core.close();
    core.join();
  }
  EXPECT_EQ(helper(false), HelpResult::not_worth_spinning);
  EXPECT_EQ(helper(true), HelpResult::not_worth_spinning);
}

// A waiter on workers on other machines is told to spin for a round trip (two network
// hops and the serving rank's hand-off), a waiter on local workers for a moment.
TEST(PoolTransportSeam, AHelperOfARemotePoolSaysSpinForARoundTrip) {
  for (const bool remote : {false, true}) {
    SeamCounters counters;
    PoolCore core(with_processes(1), std::make_unique<ThreadTransport>(counters, remote));
    const auto helper = core.helper();
    for (int i = 0; i < 100; ++i)
      EXPECT_EQ(helper(false), remote ? HelpResult::nothing_yet_remote : HelpResult::nothing_yet)
          << "remote " << remote;
    (void)helper(true);
    EXPECT_EQ(run_job(core, &triple, 3)->results().size(), 3u);
    core.close();
    core.join();
  }
}

// A clock for help_within that moves 50 us at each reading, so that its spin ends after
// a known number of looks whatever the machine is doing.
struct SteppingClock {
  using time_point = std::chrono::steady_clock::time_point;
  static inline time_point now_ = time_point();
  static time_point now() { return now_ += std::chrono::microseconds(50); }
};

// How many times help_within asks a helper that answers `answer` and never delivers, and
// whether it ended the helping once.
std::pair<int, int> help_looks(HelpResult answer, std::chrono::microseconds timeout) {
  int looks = 0, ends = 0;
  const std::function<HelpResult(bool)> helper = [&](bool done) {
    if (done) {
      ++ends;
      return HelpResult::nothing_yet;
    }
    ++looks;
    return answer;
  };
  help_within<SteppingClock>(helper, timeout, [] { return false; });
  return {looks, ends};
}

// A waiter on workers on other machines helps for a round trip (kRemoteHelpSpin, 1 ms),
// a waiter on local workers for a moment (100 us), and neither past its deadline.
TEST(HelpUntil, RemoteWorkersAreHelpedForARoundTrip) {
  const auto [local, local_ends] = help_looks(HelpResult::nothing_yet, 1s);
  EXPECT_GE(local, 1);
  EXPECT_LE(local, 2);
  EXPECT_EQ(local_ends, 1);
  const auto [remote, remote_ends] = help_looks(HelpResult::nothing_yet_remote, 1s);
  EXPECT_GE(remote, 18);
  EXPECT_LE(remote, 20);
  EXPECT_EQ(remote_ends, 1);
  EXPECT_LE(help_looks(HelpResult::nothing_yet_remote, 200us).first, 4);
  EXPECT_EQ(help_looks(HelpResult::not_worth_spinning, 1s).first, 1);
}

// Whether a waiter's helper delivered its result (then "x"), or the waiter slept until a
// watchdog thread did ("w"). `wait` waits on `state`.
template <class State, class Wait, class Bytes>
std::string delivered_by(std::shared_ptr<State> state, Wait wait, Bytes bytes) {
  std::atomic<bool> delivered{false};
  state->set_helper([&](bool done) {
    if (done || delivered.exchange(true)) return HelpResult::nothing_yet;
    state->task_done(0, PoolBytes(std::string("x")));
    return HelpResult::delivered;
  });
  std::thread watchdog([&] {
    for (int i = 0; i < 2000 && !delivered; ++i) std::this_thread::sleep_for(1ms);
    if (!delivered.exchange(true)) state->task_done(0, PoolBytes(std::string("w")));
  });
  wait(*state);
  watchdog.join();
  return std::string(bytes(*state));
}

// AsyncResult::get() and Future::result() take a finished task's result themselves
// (the helper) before they sleep.
TEST(HelpUntil, WaitersOfAsyncResultsAndFuturesHelp) {
  EXPECT_EQ(delivered_by(
                std::make_shared<ResultState>(1), [](ResultState& s) { s.wait(); },
                [](ResultState& s) { return s.results().at(0).view(); }),
            "x");
  EXPECT_EQ(delivered_by(
                std::make_shared<FutureState>(),
                [](FutureState& s) { EXPECT_TRUE(s.wait_for(std::nullopt)); },
                [](FutureState& s) { return s.result_bytes(); }),
            "x");
  EXPECT_EQ(
      delivered_by(
          std::make_shared<FutureState>(), [](FutureState& s) { EXPECT_TRUE(s.wait_for(10s)); },
          [](FutureState& s) { return s.result_bytes(); }),
      "x");
  // A helper that never delivers does not hold a timed wait past its timeout.
  FutureState state;
  state.set_helper([](bool) { return HelpResult::nothing_yet_remote; });
  const auto start = std::chrono::steady_clock::now();
  EXPECT_FALSE(state.wait_for(5ms));
  EXPECT_GE(std::chrono::steady_clock::now() - start, 5ms);
}

}  // namespace
