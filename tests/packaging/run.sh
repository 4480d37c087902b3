#!/usr/bin/env bash
# Packaging tests: does mp work for someone who installs it, or vendors its sources?
#
#   tests/packaging/run.sh BUILD_DIR [STEP...]
#
# BUILD_DIR is a configured and built mp tree. The steps (default: all, in order):
#   install           cmake --install BUILD_DIR into a fresh prefix; check what it installed
#   headers           every installed header compiles on its own and without warnings, and
#                     says "mp needs C++20" first when compiled as C++17
#   find_package      build and run tests/packaging/find_package against the prefix
#   examples          build the installed examples (share/mp/examples) against the prefix:
#                     the three real-world ones, each run once
#   pkg-config        compile the same main.cpp with `pkg-config --cflags --libs mp` (and
#                     with --static), no -std flag of its own, and run it
#   add_subdirectory  build and run tests/packaging/add_subdirectory against the sources
#   cross-compiler    build tests/packaging/cross_compiler with the other compiler (clang++
#                     for a g++-built mp, g++ for a clang++-built one; $MP_OTHER_CXX
#                     overrides) against the prefix and run it; exits 77 (skipped) if that
#                     compiler is not installed
#   shared            build mp from the sources as a shared library (BUILD_SHARED_LIBS=ON,
#                     library only), install it into a second prefix, check that libmp.so
#                     exports mp's API and nothing of its internals, then build and run
#                     tests/packaging/find_package and tests/packaging/shared against it
#   options           configure with an option combination that cannot build
#                     (MP_BUILD_TESTS=ON, MP_BUILD_TOOLS=OFF): refused by name
# The steps after install use the prefix that install left in the work directory,
# $MP_PACKAGING_WORK (default: a temporary directory, removed at the end). ctest runs
# each step as its own test (tests/packaging/CMakeLists.txt).
set -euo pipefail

usage() {
  echo "usage: $0 BUILD_DIR [install|headers|find_package|examples|pkg-config|add_subdirectory|cross-compiler|shared|options]..." >&2
  exit 2
}
[[ $# -ge 1 && -d $1 ]] || usage

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
source_dir=$(cd "$here/../.." && pwd)
build_dir=$(cd "$1" && pwd)
shift
steps=("$@")
[[ ${#steps[@]} -gt 0 ]] || steps=(install headers find_package examples pkg-config add_subdirectory cross-compiler shared options)

[[ -f $build_dir/CMakeCache.txt ]] || { echo "$build_dir is not a configured build tree" >&2; exit 2; }
cache_value() { sed -n "s/^$1:[A-Z]*=//p" "$build_dir/CMakeCache.txt" | head -n 1; }
cxx=$(cache_value CMAKE_CXX_COMPILER)
generator=$(cache_value CMAKE_GENERATOR)
# ctest passes the configuration it runs (multi-config generators); else the build type.
config=${MP_PACKAGING_CONFIG:-$(cache_value CMAKE_BUILD_TYPE)}
config=${config:-RelWithDebInfo}
jobs=${MP_PACKAGING_JOBS:-$(nproc)}

work=${MP_PACKAGING_WORK:-}
if [[ -z $work ]]; then
  work=$(mktemp -d "${TMPDIR:-/tmp}/mp-packaging.XXXXXX")
  trap 'rm -rf "$work"' EXIT
fi
mkdir -p "$work"
work=$(cd "$work" && pwd)
prefix=$work/prefix

say() { echo "== packaging: $*"; }
die() { echo "== packaging: FAILED: $*" >&2; exit 1; }

# Configures, builds and runs one consumer project. Extra arguments go to cmake.
build_and_run_consumer() {
  local name=$1 consumer_source=$2
  shift 2
  local consumer_build=$work/$name
  rm -rf "$consumer_build"
  say "$name: configure"
  cmake -S "$consumer_source" -B "$consumer_build" -G "$generator" \
    -DCMAKE_CXX_COMPILER="$cxx" -DCMAKE_BUILD_TYPE="$config" -Werror=dev "$@"
  say "$name: build"
  cmake --build "$consumer_build" --config "$config" --parallel "$jobs"
  local binary
  binary=$(find "$consumer_build" -type f -name consumer -perm -u+x | head -n 1)
  [[ -n $binary ]] || die "$name: no consumer binary was built"
  say "$name: run $binary"
  "$binary" || die "$name: the consumer exited with $?"
}

require_prefix() {
  [[ -f $prefix/.installed ]] || die "no installed mp in $prefix; run the install step first"
}

step_install() {
  say "install $build_dir into $prefix"
  rm -rf "$prefix"
  cmake --install "$build_dir" --prefix "$prefix" --config "$config"
  # Every public header (detail/ included), the library and the package files.
  local missing=() header
  while IFS= read -r header; do
    [[ -f $prefix/include/mp/$header ]] || missing+=("include/mp/$header")
  done < <(cd "$source_dir/lib/include/mp" && find . -type f \( -name '*.hpp' -o -name '*.h' \) | sed 's|^\./||')
  for pattern in 'libmp.*' mpConfig.cmake mpConfigVersion.cmake mpTargets.cmake mp.pc; do
    [[ -n $(find "$prefix" -name "$pattern" -print -quit) ]] || missing+=("$pattern")
  done
  [[ ${#missing[@]} -eq 0 ]] || die "not installed: ${missing[*]}"
  # The package files may name the prefix, but never the build or source tree.
  local file line leaks=()
  while IFS= read -r file; do
    while IFS= read -r line; do
      line=${line//"$prefix"/}
      if [[ $line == *"$source_dir/"* || $line == *"$build_dir"* ]]; then
        leaks+=("${file#"$prefix"/}: $line")
      fi
    done <"$file"
  done < <(find "$prefix" -type f \( -name '*.cmake' -o -name '*.pc' \))
  [[ ${#leaks[@]} -eq 0 ]] || die "installed files refer to the build or source tree:$(printf '\n   %s' "${leaks[@]}")"
  touch "$prefix/.installed"
  say "installed:"
  (cd "$prefix" && find . -type f ! -name .installed | sort | sed 's|^\./|   |')
}

step_headers() {
  require_prefix
  # Users who include with -I (pkg-config, add_subdirectory) see warnings from mp's
  # headers, and some build with -Werror: the headers must be clean under -Wall -Wextra.
  say "headers: each installed header compiles on its own, without warnings"
  local header failed=0
  local -a headers
  mapfile -t headers < <(cd "$prefix/include" && find mp -name '*.hpp' | sort)
  for header in "${headers[@]}"; do
    if ! printf '#include <%s>\n' "$header" |
      "$cxx" -std=c++20 -fsyntax-only -Wall -Wextra -Werror -x c++ -I"$prefix/include" - \
        2>"$work/header.log"; then
      echo "   $header does not compile on its own, or warns:" >&2
      cat "$work/header.log" >&2
      failed=1
    fi
  done
  [[ $failed -eq 0 ]] || die "some installed headers are not self-contained or not warning-free"
  # Before C++20 the first error must say so, not come from deep inside a detail header
  # (-Wfatal-errors: only the first matters here).
  local first
  for header in "${headers[@]}"; do
    first=$(printf '#include <%s>\n' "$header" |
      "$cxx" -std=c++17 -fsyntax-only -Wfatal-errors -x c++ -I"$prefix/include" - 2>&1 |
      grep -m 1 'error:' || true)
    if [[ $first != *"mp needs C++20"* ]]; then
      echo "   $header as C++17: first error is not \"mp needs C++20\": ${first:-none}" >&2
      failed=1
    fi
  done
  [[ $failed -eq 0 ]] || die "some installed headers do not stop early without C++20"
  say "headers: ${#headers[@]} ok"
}

step_find_package() {
  require_prefix
  # Boost hidden: using mp must not need it (only mp-bench does).
  build_and_run_consumer find_package "$here/find_package" \
    -DCMAKE_PREFIX_PATH="$prefix" -DMP_EXPECTED_PREFIX="$prefix" \
    -DCMAKE_DISABLE_FIND_PACKAGE_Boost=ON
}

step_examples() {
  require_prefix
  # The installed examples build against the prefix; three of them (the real-world ones)
  # are built and run, to keep this cheap.
  local examples_source
  examples_source=$(find "$prefix" -path '*/mp/examples/CMakeLists.txt' -print -quit)
  [[ -n $examples_source ]] || die "examples: share/mp/examples/CMakeLists.txt not installed"
  examples_source=$(dirname "$examples_source")
  local examples_build=$work/examples
  rm -rf "$examples_build"
  say "examples: configure $examples_source"
  cmake -S "$examples_source" -B "$examples_build" -G "$generator" \
    -DCMAKE_CXX_COMPILER="$cxx" -DCMAKE_BUILD_TYPE="$config" -Werror=dev \
    -DCMAKE_PREFIX_PATH="$prefix" -DMP_EXAMPLES="word_count;pipeline;heat"
  cmake --build "$examples_build" --config "$config" --parallel "$jobs"
  local name binary
  for name in word_count pipeline heat; do
    binary=$(find "$examples_build" -type f -name "example_$name" -perm -u+x | head -n 1)
    [[ -n $binary ]] || die "examples: example_$name was not built"
    say "examples: run $binary"
    "$binary" >/dev/null || die "examples: example_$name exited with $?"
  done
}

step_pkg_config() {
  require_prefix
  command -v pkg-config >/dev/null || die "pkg-config is not installed"
  local pc
  pc=$(find "$prefix" -name mp.pc -print -quit)
  export PKG_CONFIG_PATH=${pc%/*}
  say "pkg-config: PKG_CONFIG_PATH=$PKG_CONFIG_PATH"
  pkg-config --exists --print-errors mp || die "pkg-config cannot use mp.pc"
  if pkg-config --help 2>&1 | grep -q -- --validate; then # pkgconf
    pkg-config --validate mp || die "mp.pc is not valid"
  fi
  local version flags static_flags
  version=$(pkg-config --modversion mp)
  flags=$(pkg-config --cflags --libs mp)
  static_flags=$(pkg-config --static --cflags --libs mp)
  say "pkg-config: mp $version: $flags"
  say "pkg-config --static: $static_flags"
  [[ $flags == *"-I$prefix/include"* ]] || die "pkg-config --cflags does not point into $prefix"
  # The compiler's default language is older than C++20: Cflags must carry the flag.
  [[ " $(pkg-config --cflags mp) " == *" -std=c++20 "* ]] || die "pkg-config --cflags lacks -std=c++20"
  # The thread library: always with --static; without it too when libmp is static
  # (pkg-config --libs omits Libs.private, and a static libmp needs it at link time).
  [[ " $static_flags " == *" -pthread "* ]] || die "pkg-config --static --libs lacks -pthread"
  if [[ -n $(find "$prefix" -name libmp.a -print -quit) ]]; then
    [[ " $flags " == *" -pthread "* ]] || die "libmp is static, but pkg-config --libs lacks -pthread"
  fi
  mkdir -p "$work/pkg-config"
  local kind kind_flags
  for kind in plain static; do
    kind_flags=$flags
    [[ $kind == static ]] && kind_flags=$static_flags
    # No -std here: mp.pc brings it. The rpath matters only for a shared libmp in a prefix
    # the loader does not search.
    # shellcheck disable=SC2086 # the flags are meant to split
    "$cxx" -O1 -o "$work/pkg-config/consumer-$kind" "$here/find_package/main.cpp" $kind_flags \
      -Wl,-rpath,"$(pkg-config --variable=libdir mp)"
    say "pkg-config: run the consumer built with the $kind flags"
    "$work/pkg-config/consumer-$kind" || die "pkg-config: the $kind consumer exited with $?"
  done
}

step_add_subdirectory() {
  # Boost hidden: building the library must not need it (only mp-bench does).
  build_and_run_consumer add_subdirectory "$here/add_subdirectory" \
    -DMP_SOURCE_DIR="$source_dir" -DCMAKE_DISABLE_FIND_PACKAGE_Boost=ON
}

# Option combinations that cannot work stop at configure time with a message that names
# the options, not with errors about missing targets deep in tests/.
step_options() {
  say "options: MP_BUILD_TESTS=ON with MP_BUILD_TOOLS=OFF is refused by name"
  local log=$work/options.log
  if cmake -S "$source_dir" -B "$work/options-build" -DMP_BUILD_TOOLS=OFF -DMP_BUILD_TESTS=ON \
    >"$log" 2>&1; then
    die "configure with MP_BUILD_TOOLS=OFF MP_BUILD_TESTS=ON succeeded; it cannot build"
  fi
  grep -q 'with MP_BUILD_TOOLS=OFF' "$log" || { cat "$log" >&2; die "no message naming the options"; }
  say "options: ok"
}

# Pickles cross between the library's code and the program's: a type must be identified
# the same way whichever compiler built each side.
step_cross_compiler() {
  require_prefix
  local other=${MP_OTHER_CXX:-}
  if [[ -z $other ]]; then
    if "$cxx" --version 2>/dev/null | grep -qi clang; then other=g++; else other=clang++; fi
  fi
  if ! command -v "$other" >/dev/null; then
    say "cross-compiler: SKIPPED: $other is not installed"
    exit 77
  fi
  local pc flags
  pc=$(find "$prefix" -name mp.pc -print -quit)
  export PKG_CONFIG_PATH=${pc%/*}
  flags=$(pkg-config --cflags --libs mp)
  mkdir -p "$work/cross-compiler"
  say "cross-compiler: $other builds a program against the mp that $cxx built"
  # shellcheck disable=SC2086 # the flags are meant to split
  "$other" -O1 -Wall -Wextra -Werror -o "$work/cross-compiler/consumer" \
    "$here/cross_compiler/main.cpp" $flags -Wl,-rpath,"$(pkg-config --variable=libdir mp)"
  say "cross-compiler: run"
  "$work/cross-compiler/consumer" || die "cross-compiler: the consumer exited with $?"
}

# A shared libmp with hidden visibility: what MP_API marks must be enough for a program.
step_shared() {
  local shared_build=$work/shared-build shared_prefix=$work/shared-prefix
  local launcher
  launcher=$(cache_value CMAKE_CXX_COMPILER_LAUNCHER)
  rm -rf "$shared_build" "$shared_prefix"
  say "shared: configure and build mp as a shared library"
  cmake -S "$source_dir" -B "$shared_build" -G "$generator" -DCMAKE_CXX_COMPILER="$cxx" \
    ${launcher:+-DCMAKE_CXX_COMPILER_LAUNCHER="$launcher"} -DCMAKE_BUILD_TYPE="$config" \
    -DBUILD_SHARED_LIBS=ON -DMP_INSTALL=ON -DMP_BUILD_TESTS=OFF -DMP_BUILD_TOOLS=OFF \
    -DMP_BUILD_EXAMPLES=OFF -DCMAKE_DISABLE_FIND_PACKAGE_Boost=ON -Werror=dev
  cmake --build "$shared_build" --config "$config" --parallel "$jobs"
  cmake --install "$shared_build" --prefix "$shared_prefix" --config "$config"
  local library
  library=$(find "$shared_prefix" -name 'libmp.so.*' -type f -print -quit)
  [[ -n $library ]] || die "shared: no libmp.so installed"
  [[ -z $(find "$shared_prefix" -name 'libmp.a' -print -quit) ]] || die "shared: libmp.a installed too"
  # Hidden visibility: the exported symbols are mp's API, none of lib/src's internals
  # (mp::posix but the three that libmp_listener uses and the one libmp_mpi uses,
  # anonymous namespaces, the start methods' launchers, the heap's arenas).
  local exported internal
  exported=$(nm -D -C --defined-only "$library" | grep -c ' mp::' || true)
  internal=$(nm -D -C --defined-only "$library" |
    grep -E ' (mp::posix::|mp::\(anonymous namespace\)|mp::detail::(launch_[a-z]+|forkserver_|child_main|Arena))' |
    grep -v -E ' mp::posix::(unique_fd::|last_error\(|random_bytes\(|above_stdio\()' || true)
  say "shared: $library exports $exported symbols of mp"
  [[ -z $internal ]] || die "shared: libmp.so exports internals:$(printf '\n   %s' "$internal")"
  [[ $exported -gt 50 ]] || die "shared: libmp.so exports only $exported symbols of mp"
  # pkg-config: a shared libmp needs its system libraries only privately.
  local static_flags
  static_flags=$(PKG_CONFIG_PATH=${library%/*}/pkgconfig pkg-config --static --libs mp)
  [[ " $static_flags " == *" -pthread "* ]] || die "shared: pkg-config --static --libs lacks -pthread"
  build_and_run_consumer shared-find_package "$here/find_package" \
    -DCMAKE_PREFIX_PATH="$shared_prefix" -DMP_EXPECTED_PREFIX="$shared_prefix"
  build_and_run_consumer shared-pool "$here/shared" -DCMAKE_PREFIX_PATH="$shared_prefix"
}

for step in "${steps[@]}"; do
  case $step in
    install) step_install ;;
    headers) step_headers ;;
    find_package) step_find_package ;;
    examples) step_examples ;;
    pkg-config) step_pkg_config ;;
    add_subdirectory) step_add_subdirectory ;;
    cross-compiler) step_cross_compiler ;;
    shared) step_shared ;;
    options) step_options ;;
    *) usage ;;
  esac
  say "$step: passed"
done
