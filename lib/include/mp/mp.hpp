// The umbrella header: everything of mp, as `import multiprocessing` gives the whole
// module in Python.
#pragma once

#include <mp/detail/export.hpp>

#include <mp/connection.hpp>
#include <mp/context.hpp>
#include <mp/errors.hpp>
#include <mp/futures.hpp>
#include <mp/logging.hpp>
#include <mp/managers.hpp>
#include <mp/pickle.hpp>
#include <mp/pool.hpp>
#include <mp/process.hpp>
#include <mp/python_pickle.hpp>
#include <mp/queues.hpp>
#include <mp/shared_memory.hpp>
#include <mp/sharedctypes.hpp>
#include <mp/synchronize.hpp>
#include <mp/util.hpp>
