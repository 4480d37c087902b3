#!/usr/bin/env bash
# The suite-wide leak check, run by ctest around all the other tests (a fixture):
#   leak_check.sh snapshot STATE_DIR           before: lists /dev/shm, empties the figures
#   leak_check.sh verify STATE_DIR BUILD_DIR   after: fails if a process whose executable
#                                              lives in BUILD_DIR (mp_tests, mp-demo, the
#                                              test programs) is still running, or if
#                                              /dev/shm holds an entry it did not before
# verify appends its figures to STATE_DIR/figures.jsonl (README's Reliability section).
# Both run with no other test beside them (RUN_SERIAL). Another mp suite running at
# the same time on the same machine, outside this build, could add to /dev/shm: run
# it alone (CI does).
set -euo pipefail

command=$1
state=$2
mkdir -p "$state"

shm_listing() { find /dev/shm -mindepth 1 -maxdepth 1 -printf '%f\n' 2>/dev/null | sort; }

case $command in
  snapshot)
    shm_listing >"$state/shm-before.txt"
    : >"$state/figures.jsonl"
    echo "leak_check: $(wc -l <"$state/shm-before.txt") entries in /dev/shm before the suite"
    ;;
  verify)
    build_dir=$(cd "$3" && pwd -P)
    [[ -f $state/shm-before.txt ]] || { echo "leak_check: no snapshot in $state" >&2; exit 1; }
    status=0
    # Processes: every live process whose executable is one of this build's (zombies have
    # no exe link and are not counted: they hold nothing but a pid). Processes on their
    # way out (a daemon child killed as its test ended, the shared-memory watchdog of a
    # tree that just ended) get 5 s to go, as do the segments such a watchdog removes.
    scan_processes() {
      checked=0
      strays=()
      for proc in /proc/[0-9]*; do
        pid=${proc#/proc/}
        [[ $pid == "$$" ]] && continue
        exe=$(readlink "$proc/exe" 2>/dev/null) || continue
        checked=$((checked + 1))
        if [[ $exe == "$build_dir"/* ]]; then
          strays+=("$pid $exe ($(tr '\0' ' ' <"$proc/cmdline" 2>/dev/null | cut -c1-160))")
        fi
      done
    }
    for _ in $(seq 50); do
      scan_processes
      shm_listing >"$state/shm-after.txt"
      new_shm=$(comm -13 "$state/shm-before.txt" "$state/shm-after.txt")
      [[ ${#strays[@]} -eq 0 && -z $new_shm ]] && break
      sleep 0.1
    done
    if [[ ${#strays[@]} -gt 0 ]]; then
      echo "leak_check: ${#strays[@]} process(es) of this build outlived the suite:" >&2
      printf '  %s\n' "${strays[@]}" >&2
      status=1
    fi
    new_shm_count=0
    if [[ -n $new_shm ]]; then
      new_shm_count=$(wc -l <<<"$new_shm")
      echo "leak_check: $new_shm_count new entries in /dev/shm after the suite:" >&2
      sed 's/^/  /' <<<"$new_shm" >&2
      status=1
    fi
    printf '{"source": "leak_check", "figure": "%s", "value": %s}\n' \
      processes_checked "$checked" stray_processes "${#strays[@]}" \
      new_dev_shm_entries "$new_shm_count" >>"$state/figures.jsonl"
    echo "leak_check: $checked processes checked, ${#strays[@]} stray; $new_shm_count new /dev/shm entries"
    exit "$status"
    ;;
  *)
    echo "usage: leak_check.sh snapshot STATE_DIR | verify STATE_DIR BUILD_DIR" >&2
    exit 2
    ;;
esac
