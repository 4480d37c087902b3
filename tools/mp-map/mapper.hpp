// mp-map's scheduling: feeds chunks of input to a pool, prints the outcomes in order,
// and ends as the options and signals say.
#pragma once

#include "input.hpp"
#include "options.hpp"
#include "output.hpp"
#include "task.hpp"

namespace mp_map {

// Maps `job` over `input` in a pool of workers and writes the results to `output`;
// returns mp-map's exit status, or ends the process by the signal that interrupted it
// (SIGPIPE too, for a closed pipe when `sigpipe_ignored` is false). Throws
// std::runtime_error when the workers cannot start or the input cannot be read.
int run_map(const Options& options, Job job, Input& input, Output& output, bool sigpipe_ignored);

}  // namespace mp_map
