// A real-world program beside the course ones: a producer/consumer pipeline with error
// handling and supervision. Jobs go through a JoinableQueue to consumer processes that
// store each result (or the job's error) in a Manager dict. The Python it replaces:
//
//   def consumer(jobs, results):
//       while True:
//           try:
//               n = jobs.get()
//           except queue.ShutDown:                 # Python 3.13
//               return
//           try:
//               results[n] = f'ok {collatz_steps(n)}'
//           except ValueError as e:
//               results[n] = f'error {e}'        # a bad job fails alone
//           jobs.task_done()
//
//   jobs, results = JoinableQueue(), Manager().dict()
//   for n in range(1, 41): jobs.put(n)
//   jobs.join()                                    # hangs if a consumer dies mid-job
//   jobs.shutdown()
//
// What mp adds: a consumer that dies holding a job (here one crashes on job 13 with
// std::abort, as a segfault would) makes join() throw mp::ConsumerLostError within about
// 200 ms instead of hanging. The supervisor (main) then finds the jobs with no result,
// starts a replacement consumer, puts them again and joins again. At the end,
// shutdown() makes every consumer's get() throw mp::ShutDown, so they return cleanly.
//
// usage: example_pipeline [JOBS [CONSUMERS]]   (default 40 jobs, 3 consumers)
#include <cstdlib>
#include <stdexcept>
#include <string>
#include <vector>

#include <mp/mp.hpp>

#include "example.hpp"

namespace {

constexpr long kCrashJob = 13;  // the first consumer to get it crashes
constexpr long kBadJob = 0;     // invalid input: an error result, not a crash

long collatz_steps(long n) {
  if (n < 1) throw std::invalid_argument("collatz needs n >= 1, got " + std::to_string(n));
  long steps = 0;
  for (; n != 1; ++steps) n = n % 2 == 0 ? n / 2 : 3 * n + 1;
  return steps;
}

void consumer(mp::JoinableQueue<long> jobs, mp::SharedDict<long, std::string> results,
              mp::Event crashed_once) {
  for (;;) {
    long n = 0;
    try {
      n = jobs.get();
    } catch (const mp::ShutDown&) {
      return;  // no more work: a clean end
    }
    if (n == kCrashJob && !crashed_once.is_set()) {
      crashed_once.set();
      std::abort();  // dies holding job n: its task_done() never comes
    }
    try {
      results[n] = "ok " + std::to_string(collatz_steps(n));
    } catch (const std::exception& e) {
      results[n] = std::string("error ") + e.what();
    }
    jobs.task_done();  // in the error path too: the job is handled
  }
}

}  // namespace

int main(int argc, char** argv) {
  mp::freeze_support(argc, argv);
  const auto args = example::parse_args(argc, argv, "[JOBS [CONSUMERS]]");
  const long job_count = example::number_arg(args, 0, 40);
  const int consumer_count = static_cast<int>(example::number_arg(args, 1, 3));
  if (job_count < kCrashJob || consumer_count < 1 || consumer_count > 32) {
    std::fprintf(stderr, "need JOBS >= %ld and 1 <= CONSUMERS <= 32\n", kCrashJob);
    return 2;
  }

  mp::Manager manager;
  auto results = manager.dict<long, std::string>();
  mp::JoinableQueue<long> jobs;
  mp::Event crashed_once;
  std::vector<mp::Process> consumers;
  auto start_consumer = [&] {
    consumers.emplace_back(&consumer, jobs, results, crashed_once);
    consumers.back().start();
  };
  for (int i = 0; i < consumer_count; ++i) start_consumer();

  jobs.put(kBadJob);
  for (long n = 1; n <= job_count; ++n) jobs.put(n);

  // Supervise: join; a lost consumer's jobs are written off by join(), so joining again
  // waits for the jobs the living consumers hold; then the jobs without a result go
  // again, to a replacement consumer.
  for (int losses = 0;;) {
    try {
      if (!jobs.join(std::chrono::seconds(60))) {
        std::fprintf(stderr, "no progress for a minute: giving up\n");
        return 1;
      }
    } catch (const mp::ConsumerLostError& e) {
      example::say("supervisor: %s\n", e.what());
      if (++losses > 3) return 1;
      continue;
    }
    std::vector<long> missing;
    for (long n = kBadJob; n <= job_count; ++n)
      if (!results.contains(n)) missing.push_back(n);
    if (missing.empty()) break;
    example::say("supervisor: %zu job(s) lost, putting them again: %s\n", missing.size(),
                 example::list_repr(missing).c_str());
    start_consumer();
    for (long n : missing) jobs.put(n);
  }

  jobs.shutdown();  // consumers waiting in get() wake up with mp::ShutDown and return
  int clean = 0, crashed = 0;
  for (auto& process : consumers) {
    process.join();
    (process.exitcode() == 0 ? clean : crashed) += 1;
  }
  long ok = 0, errors = 0;
  for (const auto& [n, text] : results.items()) (text.rfind("ok ", 0) == 0 ? ok : errors) += 1;
  example::say("results: %ld ok, %ld error(s); job 0: %s; job 27: %s\n", ok, errors,
               results.get(kBadJob, "missing").c_str(), results.get(27, "missing").c_str());
  example::say("consumers: %d ended cleanly, %d crashed\n", clean, crashed);
  return 0;
}
