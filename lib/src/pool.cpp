// mp::Pool's untyped core (PoolCore) and Pool's own members. PoolCore puts the pool's
// roles together: its state (pool_state.hpp), the scheduler (pool_scheduler.cpp), the
// worker handler (pool_workers.cpp) and the result loop (pool_result_loop.cpp), which
// reach the workers through a transport (pool_transport.hpp; the shared-memory rings
// of pool_shm_transport.cpp, whose workers run pool_worker.cpp). The result states
// behind AsyncResult and IMapIterator are in pool_results.cpp.
#include <mp/pool.hpp>

#include <map>
#include <mutex>
#include <thread>

#include <mp/context.hpp>

#include "pool_result_loop.hpp"
#include "pool_scheduler.hpp"
#include "pool_state.hpp"
#include "pool_workers.hpp"

namespace mp::detail {

struct PoolCore::Impl {
  explicit Impl(PoolCoreOptions options, std::unique_ptr<WorkerTransport> transport)
      : state(std::move(options), std::move(transport)) {}

  PoolState state;
  Scheduler scheduler{state};
  WorkerHandler workers{state, scheduler};
  ResultLoop loop{state, scheduler, workers};
  std::thread result_thread;
};

PoolCore::PoolCore(PoolCoreOptions options)
    : PoolCore(std::move(options), make_shared_memory_transport()) {}

PoolCore::PoolCore(PoolCoreOptions options, std::unique_ptr<WorkerTransport> transport) {
  if (options.processes < 1) throw std::invalid_argument("mp::Pool: processes must be at least 1");
  remote_ = transport->remote();
  impl_ = std::make_shared<Impl>(std::move(options), std::move(transport));
  {
    std::lock_guard lock(impl_->state.mutex);
    try {
      for (int i = 0; i < impl_->state.options.processes; ++i) impl_->workers.start_worker();
    } catch (...) {
      for (auto& w : impl_->state.workers) w->link->kill();
      impl_->state.workers.clear();  // each link joins its worker and frees its channel
      throw;
    }
  }
  impl_->result_thread = std::thread([impl = impl_] { impl->loop.run(); });
}

PoolCore::~PoolCore() {
  if (impl_->result_thread.joinable()) {
    terminate();
    join();
  }
}

void PoolCore::submit(const std::shared_ptr<JobSink>& sink, std::uint64_t first_index,
                      std::vector<PoolTaskInput> tasks) {
  PoolState& state = impl_->state;
  const auto not_running = [] {
    return std::invalid_argument(
        "mp::Pool: the pool is not running (close() or terminate() was called)");
  };
  {
    std::lock_guard lock(state.mutex);
    if (state.run_state != PoolRunState::running) throw not_running();
  }
  // A large input travels in a block of the shared heap. It is allocated here, in the
  // caller's thread, so that a full heap (HeapExhausted) fails just this task through
  // its result, not the thread that hands tasks to the workers.
  std::vector<std::pair<std::uint64_t, std::exception_ptr>> refused;
  for (std::size_t i = 0; i < tasks.size(); ++i) {
    if (!state.transport->input_in_heap(tasks[i].trampoline->size(), tasks[i].input.size()))
      continue;
    try {
      tasks[i].input.move_to_heap();
    } catch (...) {
      refused.emplace_back(first_index + i, std::current_exception());
    }
  }
  std::exception_ptr broken_error;
  bool wake = false;
  {
    std::lock_guard lock(state.mutex);
    if (state.run_state != PoolRunState::running) throw not_running();
    if (state.broken) {
      broken_error = std::make_exception_ptr(BrokenProcessPool(*state.broken));
    } else {
      std::size_t next_refused = 0;
      for (std::size_t i = 0; i < tasks.size(); ++i) {
        if (next_refused < refused.size() && refused[next_refused].first == first_index + i) {
          ++next_refused;
          continue;
        }
        state.pending.push_back(
            PoolTask{sink, first_index + i, tasks[i].trampoline, std::move(tasks[i].input)});
      }
      impl_->scheduler.dispatch();
      wake = !state.pending.empty();
    }
  }
  if (broken_error) {
    for (std::size_t i = 0; i < tasks.size(); ++i) sink->task_failed(first_index + i, broken_error);
    return;
  }
  for (auto& [index, error] : refused) sink->task_failed(index, error);
  if (wake && impl_->loop.sleeping()) impl_->loop.wake();
}

void PoolCore::close() {
  std::lock_guard lock(impl_->state.mutex);
  if (impl_->state.run_state == PoolRunState::running)
    impl_->state.run_state = PoolRunState::closed;
  impl_->loop.wake();
}

void PoolCore::terminate(bool kill) {
  Completions done;
  {
    PoolState& state = impl_->state;
    std::lock_guard lock(state.mutex);
    state.run_state = PoolRunState::terminated;
    state.fail_pending(
        std::make_exception_ptr(BrokenProcessPool("mp::Pool: the pool was terminated")), done);
    for (auto& w : state.workers) {
      if (w->dead) continue;
      if (kill)
        w->link->kill();
      else
        w->link->terminate();
    }
    impl_->loop.wake();
  }
  ResultLoop::deliver(done);
}

void PoolCore::join() {
  {
    std::lock_guard lock(impl_->state.mutex);
    if (impl_->state.run_state == PoolRunState::running)
      throw std::logic_error("mp::Pool::join: call close() or terminate() first");
  }
  if (impl_->result_thread.joinable()) {
    if (impl_->result_thread.get_id() == std::this_thread::get_id())
      throw std::logic_error("mp::Pool::join: called from the pool's result thread");
    impl_->result_thread.join();
  }
}

bool PoolCore::cancel(const JobSink* sink, std::uint64_t index) {
  std::lock_guard lock(impl_->state.mutex);
  return impl_->scheduler.cancel(sink, index);
}

bool PoolCore::started(const JobSink* sink, std::uint64_t index) const {
  std::lock_guard lock(impl_->state.mutex);
  return impl_->scheduler.started(sink, index);
}

std::vector<std::pair<std::shared_ptr<JobSink>, std::uint64_t>> PoolCore::take_pending() {
  std::lock_guard lock(impl_->state.mutex);
  return impl_->scheduler.take_pending();
}

namespace {
thread_local bool pickling_for_remote = false;
thread_local MachineLocalWatch* machine_local_watch = nullptr;
}  // namespace

MachineLocalWatch::MachineLocalWatch() noexcept : previous_(machine_local_watch) {
  machine_local_watch = this;
}
MachineLocalWatch::~MachineLocalWatch() { machine_local_watch = previous_; }

RemotePicklingScope::RemotePicklingScope(bool remote) noexcept : previous_(pickling_for_remote) {
  pickling_for_remote = pickling_for_remote || remote;
}
RemotePicklingScope::~RemotePicklingScope() { pickling_for_remote = previous_; }

void refuse_if_pickling_for_remote(const char* what) {
  if (machine_local_watch && !machine_local_watch->found_) machine_local_watch->found_ = what;
  if (pickling_for_remote)
    throw PicklingError(std::string("mp: ") + what +
                        " cannot be pickled for a worker on another machine");
}

namespace {
std::mutex transports_mutex;
std::map<std::string, TransportFactory, std::less<>>& transports() {
  static std::map<std::string, TransportFactory, std::less<>> registered;
  return registered;
}
}  // namespace

void register_pool_transport(const std::string& name, TransportFactory factory) {
  std::lock_guard lock(transports_mutex);
  if (factory)
    transports()[name] = factory;
  else
    transports().erase(name);
}

TransportFactory find_pool_transport(const std::string& name) {
  if (name.empty()) return nullptr;
  std::lock_guard lock(transports_mutex);
  const auto it = transports().find(name);
  return it == transports().end() ? nullptr : it->second;
}

int PoolCore::processes() const noexcept { return impl_->state.options.processes; }

std::function<HelpResult(bool done)> PoolCore::helper() const {
  return [weak = std::weak_ptr<Impl>(impl_)](bool done) {
    auto impl = weak.lock();
    if (!impl) return HelpResult::not_worth_spinning;
    if (!done) return impl->loop.help();
    impl->loop.end_help();
    return HelpResult::nothing_yet;
  };
}

std::vector<int> PoolCore::worker_pids() const {
  std::lock_guard lock(impl_->state.mutex);
  std::vector<int> pids;
  for (auto& w : impl_->state.workers)
    if (!w->dead) pids.push_back(w->pid);
  return pids;
}

}  // namespace mp::detail

namespace mp {

Pool::Pool(PoolOptions options) {
  detail::PoolCoreOptions core;
  core.processes = options.processes.value_or(cpu_count());
  core.initializer = std::move(options.initializer);
  core.maxtasksperchild = options.maxtasksperchild.value_or(0);
  if (options.maxtasksperchild && *options.maxtasksperchild == 0)
    throw std::invalid_argument("mp::Pool: maxtasksperchild must be at least 1");
  core.task_timeout = options.task_timeout;
  if (const auto factory = detail::find_pool_transport(options.start_method)) {
    core.processes = options.processes.value_or(0);
    if (auto transport = factory(core.processes)) {
      core.start_method = std::move(options.start_method);
      core_ = std::make_shared<detail::PoolCore>(std::move(core), std::move(transport));
      return;
    }
    if (!options.processes) core.processes = cpu_count();
    options.start_method.clear();
  }
  if (!options.start_method.empty()) (void)get_context(options.start_method);  // validates
  core.start_method = std::move(options.start_method);
  core_ = std::make_shared<detail::PoolCore>(std::move(core));
}

Pool::~Pool() {
  try {
    core_->close();
    core_->join();
  } catch (...) {
  }
}

void Pool::close() { core_->close(); }
void Pool::terminate() { core_->terminate(); }
void Pool::join() { core_->join(); }
int Pool::processes() const noexcept { return core_->processes(); }
std::vector<int> Pool::worker_pids() const { return core_->worker_pids(); }

}  // namespace mp
