#!/usr/bin/env python3
"""mp-map beside the tools it replaces: whole commands timed on the same input.

    python3 bench/mp_map_bench.py --mp-map PATH [--runs 3] [--quick]

Rows, each printed as JSON lines in mp_bench.py's schema, one per tool:

  mp_map_square_1m     `mp-map square` over 1,000,000 lines (stdin from a file,
                       stdout to a file) against a Python one-liner that does the
                       same with multiprocessing.Pool.map (processes = CPUs).
  mp_map_exec_true_1k  `mp-map -j 2 --exec true` over 1,000 items against
                       `xargs -P 2 -n 1 true` and GNU `parallel -j 2 true`.
  mp_map_long_line     `mp-map sha256` over one line of 40 MB and of 100 MB
                       (--quick: 8 MB) arriving through a pipe, against
                       `sha256sum`: reading a line costs what reading its bytes costs.
                       Its peak resident memory (the largest of the processes; about
                       two copies of the line for mp-map) goes to stderr. (The shell
                       that runs the pipeline is forked from this script and counts
                       its size, some 30 MB: values near that are the floor.)
  mp_map_start_jobs    `mp-map -j N --chunksize 1 square` over N lines (so that all
                       N workers start), for N = 256 and 1024, the most -j takes
                       (--quick: 64, 256).

"impl" names the tool: mp-map, cpython-pool-oneliner, xargs, gnu-parallel. "value"
is the median wall time of --runs runs, in seconds; the outputs of mp-map and of
the Python one-liner are compared (they must be equal). A tool that is not
installed is skipped with a note on stderr. Standard library only.
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

PYTHON_ONELINER = """
import sys, multiprocessing
def square(x): return x * x
if __name__ == "__main__":
    with multiprocessing.Pool() as p:
        sys.stdout.write("".join(f"{r}\\n" for r in p.map(square, map(int, sys.stdin))))
"""


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def emit(impl, bench, params, runs):
    value = statistics.median(runs)
    print(json.dumps({"impl": impl, "bench": bench, "params": params, "metric": "wall_s",
                      "value": float(f"{value:.6g}"), "unit": "s",
                      "runs": [float(f"{r:.6g}") for r in runs]}), flush=True)


def time_command(argv, stdin_path, stdout_path, runs, peaks=None):
    """Wall times of `runs` runs; with a list `peaks`, appends each run's peak resident
    memory in MB (the largest of the command and the processes it waited for)."""
    times = []
    for _ in range(runs):
        with open(stdin_path, "rb") as stdin, open(stdout_path, "wb") as stdout, \
                tempfile.TemporaryFile() as stderr:
            start = time.perf_counter()
            child = subprocess.Popen(argv, stdin=stdin, stdout=stdout, stderr=stderr)
            _, status, usage = os.wait4(child.pid, 0)
            times.append(time.perf_counter() - start)
            child.returncode = os.waitstatus_to_exitcode(status)
            if peaks is not None:
                peaks.append(usage.ru_maxrss / 1024)
            if child.returncode != 0:
                stderr.seek(0)
                raise RuntimeError(f"{argv[0]} failed ({child.returncode}): "
                                   f"{stderr.read().decode()[:300]}")
    return times


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mp-map", required=True)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    failed = False
    with tempfile.TemporaryDirectory(prefix="mp_map_bench_") as tmp:
        lines = 200_000 if args.quick else 1_000_000
        numbers = os.path.join(tmp, "numbers.txt")
        with open(numbers, "w") as f:
            f.write("".join(f"{i}\n" for i in range(lines)))
        script = os.path.join(tmp, "oneliner.py")
        with open(script, "w") as f:
            f.write(PYTHON_ONELINER)
        out_mp, out_py = os.path.join(tmp, "mp.out"), os.path.join(tmp, "py.out")
        params = {"N": lines, "processes": os.cpu_count()}
        try:
            log(f"mp_map_square: mp-map over {lines} lines")
            emit("mp-map", "mp_map_square_1m", params,
                 time_command([args.mp_map, "--no-progress", "square"], numbers, out_mp,
                              args.runs))
            log(f"mp_map_square: the Python one-liner over {lines} lines")
            emit("cpython-pool-oneliner", "mp_map_square_1m", params,
                 time_command([sys.executable, script], numbers, out_py, args.runs))
            with open(out_mp, "rb") as a, open(out_py, "rb") as b:
                if a.read() != b.read():
                    raise RuntimeError("mp-map and Python printed different results")
        except Exception as e:  # noqa: BLE001 - report and go on with the next row
            log(f"mp_map_square_1m FAILED: {e}")
            failed = True

        items = 200 if args.quick else 1_000
        ids = os.path.join(tmp, "ids.txt")
        with open(ids, "w") as f:
            f.write("".join(f"{i}\n" for i in range(items)))
        params = {"N": items, "jobs": 2}
        tools = [
            ("mp-map", [args.mp_map, "--no-progress", "-j", "2", "--exec", "true"]),
            ("xargs", ["xargs", "-P", "2", "-n", "1", "true"]),
            ("gnu-parallel", ["parallel", "--will-cite", "-j", "2", "true"]),
        ]
        for impl, argv in tools:
            if impl != "mp-map" and shutil.which(argv[0]) is None:
                log(f"mp_map_exec_true_1k: {argv[0]} is not installed, skipped")
                continue
            try:
                log(f"mp_map_exec_true_1k: {impl} over {items} items")
                emit(impl, "mp_map_exec_true_1k", params,
                     time_command(argv, ids, os.devnull, args.runs))
            except Exception as e:  # noqa: BLE001
                log(f"mp_map_exec_true_1k ({impl}) FAILED: {e}")
                failed = True

        for megabytes in ([8] if args.quick else [40, 100]):
            line = os.path.join(tmp, "line.txt")
            with open(line, "wb") as f:
                f.write(b"a" * (megabytes * 1_000_000) + b"\n")
            params = {"MB": megabytes}
            for impl, command in [("mp-map", f"cat '{line}' | '{args.mp_map}' --no-progress sha256"),
                                  ("sha256sum", f"cat '{line}' | sha256sum")]:
                try:
                    log(f"mp_map_long_line: {impl} over a {megabytes} MB line")
                    peaks = []
                    emit(impl, "mp_map_long_line", params,
                         time_command(["sh", "-c", command], os.devnull, os.devnull, args.runs,
                                      peaks))
                    log(f"mp_map_long_line: {impl} peak resident memory "
                        f"{statistics.median(peaks):.0f} MB (median of {len(peaks)})")
                except Exception as e:  # noqa: BLE001
                    log(f"mp_map_long_line ({impl}) FAILED: {e}")
                    failed = True
            os.remove(line)

        for jobs in ([64, 256] if args.quick else [256, 1024]):
            few = os.path.join(tmp, "few.txt")
            with open(few, "w") as f:
                f.write("".join(f"{i}\n" for i in range(jobs)))
            try:
                log(f"mp_map_start_jobs: mp-map -j {jobs}")
                emit("mp-map", "mp_map_start_jobs", {"jobs": jobs},
                     time_command([args.mp_map, "--no-progress", "-j", str(jobs), "--chunksize",
                                   "1", "square"], few, os.devnull, args.runs))
            except Exception as e:  # noqa: BLE001
                log(f"mp_map_start_jobs (-j {jobs}) FAILED: {e}")
                failed = True
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
