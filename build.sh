#!/usr/bin/env bash
# The one entry point for building mp, for people (README's quick start) and for CI.
#
#   ./build.sh demo [ARGS...]   build mp-demo and run it (default ARGS: process)
#   ./build.sh test [ARGS...]   build everything and run the whole test suite
#                               (ARGS go to ctest, e.g. -R process or -L packaging)
#   ./build.sh sanitize [ARGS...]  the same with ASan+UBSan, in build-asan/, without
#                               the packaging, MPI, compile-fail and benchmark tests
#   ./build.sh test-clang [ARGS...]  the same built by clang++, in build-clang/; of the
#                               packaging tests only install, headers (each header alone,
#                               by clang++) and cross-compiler (a g++-built program against
#                               the clang++-built library); then, if build/ exists, its
#                               cross-compiler test (a clang++-built program against the
#                               g++-built library)
#   ./build.sh bench [ARGS...]  run the benchmark side by side with CPython (ARGS go to
#                               bench/compare.py; --busy 3: beside 3 busy loops per CPU,
#                               into README's busy-machine table)
#   ./build.sh bench-mpi [--quick] [--repeat K] [--update-readme]  the pools over MPI under
#                               mpirun -n 3 beside mpi4py.futures and a raw MPI ping-pong
#                               (bench/mpi.sh), checked against their goals by
#                               bench/mpi_report.py (fails if one is missed); with
#                               --update-readme it writes README's Scaling out table
#   ./build.sh fuzz [SECONDS]   build the libFuzzer targets in fuzz/ with clang (in
#                               build-fuzz/) and run each for SECONDS (default 60) from
#                               its seed corpus in fuzz/corpus/; fails on a crash, leak,
#                               UB or unexpected exception (the input is kept in
#                               build-fuzz/artifacts/)
#   ./build.sh fuzz-seeds       rewrite fuzz/corpus/ from the targets' seed generators
#   ./build.sh reliability      write README's Reliability section from the figures that
#                               the last test, sanitize and fuzz runs recorded
#   ./build.sh test-busy [ARGS...]  the process-heavy tests of build/ again, beside one
#                               busy loop per CPU (a loaded machine; ARGS go to ctest)
#   ./build.sh docs             the API reference from the public headers (Doxygen, into
#                               build-docs/html/index.html); fails on any warning (a
#                               public name without a comment) not in docs/api/undocumented.txt
#   ./build.sh lint             clang-format --dry-run -Werror over every C++ file, then
#                               clang-tidy (.clang-tidy) over lib/src with the compile
#                               commands of build/ (configured if needed, not built)
#
# On Debian (bookworm) it first installs the packages it needs with apt-get, if any is
# missing, using sudo when not root (fuzz also needs clang, its libFuzzer runtime and
# python3; test-clang clang; lint clang-format and clang-tidy; reliability python3).
# Environment:
#   MP_BUILD_TYPE=...   CMake build type of build/ (default RelWithDebInfo)
#   MP_SKIP_APT=1       never run apt-get (other distributions, or no root)
#   MP_JOBS=N           parallel build jobs (default: all cores)
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")"
readonly ROOT=$PWD
readonly BUILD_DIR=$ROOT/build
readonly ASAN_BUILD_DIR=$ROOT/build-asan
readonly FUZZ_BUILD_DIR=$ROOT/build-fuzz
readonly CLANG_BUILD_DIR=$ROOT/build-clang
readonly BUILD_TYPE=${MP_BUILD_TYPE:-RelWithDebInfo}
JOBS=${MP_JOBS:-$(nproc 2>/dev/null || echo 2)}
readonly JOBS
# python3: the Listener/Client and Python-pickle tests talk to Debian's CPython.
# openmpi-bin, libopenmpi-dev: mp::mpi (pools over MPI) and its tests under mpirun.
# libboost-stacktrace1.81-dev: mp::stacktrace (remote tracebacks).
readonly PACKAGES=(g++ cmake make libboost1.81-dev libboost-stacktrace1.81-dev libcereal-dev
                   libgtest-dev googletest libssl-dev pkg-config python3 openmpi-bin
                   libopenmpi-dev)
# Only for `fuzz` (and python3 for `reliability`), so that the quick start stays lean.
readonly FUZZ_PACKAGES=(clang libclang-rt-14-dev python3)
# Only for `lint`.
readonly LINT_PACKAGES=(clang-format clang-tidy)
# Only for `docs`.
readonly DOCS_PACKAGES=(doxygen)

say() { printf '\n==> %s\n' "$*"; }
die() { printf '\nbuild.sh: error: %s\n' "$*" >&2; exit 1; }

usage() {
  local status=${1:-0}
  if [[ $status -eq 0 ]]; then
    sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"
  else
    sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}" >&2
  fi
  exit "$status"
}

# ensure_packages [EXTRA PACKAGE...]
# Installs the missing Debian packages (PACKAGES and EXTRA); does nothing (and needs no
# root) when all are installed already.
ensure_packages() {
  local -a wanted=("${PACKAGES[@]}" "$@")
  if [[ ${MP_SKIP_APT:-0} == 1 ]]; then
    return
  fi
  if ! command -v dpkg-query >/dev/null; then
    echo "build.sh: not a Debian system; make sure these are installed: ${wanted[*]}" >&2
    return
  fi
  local missing=() package
  for package in "${wanted[@]}"; do
    if [[ $(dpkg-query -W -f='${db:Status-Status}' "$package" 2>/dev/null) != installed ]]; then
      missing+=("$package")
    fi
  done
  if [[ ${#missing[@]} -eq 0 ]]; then
    return
  fi

  local -a as_root=()
  if [[ $(id -u) -ne 0 ]]; then
    command -v sudo >/dev/null ||
      die "missing packages (${missing[*]}) and no sudo: as root, run
  apt-get update && apt-get install -y --no-install-recommends ${wanted[*]}"
    as_root=(sudo)
  fi
  say "Installing Debian packages: ${missing[*]}"
  # Quiet, but on failure show apt's output.
  local log
  log=$(mktemp "${TMPDIR:-/tmp}/mp-apt.XXXXXX")
  if ! "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update >"$log" 2>&1 ||
     ! "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
         --no-install-recommends "${wanted[@]}" >>"$log" 2>&1; then
    cat "$log" >&2
    rm -f "$log"
    die "apt-get failed (output above)"
  fi
  rm -f "$log"
}

# configure DIR [CMAKE ARGS...]
configure() {
  local dir=$1
  shift
  say "Configuring $dir ($BUILD_TYPE)"
  cmake -S "$ROOT" -B "$dir" -DCMAKE_BUILD_TYPE="$BUILD_TYPE" "$@" ||
    die "cmake could not configure $dir (see above)"
}

# build DIR [TARGET...]
build() {
  local dir=$1
  shift
  local -a targets=()
  if [[ $# -gt 0 ]]; then
    targets=(--target "$@")
  fi
  say "Building ${*:-everything} in $dir with $JOBS jobs"
  cmake --build "$dir" --parallel "$JOBS" "${targets[@]}" || die "the build failed"
}

run_tests() {
  local dir=$1
  shift
  say "Running the tests in $dir"
  # Each test's timeout is set in CMake; --timeout only bounds a test that has none.
  ctest --test-dir "$dir" --output-on-failure -j2 --timeout 900 --no-tests=error "$@" ||
    die "tests failed (see above)"
}

cmd_demo() {
  ensure_packages
  configure "$BUILD_DIR"
  build "$BUILD_DIR" mp-demo
  local -a args=("$@")
  if [[ ${#args[@]} -eq 0 ]]; then
    args=(process)
  fi
  say "Running mp-demo ${args[*]}"
  "$BUILD_DIR/tools/mp-demo/mp-demo" "${args[@]}"
}

cmd_test() {
  ensure_packages
  configure "$BUILD_DIR"
  build "$BUILD_DIR"
  run_tests "$BUILD_DIR" "$@"
}

# The tests that start processes (their ctest names match this), run by test-busy.
readonly BUSY_TESTS='ProcessTest|PoolTest|FuturesTest|QueueTest|SynchronizeTest|Manager|FaultInjection|ResourceLeak|KillParent'
readonly FIGURES=$BUILD_DIR/reliability/figures.jsonl
HOGS=()

# Stops the busy loops and puts back the figures of the last full run (the leak-check
# fixture empties the file at the start of every ctest run, and README's Reliability
# section reports the full run's figures).
end_busy() {
  if [[ ${#HOGS[@]} -gt 0 ]]; then
    kill "${HOGS[@]}" 2>/dev/null || true
    wait "${HOGS[@]}" 2>/dev/null || true
    HOGS=()
  fi
  if [[ -f $FIGURES.before-test-busy ]]; then
    mv -f "$FIGURES.before-test-busy" "$FIGURES"
  fi
}

# Runs the process-heavy tests beside one busy loop per CPU, so that a test assuming a
# child got somewhere in time, or bounding elapsed time, fails here rather than on a
# loaded machine. The loops are bash (not this build's executables: leak_check.sh
# counts only those) and are stopped on every way out.
cmd_test_busy() {
  ensure_packages
  configure "$BUILD_DIR"
  build "$BUILD_DIR"
  local cpus i
  cpus=$(nproc 2>/dev/null || echo 2)
  trap end_busy EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM HUP
  if [[ -f $FIGURES ]]; then
    cp -f "$FIGURES" "$FIGURES.before-test-busy"
  fi
  for ((i = 0; i < cpus; ++i)); do
    bash -c 'while :; do :; done' &
    HOGS+=($!)
  done
  say "Busy loops on all $cpus CPUs (pids ${HOGS[*]})"
  local started=$SECONDS
  run_tests "$BUILD_DIR" -R "$BUSY_TESTS" "$@"
  end_busy
  echo "test-busy: the process-heavy tests passed beside $cpus busy loops in $((SECONDS - started))s"
}

cmd_sanitize() {
  ensure_packages
  # -O1, as the sanitizers' authors advise: the instrumented code compiles in two thirds
  # of the time it takes at -O2, and runs well enough. -g1 keeps the line tables that
  # the reports need.
  configure "$ASAN_BUILD_DIR" -DMP_SANITIZE=ON -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O1 -g1 -DNDEBUG"
  build "$ASAN_BUILD_DIR"
  # The packaging tests install and rebuild the library: nothing for the sanitizers. The
  # MPI tests run Open MPI's own code, whose allocations LeakSanitizer reports. The
  # compile-fail tests run the compiler, and the benchmark harness's test times mp-bench:
  # neither runs mp's code under the sanitizers (build/ runs both).
  UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1} \
    run_tests "$ASAN_BUILD_DIR" --label-exclude '^(packaging|mpi|compile_fail|bench)$' "$@"
}

# The suite built by clang++: mp must build and work with either compiler, and a program
# built by one must work with the library built by the other.
cmd_test_clang() {
  ensure_packages clang
  command -v clang++ >/dev/null || die "clang++ is not installed"
  local -a launcher=()
  if command -v ccache >/dev/null; then
    launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
  fi
  configure "$CLANG_BUILD_DIR" -DCMAKE_CXX_COMPILER=clang++ "${launcher[@]}"
  build "$CLANG_BUILD_DIR"
  # find_package, pkg-config and add_subdirectory test CMake's and pkg-config's files,
  # which do not depend on the compiler, and shared the export marks: build/ runs them.
  run_tests "$CLANG_BUILD_DIR" -E '^packaging[.](find_package|pkg-config|add_subdirectory|shared)$' "$@"
  if [[ -f $BUILD_DIR/CMakeCache.txt && -f $BUILD_DIR/lib/libmp.a ]]; then
    run_tests "$BUILD_DIR" -R '^packaging[.](install|cross-compiler)$'
  fi
}

# Style and static checks, fast enough to run before the build: clang-format over every
# tracked C++ file (no rewriting: a file that would change fails), then clang-tidy over
# lib/src with .clang-tidy's checks, one file per job, using build/'s compile commands.
cmd_lint() {
  ensure_packages "${LINT_PACKAGES[@]}"
  local -a sources
  mapfile -t sources < <(git -C "$ROOT" ls-files '*.cpp' '*.hpp' '*.h' 2>/dev/null ||
    find lib tools tests examples fuzz bench \( -name '*.cpp' -o -name '*.hpp' -o -name '*.h' \))
  [[ ${#sources[@]} -gt 0 ]] || die "lint: no C++ files found"
  say "clang-format --dry-run -Werror over ${#sources[@]} files"
  clang-format --dry-run -Werror "${sources[@]}" ||
    die "clang-format: the files above are not formatted (run clang-format -i on them)"
  if [[ ! -f $BUILD_DIR/compile_commands.json ]]; then
    configure "$BUILD_DIR"
  fi
  local -a library
  mapfile -t library < <(cd "$ROOT" && find lib/src -name '*.cpp' | sort)
  say "clang-tidy over ${#library[@]} files of lib/src with $JOBS jobs"
  local started=$SECONDS
  # Without the "N warnings generated." line per file: those are system headers' warnings,
  # which HeaderFilterRegex hides anyway.
  printf '%s\n' "${library[@]}" |
    xargs -P "$JOBS" -n 1 bash -c \
      'clang-tidy -p "$0" --quiet "$1" 2> >(grep -v "^[0-9]* warnings\{0,1\} generated\.$" >&2)' \
      "$BUILD_DIR" ||
    die "clang-tidy found problems (above)"
  echo "lint: clang-format and clang-tidy clean; clang-tidy took $((SECONDS - started))s"
}

# Builds mp-bench in Release (build-release/) and runs bench/compare.py: mp-bench and
# the CPython script, pinned to the same CPUs, side by side; the tables go to stdout and
# into README.md. ARGS go to compare.py (--quick, --only NAME[,NAME], --runs N, ...).
cmd_bench() {
  # python3 for the CPython side; parallel (GNU parallel) for mp-map's comparison.
  ensure_packages python3 parallel
  local dir=$ROOT/build-release
  say "Configuring $dir (Release)"
  cmake -S "$ROOT" -B "$dir" -DCMAKE_BUILD_TYPE=Release -DMP_BUILD_TESTS=OFF \
    -DMP_BUILD_EXAMPLES=OFF || die "cmake could not configure $dir (see above)"
  build "$dir" mp-bench mp-map
  # A quiet run keeps its figures; a busy one (--busy K) holds its rows against them.
  local quiet=$dir/bench-quiet.jsonl
  local -a saved=(--raw-out "$quiet")
  if [[ " $* " == *" --busy "* ]]; then
    saved=()
    [[ -f $quiet ]] && saved=(--quiet-raw "$quiet")
  fi
  say "Running mp-bench and CPython side by side, then mp-map beside xargs and parallel"
  python3 "$ROOT/bench/compare.py" --mp-bench "$dir/tools/mp-bench/mp-bench" \
    --mp-map "$dir/tools/mp-map/mp-map" --update-readme "${saved[@]}" "$@"
}

cmd_bench_mpi() {
  ensure_packages python3 python3-mpi4py
  local dir=$ROOT/build-release
  say "Configuring $dir (Release)"
  cmake -S "$ROOT" -B "$dir" -DCMAKE_BUILD_TYPE=Release -DMP_BUILD_TESTS=OFF \
    -DMP_BUILD_EXAMPLES=OFF || die "cmake could not configure $dir (see above)"
  build "$dir" mp-bench-mpi
  say "Running mp-bench-mpi and mpi4py.futures under mpirun -n 3"
  python3 "$ROOT/bench/mpi_report.py" "$dir" "$@"
}

# Configures and builds build-fuzz/: the library and the fuzz targets, all compiled by
# clang++ with libFuzzer coverage, ASan and UBSan (MP_BUILD_FUZZERS).
build_fuzzers() {
  ensure_packages "${FUZZ_PACKAGES[@]}"
  command -v clang++ >/dev/null || die "clang++ is needed for the fuzz targets"
  say "Configuring $FUZZ_BUILD_DIR (clang++, libFuzzer, ASan, UBSan)"
  cmake -S "$ROOT" -B "$FUZZ_BUILD_DIR" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DCMAKE_CXX_COMPILER=clang++ -DMP_BUILD_FUZZERS=ON -DMP_BUILD_TESTS=OFF \
    -DMP_BUILD_TOOLS=OFF -DMP_BUILD_EXAMPLES=OFF -DMP_INSTALL=OFF ||
    die "cmake could not configure $FUZZ_BUILD_DIR (see above)"
  FUZZERS=$(tr ';' ' ' <"$FUZZ_BUILD_DIR/fuzz/fuzzers.txt")
  [[ -n ${FUZZERS// /} ]] || die "no fuzz targets (fuzz/*_fuzzer.cpp)"
  # Only the fuzz targets and what they link (not mp::mpi or the stack traces).
  # shellcheck disable=SC2086
  build "$FUZZ_BUILD_DIR" $FUZZERS
}

# Runs every fuzz target for SECONDS from its committed corpus plus the seeds its
# generator writes now (so that a format change reaches the fuzzer before the corpus is
# rewritten). New inputs go to build-fuzz/corpus/<target>/, never into fuzz/corpus/.
# Figures (executions, corpus sizes) go to build-fuzz/reliability/fuzz.jsonl.
cmd_fuzz() {
  local seconds=${1:-60}
  [[ $seconds =~ ^[0-9]+$ && $seconds -gt 0 ]] || die "fuzz: SECONDS must be a positive integer"
  build_fuzzers
  local figures=$FUZZ_BUILD_DIR/reliability/fuzz.jsonl
  mkdir -p "$FUZZ_BUILD_DIR/reliability"
  : >"$figures"
  local name
  for name in $FUZZERS; do
    local binary=$FUZZ_BUILD_DIR/fuzz/$name committed=$ROOT/fuzz/corpus/$name
    local work=$FUZZ_BUILD_DIR/corpus/$name artifacts=$FUZZ_BUILD_DIR/artifacts/$name/
    local log=$FUZZ_BUILD_DIR/$name.log
    [[ -d $committed ]] ||
      die "$name has no seed corpus: run ./build.sh fuzz-seeds and commit fuzz/corpus/$name/"
    rm -rf "$work" "$artifacts"
    mkdir -p "$work" "$artifacts"
    "$binary" -mp_write_seeds="$work" >/dev/null || die "$name: its seeds do not run cleanly"
    local seed_count
    seed_count=$(find "$committed" "$work" -type f -printf '%f\n' | sort -u | wc -l)
    say "Fuzzing $name for ${seconds}s from $seed_count seed inputs"
    # -timeout: one input running for 25 s is a hang; -rss_limit_mb: ASan's overhead
    # included, 2 GB is far above what loads may allocate for any input.
    if ! "$binary" -max_total_time="$seconds" -timeout=25 -rss_limit_mb=2048 \
         -print_final_stats=1 -artifact_prefix="$artifacts" "$work" "$committed" >"$log" 2>&1; then
      tail -n 60 "$log" >&2
      die "$name found a crash, leak, UB or unexpected exception: input in $artifacts, log in $log"
    fi
    local executions corpus coverage
    executions=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
    corpus=$(find "$committed" "$work" -type f -printf '%f\n' | sort -u | wc -l)
    coverage=$(grep -o 'cov: [0-9]*' "$log" | tail -n 1 | grep -o '[0-9]*' || echo 0)
    printf '{"source": "fuzz", "target": "%s", "seconds": %s, "executions": %s, "seed_inputs": %s, "corpus_inputs": %s, "coverage_edges": %s}\n' \
      "$name" "$seconds" "${executions:-0}" "$seed_count" "$corpus" "${coverage:-0}" >>"$figures"
    echo "$name: ${executions:-?} inputs in ${seconds}s, no finding; corpus $seed_count -> $corpus inputs, $coverage edges"
  done
}

# Rewrites fuzz/corpus/<target>/ from each target's seed generator (commit the result).
cmd_fuzz_seeds() {
  build_fuzzers
  local name
  for name in $FUZZERS; do
    rm -rf "$ROOT/fuzz/corpus/$name"
    "$FUZZ_BUILD_DIR/fuzz/$name" -mp_write_seeds="$ROOT/fuzz/corpus/$name" ||
      die "$name: its seeds do not run cleanly"
  done
}

# The API reference (docs/api/Doxyfile). Doxygen's warnings, without line numbers, must
# all be in docs/api/undocumented.txt: a new public name without a comment fails.
cmd_docs() {
  ensure_packages "${DOCS_PACKAGES[@]}"
  rm -rf "$ROOT/build-docs"
  mkdir -p "$ROOT/build-docs"
  say "doxygen docs/api/Doxyfile"
  (cd "$ROOT" && doxygen docs/api/Doxyfile) || die "doxygen failed"
  local found=$ROOT/build-docs/warnings.sorted real_root
  # Doxygen names files by their real path: strip that too when the clone's path has a
  # symbolic link in it.
  real_root=$(cd "$ROOT" && pwd -P)
  sed -e "s|^$ROOT/||" -e "s|^$real_root/||" -e 's|^\([^:]*\):[0-9]*: |\1: |' \
    "$ROOT/build-docs/warnings.txt" |
    LC_ALL=C sort -u >"$found"
  local new
  new=$(LC_ALL=C comm -23 "$found" <(LC_ALL=C sort -u "$ROOT/docs/api/undocumented.txt"))
  if [[ -n $new ]]; then
    printf '%s\n' "$new" >&2
    die "docs: the warnings above are new: document these public names (see docs/api/Doxyfile)"
  fi
  local fixed
  fixed=$(LC_ALL=C comm -13 "$found" <(LC_ALL=C sort -u "$ROOT/docs/api/undocumented.txt") | wc -l)
  [[ $fixed -eq 0 ]] || echo "docs: $fixed entries of docs/api/undocumented.txt are fixed: remove them"
  echo "docs: build-docs/html/index.html ($(wc -l <"$found") names still to document)"
}

# Regenerates README's Reliability section from the figures the test suites and the
# fuzzers recorded (tests/reliability_report.py), and prints it.
cmd_reliability() {
  if ! command -v python3 >/dev/null; then
    ensure_packages python3
  fi
  python3 "$ROOT/tests/reliability_report.py" --readme "$ROOT/README.md" \
    "$BUILD_DIR" "$ASAN_BUILD_DIR" "$FUZZ_BUILD_DIR" || die "the reliability report failed"
}

main() {
  [[ $# -ge 1 ]] || usage 2
  local command=$1
  shift
  case $command in
    demo) cmd_demo "$@" ;;
    test) cmd_test "$@" ;;
    test-busy) cmd_test_busy "$@" ;;
    lint) cmd_lint ;;
    docs) cmd_docs ;;
    sanitize) cmd_sanitize "$@" ;;
    test-clang) cmd_test_clang "$@" ;;
    bench) cmd_bench "$@" ;;
    bench-mpi) cmd_bench_mpi "$@" ;;
    fuzz) cmd_fuzz "$@" ;;
    fuzz-seeds) cmd_fuzz_seeds "$@" ;;
    reliability) cmd_reliability "$@" ;;
    -h | --help | help) usage ;;
    *)
      echo "build.sh: unknown command '$command'" >&2
      usage 2
      ;;
  esac
}

main "$@"
