#!/usr/bin/env bash
# The MPI rows: mp-bench-mpi and mpi4py.futures (Debian's python3-mpi4py, run with
# /usr/bin/python3), each under `mpirun -n 3` on this machine (rank 0 plus two serving
# ranks), and a raw MPI ping-pong as the floor. Prints the JSON lines of both.
#   bench/mpi.sh BUILD_DIR [--quick]
set -euo pipefail
build=$1
shift
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_plm_rsh_agent=false
export OMPI_MCA_hwloc_base_binding_policy=none
export OMPI_MCA_rmaps_base_oversubscribe=1
mpirun -n 2 "$build/tools/mp-bench/mp-bench-mpi" --ping-pong "$@"
mpirun -n 3 "$build/tools/mp-bench/mp-bench-mpi" "$@"
mpirun -n 3 /usr/bin/python3 -m mpi4py.futures "$here/python/mpi4py_bench.py" "$@"
