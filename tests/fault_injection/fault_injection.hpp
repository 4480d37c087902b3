// Fault injection: several worker processes hammer shared state while a
// driver (tests/fault_injection_test.cpp) SIGKILLs random ones and starts replacements;
// afterwards the state must still be consistent and nothing may be left behind.
//
// A participant is one kind of shared state and the work done on it. Adding one is
// adding one file, tests/fault_injection/<name>_participant.cpp (CMake globs them into
// mp_tests), that defines the three functions and registers them:
//
//   MP_FAULT_PARTICIPANT(queue, {.setup = ..., .work = ..., .verify = ...});
//
// The driver runs every registered participant once per start method.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace mp_fault {

struct Participant {
  // In the driver, before any worker starts: creates the shared state in `dir` (a
  // fresh directory, removed afterwards) and returns what the workers need to find
  // it, as a string (a path, a pickled handle).
  std::string (*setup)(const std::string& dir) = nullptr;
  // In a worker process (fork or spawn): works on the state until it is killed; never
  // returns. Must be correct when SIGKILLed between any two instructions.
  void (*work)(std::string state, int worker_index) = nullptr;
  // In the driver, after every worker is dead: "" if the state is consistent, else what
  // is wrong. `workers_killed` workers were SIGKILLed during the run.
  std::string (*verify)(const std::string& state, int workers_killed) = nullptr;
};

struct Registration {
  Registration(const char* name, Participant participant);
};

struct Registered {
  std::string name;
  Participant participant;
};
// In name order.
const std::vector<Registered>& participants();
const Participant* find_participant(const std::string& name);

// For participants whose workers record the processes they start as files named by pid
// in `pid_dir`: "<what> PID outlived its killed parent; " for each of them still running
// ten seconds on (then SIGKILLed), "" when all are gone.
std::string survivors(const std::string& pid_dir, const std::string& what);

}  // namespace mp_fault

#define MP_FAULT_PARTICIPANT(name, ...) \
  static const ::mp_fault::Registration mp_fault_participant_##name(#name, __VA_ARGS__)
