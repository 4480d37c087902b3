#!/usr/bin/env bash
# Runs one MPI test for ctest, on this machine only:
#   run.sh pass NP PROGRAM [ARGS...]            mpirun -n NP must succeed
#   run.sh fail SECONDS REGEX -- COMMAND...     COMMAND (an mpirun line) must fail within
#                                               SECONDS with REGEX in its output
#   run.sh map NP MP_MAP FUNCTION               `mpirun -n NP mp-map --mpi FUNCTION` prints
#                                               what mp-map FUNCTION does, for 20000 items
# Environment for every run: a private TMPDIR; OMPI_MCA_plm_rsh_agent=false (no ssh: a
# launch that tried another host fails); root allowed (CI runs as root); no CPU binding
# (a rank's local pool uses the CPUs it finds). Open MPI's shared-memory segments
# (/dev/shm/vader_segment*) left by a job that was killed are removed afterwards, so
# the suite's leak check still means something.
set -uo pipefail

mode=$1
shift
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
export TMPDIR=$tmp
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_plm_rsh_agent=false
export OMPI_MCA_hwloc_base_binding_policy=none
export OMPI_MCA_rmaps_base_oversubscribe=1

vader_before=$(ls /dev/shm/ 2>/dev/null | grep '^vader_segment' | sort)
clean_vader() {
  local now
  now=$(ls /dev/shm/ 2>/dev/null | grep '^vader_segment' | sort)
  comm -13 <(echo "$vader_before") <(echo "$now") | while read -r name; do
    [[ -n $name ]] && rm -f "/dev/shm/$name"
  done
}

case $mode in
  pass)
    np=$1
    shift
    mpirun -n "$np" "$@"
    status=$?
    clean_vader
    exit $status
    ;;
  fail)
    seconds=$1 regex=$2
    shift 3
    start=$(date +%s)
    out=$(timeout $((seconds + 30)) "$@" 2>&1)
    status=$?
    elapsed=$(($(date +%s) - start))
    clean_vader
    printf '%s\n' "$out"
    echo "run.sh: exit status $status after ${elapsed}s"
    if [[ $status -eq 0 ]]; then echo "run.sh: FAIL: the job succeeded"; exit 1; fi
    if [[ $status -eq 124 ]]; then echo "run.sh: FAIL: the job hung"; exit 1; fi
    if ((elapsed > seconds)); then echo "run.sh: FAIL: took over ${seconds}s"; exit 1; fi
    if ! grep -Eq "$regex" <<<"$out"; then echo "run.sh: FAIL: no /$regex/ in the output"; exit 1; fi
    echo "run.sh: ok"
    ;;
  map)
    np=$1 mp_map=$2 function=$3
    seq 1 20000 >"$tmp/input"
    "$mp_map" "$function" <"$tmp/input" >"$tmp/local" || exit 1
    mpirun -n "$np" "$mp_map" --mpi "$function" <"$tmp/input" >"$tmp/mpi"
    status=$?
    clean_vader
    [[ $status -eq 0 ]] || { echo "run.sh: mp-map --mpi failed ($status)"; exit 1; }
    cmp "$tmp/local" "$tmp/mpi" || { echo "run.sh: mp-map --mpi printed something else"; exit 1; }
    echo "run.sh: ok ($(wc -l <"$tmp/mpi") lines)"
    ;;
  *)
    echo "run.sh: unknown mode $mode" >&2
    exit 2
    ;;
esac
