#!/usr/bin/env bash
# The one entry point for building mp, for people (README's quick start) and for CI.
#
#   ./build.sh demo [ARGS...]   build mp-demo and run it (default ARGS: process)
#   ./build.sh test [ARGS...]   build everything and run the whole test suite
#                               (ARGS go to ctest, e.g. -R process or -L packaging)
#   ./build.sh sanitize [ARGS...]  the same with ASan+UBSan, in build-asan/, without
#                               the packaging tests
#   ./build.sh bench [ARGS...]  run the benchmark side by side with CPython
#
# On Debian (bookworm) it first installs the packages it needs with apt-get, if any is
# missing, using sudo when not root. Environment:
#   MP_BUILD_TYPE=...   CMake build type of build/ (default RelWithDebInfo)
#   MP_SKIP_APT=1       never run apt-get (other distributions, or no root)
#   MP_JOBS=N           parallel build jobs (default: all cores)
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")"
readonly ROOT=$PWD
readonly BUILD_DIR=$ROOT/build
readonly ASAN_BUILD_DIR=$ROOT/build-asan
readonly BUILD_TYPE=${MP_BUILD_TYPE:-RelWithDebInfo}
JOBS=${MP_JOBS:-$(nproc 2>/dev/null || echo 2)}
readonly JOBS
readonly PACKAGES=(g++ cmake make libboost1.81-dev libcereal-dev libgtest-dev googletest
                   pkg-config)

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

# Installs the missing Debian packages; does nothing (and needs no root) when all are
# installed already.
ensure_packages() {
  if [[ ${MP_SKIP_APT:-0} == 1 ]]; then
    return
  fi
  if ! command -v dpkg-query >/dev/null; then
    echo "build.sh: not a Debian system; make sure these are installed: ${PACKAGES[*]}" >&2
    return
  fi
  local missing=() package
  for package in "${PACKAGES[@]}"; do
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
  apt-get update && apt-get install -y --no-install-recommends ${PACKAGES[*]}"
    as_root=(sudo)
  fi
  say "Installing Debian packages: ${missing[*]}"
  # Quiet, but on failure show apt's output.
  local log
  log=$(mktemp "${TMPDIR:-/tmp}/mp-apt.XXXXXX")
  if ! "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update >"$log" 2>&1 ||
     ! "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
         --no-install-recommends "${PACKAGES[@]}" >>"$log" 2>&1; then
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

cmd_sanitize() {
  ensure_packages
  configure "$ASAN_BUILD_DIR" -DMP_SANITIZE=ON
  build "$ASAN_BUILD_DIR"
  # The packaging tests install and rebuild the library: nothing for the sanitizers.
  UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1} \
    run_tests "$ASAN_BUILD_DIR" --label-exclude packaging "$@"
}

# Builds mp-bench in Release (build-release/) and runs bench/compare.py: mp-bench and
# the CPython script, pinned to the same CPUs, side by side; the tables go to stdout and
# into README.md. ARGS go to compare.py (--quick, --only NAME[,NAME], --runs N, ...).
cmd_bench() {
  ensure_packages
  command -v python3 >/dev/null || die "python3 is needed for the CPython side"
  local dir=$ROOT/build-release
  say "Configuring $dir (Release)"
  cmake -S "$ROOT" -B "$dir" -DCMAKE_BUILD_TYPE=Release -DMP_BUILD_TESTS=OFF \
    -DMP_BUILD_EXAMPLES=OFF || die "cmake could not configure $dir (see above)"
  build "$dir" mp-bench
  say "Running mp-bench and CPython side by side"
  python3 "$ROOT/bench/compare.py" --mp-bench "$dir/tools/mp-bench/mp-bench" --update-readme "$@"
}

main() {
  [[ $# -ge 1 ]] || usage 2
  local command=$1
  shift
  case $command in
    demo) cmd_demo "$@" ;;
    test) cmd_test "$@" ;;
    sanitize) cmd_sanitize "$@" ;;
    bench) cmd_bench "$@" ;;
    -h | --help | help) usage ;;
    *)
      echo "build.sh: unknown command '$command'" >&2
      usage 2
      ;;
  esac
}

main "$@"
