#!/usr/bin/env python3
"""Runs mp-bench and the CPython reference side by side and prints the comparison.

    python3 bench/compare.py [--mp-bench PATH] [--quick] [--only NAME[,NAME]]
                             [--runs N] [--start-method M] [--timeout S]
                             [--cpus 0,1] [--repeat K] [--all-python] [--update-readme]
                             [--raw-out FILE] [--from-raw FILE]
                             [--busy K [--quiet-raw FILE]]

Both programs run in this one invocation, one after the other, pinned to the
same CPUs (os.sched_setaffinity, inherited by both and their children). Each
prints JSON lines (schema: bench/python/mp_bench.py); this script prints three
markdown tables:

  1. mp vs CPython per (benchmark, metric). "mp vs CPython" is oriented so that
     bigger means mp is better: cpython/mp for times, mp/cpython for rates.
  2. The limit probes of mp-bench ("impl": "limit", rows probe_*): what the
     machine allows with raw system calls, beside the mp (and CPython) rows they
     bound. "mp / floor" is how many times the floor mp costs (1.0 is the
     machine's limit): mp/probe for times, probe/mp for rates.
  3. The peers of mp-bench ("impl": "peer", rows peer_*): another library (Boost)
     doing the work of the mp rows beside them; "mp vs peer" as "mp vs CPython".

followed by the performance goals of the project and whether they were met.
Both programs run --repeat times (default 3, alternating) and each row keeps
its best median: other work on a shared machine only ever slows runs down.
By default the CPython script runs only the rows mp-bench has (--all-python:
all of them). With --update-readme the tables, the date and a description of
the machine go between <!-- performance:begin --> and <!-- performance:end -->
in README.md (bench/RESULTS.md if README.md has no such markers); not with
--only, whose partial table would replace the full one.

With --busy K, K busy-loop processes per CPU (each pinned to one of the CPUs both
programs use) run beside every invocation, the same for both programs, started and
stopped here: a busy machine, as parallel programs make it. Its tables and goals go
between <!-- performance-busy:begin --> and <!-- performance-busy:end --> (added after
the quiet tables if missing); --quiet-raw names the saved JSON lines (--raw-out) of a
quiet run, against which the rows of BUSY_VS_QUIET are held. The limit probes do not run
then: they are the floor of a quiet machine.

Exit status 1 if either program failed (the table still shows what ran), 2 if
a row of mp-bench and the CPython row of the same name would measure different
things: different sizes (mp-bench --sizes against the script's BENCHMARKS, checked
before anything runs) or different "params" in their lines (sizes, payloads,
processes...). Then no table is printed, since its ratios would compare unlike work.
Standard library only.
"""

import argparse
import datetime
import json
import os
import platform
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PYTHON_SCRIPT = ROOT / "bench" / "python" / "mp_bench.py"
BEGIN, END = "<!-- performance:begin -->", "<!-- performance:end -->"
BUSY_BEGIN, BUSY_END = "<!-- performance-busy:begin -->", "<!-- performance-busy:end -->"
# Smaller is better: times, and memory (heap_churn's resident sets); every other unit:
# bigger.
TIME_UNITS = {"s", "ms", "us", "ns", "MB"}

# probe -> the rows it bounds: (benchmark, metric, factor turning the row's unit
# into the probe's unit)
PROBE_BOUNDS = {
    "probe_fork": [("process_start_fork", "per_process_us", 1.0)],
    "probe_atomic_pair": [("lock_uncontended", "ns_per_pair", 1.0)],
    "probe_spawn": [("process_start_spawn", "per_process_us", 1.0)],
    "probe_forkserver": [("process_start_forkserver", "per_process_us", 1.0)],
    "probe_pipe_roundtrip": [("pipe_roundtrip", "roundtrip_us", 1.0)],
    "probe_futex_roundtrip": [("event_pingpong", "roundtrip_us", 1.0),
                              ("barrier_cycle", "us_per_cycle", 1.0)],
    "probe_memcpy": [("queue_throughput_1m", "MB_per_s", 1e-3),
                     ("interprocess_vector_update", "GB_per_s", 1.0)],
    "probe_shm_first_touch": [("shared_memory_array_write", "GB_per_s", 1.0),
                              ("shared_memory_array_write_prefault", "GB_per_s", 1.0)],
    "probe_boost_message_queue": [("queue_throughput_small", "msgs_per_s", 1.0)],
    "probe_socket_roundtrip": [("listener_roundtrip", "roundtrip_us", 1.0)],
}

# The goals of the issues. Keys: "vs_cpython": at least this many times better than
# CPython; "vs_floor": (probe, at most this many times its floor); "at_most": an
# absolute ceiling in the row's own unit; "at_least": an absolute floor. Each goal names
# only what its issue names.
GOALS = [
    {"bench": "process_start_fork", "metric": "per_process_us", "vs_cpython": 5.0,
     "vs_floor": ("probe_fork", 1.5)},
    {"bench": "process_start_spawn", "metric": "per_process_us", "vs_cpython": 20.0,
     "vs_floor": ("probe_spawn", 2.0)},
    {"bench": "process_start_forkserver", "metric": "per_process_us", "vs_cpython": 10.0},
    {"bench": "lock_uncontended", "metric": "ns_per_pair", "at_most": 10.0,
     "vs_floor": ("probe_atomic_pair", None)},
    {"bench": "barrier_cycle", "metric": "us_per_cycle", "vs_cpython": 20.0},
    {"bench": "value_lock_increment", "metric": "increments_per_s", "vs_cpython": 16.0},
    {"bench": "event_pingpong", "metric": "roundtrip_us", "vs_cpython": 20.0},
    {"bench": "pipe_roundtrip", "metric": "roundtrip_us", "vs_cpython": 1.0},
    {"bench": "manager_dict_set_get", "metric": "set_ops_per_s", "vs_cpython": 500.0},
    {"bench": "manager_dict_set_get", "metric": "get_ops_per_s", "vs_cpython": 150.0},
    # Two writers on one dict: and at least 1.5 times one writer's rate (the set rate of
    # manager_dict_set_get, measured in the same run): writers must not serialize.
    {"bench": "manager_dict_concurrent", "metric": "ops_per_s", "vs_cpython": 250.0,
     "vs_mp": ("manager_dict_set_get", "set_ops_per_s", 1.5)},
    {"bench": "shared_memory_array_write", "metric": "GB_per_s", "vs_cpython": 0.9,
     "vs_floor": ("probe_shm_first_touch", None)},
    # And at least 5 times boost::interprocess::message_queue's 8-byte rate between two
    # processes (about 7M msgs/s here; a cost of at most 0.2 of it), measured in the same
    # run by the probe.
    {"bench": "queue_throughput_small", "metric": "msgs_per_s", "vs_cpython": 28.0,
     "at_least": 7e6, "vs_floor": ("probe_boost_message_queue", 0.2)},
    {"bench": "queue_throughput_1k", "metric": "msgs_per_s", "vs_cpython": 12.0},
    {"bench": "queue_throughput_1m", "metric": "MB_per_s", "vs_cpython": 6.0},
    {"bench": "pool_map_trivial", "metric": "tasks_per_s", "vs_cpython": 20.0},
    {"bench": "pool_map_trivial_chunk1", "metric": "tasks_per_s", "vs_cpython": 60.0},
    {"bench": "pool_apply_async_latency", "metric": "roundtrip_us", "vs_cpython": 100.0},
    # At least CPython's speedup in the same run (a ratio of 1), and 1.95.
    {"bench": "pool_map_cpu", "metric": "speedup", "vs_cpython": 1.0, "at_least": 1.95},
    {"bench": "listener_roundtrip", "metric": "roundtrip_us", "vs_cpython": 5.0,
     "vs_floor": ("probe_socket_roundtrip", 1.5, "same_cpu_roundtrip_us")},
]

# On a busy machine (--busy): the rows of BUSY_VS_CPYTHON_ROWS at least this many times
# better than CPython under the same load, and the rows of BUSY_VS_QUIET at most this
# many times their quiet figure.
BUSY_VS_CPYTHON = 3.0
# (benchmark, metric): the rows whose figure is the cost of mp's own work between
# processes (starting them, handing over tasks, messages, locks, wake-ups), which mp can
# keep small while the CPUs are shared.
BUSY_VS_CPYTHON_ROWS = {
    ("process_start_fork", "per_process_us"), ("process_start_spawn", "per_process_us"),
    ("process_start_forkserver", "per_process_us"),
    ("pool_map_trivial", "tasks_per_s"), ("pool_map_trivial_chunk1", "tasks_per_s"),
    ("pool_apply_async_latency", "roundtrip_us"),
    ("queue_throughput_small", "msgs_per_s"), ("queue_throughput_1k", "msgs_per_s"),
    ("queue_throughput_1k", "MB_per_s"), ("pipe_roundtrip", "roundtrip_us"),
    ("value_lock_increment", "increments_per_s"), ("lock_uncontended", "ns_per_pair"),
    ("manager_dict_set_get", "set_ops_per_s"), ("manager_dict_set_get", "get_ops_per_s"),
    ("manager_dict_concurrent", "ops_per_s"), ("barrier_cycle", "us_per_cycle"),
    ("event_pingpong", "roundtrip_us"), ("listener_roundtrip", "roundtrip_us"),
    ("heap_churn", "ops_per_s"),
}
# The rows the goal leaves out, and why: their figure is set by something both sides
# share (the CPUs the busy loops leave, memory bandwidth, the kernel's page allocation)
# or is not a speed. The report shows them with their ratio and this reason.
BUSY_NOT_VS_CPYTHON = {
    ("pool_map_cpu", "speedup"): "bounded by the CPUs the busy loops leave to both sides",
    ("pool_map_cpu", "parallel_s"): "the work function's time, C++ against Python",
    ("pool_map_cpu", "serial_s"): "the work function's time, C++ against Python",
    ("queue_throughput_1m", "msgs_per_s"): "copying 1 MiB messages: memory bandwidth",
    ("queue_throughput_1m", "MB_per_s"): "copying 1 MiB messages: memory bandwidth",
    ("shared_memory_array_write", "GB_per_s"): "the kernel's page allocation and memory "
                                               "bandwidth",
    ("heap_churn", "peak_rss_MB"): "memory, not speed",
    ("heap_churn", "rss_after_free_MB"): "memory, not speed",
}
BUSY_VS_QUIET = [("barrier_cycle", "us_per_cycle", 20.0),
                 ("event_pingpong", "roundtrip_us", 20.0)]

# mp-map against the command-line tools it replaces (bench/mp_map_bench.py, wall time of
# whole commands): (bench, other tool, mp-map at least this many times faster).
MP_MAP_SCRIPT = ROOT / "bench" / "mp_map_bench.py"
MP_MAP_GOALS = [
    ("mp_map_square_1m", "cpython-pool-oneliner", 10.0),
    ("mp_map_exec_true_1k", "xargs", 1.0),
    ("mp_map_exec_true_1k", "gnu-parallel", 4.0),
]

# What mp costs at compile time (bench/compile_bench.py, compiler CPU seconds):
# (bench, at most this many seconds). compile_std_headers is the floor they are shown
# against.
COMPILE_SCRIPT = ROOT / "bench" / "compile_bench.py"
COMPILE_FLOOR = "compile_std_headers"
COMPILE_ONLY = "compile"  # the --only name of the compile-time rows
COMPILE_GOALS = [("compile_mp_hpp", 1.0), ("compile_example_pool_map", 2.0)]


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def find_mp_bench():
    if os.environ.get("MP_BENCH"):
        return Path(os.environ["MP_BENCH"])
    found = [p for p in ROOT.glob("build*/tools/mp-bench/mp-bench") if os.access(p, os.X_OK)]
    if not found:
        sys.exit("compare.py: no mp-bench binary found under build*/; build it "
                 "(./build.sh bench) or pass --mp-bench PATH")
    return max(found, key=lambda p: p.stat().st_mtime)


def pin(cpus_text):
    """Pins this process (and so both benchmark programs) to the given CPUs."""
    wanted = {int(c) for c in cpus_text.split(",") if c.strip()}
    cpus = wanted & os.sched_getaffinity(0)
    if not cpus:
        log(f"# warning: CPUs {cpus_text} not available; running unpinned")
        return sorted(os.sched_getaffinity(0))
    if cpus != wanted:
        log(f"# warning: only CPUs {sorted(cpus)} of {cpus_text} are available")
    os.sched_setaffinity(0, cpus)
    return sorted(cpus)


class BusyLoops:
    """`per_cpu` busy-loop processes on each of `cpus` (each pinned to its CPU) while
    the with-block runs; always stopped, also when the block raises."""

    def __init__(self, per_cpu, cpus):
        self.per_cpu, self.cpus, self.procs = per_cpu, cpus, []

    def __enter__(self):
        try:
            for cpu in self.cpus:
                for _ in range(self.per_cpu):
                    self.procs.append(subprocess.Popen(
                        [sys.executable, "-c", "while True: pass"],
                        stdin=subprocess.DEVNULL,
                        preexec_fn=lambda cpu=cpu: os.sched_setaffinity(0, {cpu})))
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc):
        for proc in self.procs:
            proc.kill()
        for proc in self.procs:
            proc.wait()
        self.procs = []
        return False


def list_rows(command):
    out = subprocess.run(command + ["--list"], check=True, capture_output=True, text=True)
    return [line.strip() for line in out.stdout.splitlines() if line.strip()]


def run_json_lines(command, label):
    """Runs one benchmark program; its stderr (progress) passes through."""
    log(f"# running {label}: {' '.join(map(str, command))}")
    proc = subprocess.run(command, stdout=subprocess.PIPE, text=True)
    records = []
    for line in proc.stdout.splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            log(f"# {label}: not a JSON line: {line!r}")
    if proc.returncode != 0:
        log(f"# {label} exited with status {proc.returncode}")
    return records, proc.returncode


def common_args(args):
    out = ["--runs", str(args.runs), "--timeout", str(args.timeout),
           "--start-method", args.start_method]
    return out + (["--quick"] if args.quick else [])


def run_both(args, mp_bench, python):
    mp_rows = list_rows([str(mp_bench)])
    py_rows = list_rows([python, str(PYTHON_SCRIPT)])
    mp_benches = [r for r in mp_rows if not r.startswith("probe_")]
    probes = [r for r in mp_rows if r.startswith("probe_")]
    if args.only:
        wanted = [s.strip() for s in args.only.split(",") if s.strip()]
        unknown = [w for w in wanted
                   if w not in mp_rows and w not in py_rows and w != COMPILE_ONLY]
        if unknown:
            sys.exit(f"compare.py: unknown benchmark(s): {', '.join(unknown)}")
        # each selected row brings the probes that bound it
        related = [p for p in probes if p in wanted or
                   any(b in wanted for b, _, _ in PROBE_BOUNDS.get(p, []))]
        mp_selected = [w for w in wanted if w in mp_benches] + related
        py_selected = [w for w in wanted if w in py_rows]
    else:
        mp_selected = mp_rows
        py_selected = py_rows if args.all_python else [r for r in py_rows if r in mp_benches]
    if args.busy:
        # The probes are the floor of a quiet machine; beside busy loops their pinned
        # ping-pongs measure only the scheduler's time slices (milliseconds a round trip).
        mp_selected = [r for r in mp_selected if not r.startswith("probe_")]

    records, status = [], 0
    for command, selected, label in (
            ([str(mp_bench)], mp_selected, "mp-bench"),
            ([python, str(PYTHON_SCRIPT)], py_selected, "CPython")):
        if not selected:
            log(f"# {label}: no rows selected")
            continue
        recs, rc = run_json_lines(command + common_args(args) + ["--only", ",".join(selected)],
                                  label)
        records += recs
        status = status or rc
    return records, status


def best_of(invocations):
    """Per (impl, bench, metric), the record with the best value over repeated
    invocations: the lowest time or the highest rate. Interference from other
    work on the machine only ever makes a run slower, so the best of a few
    invocations is the least disturbed one (applied alike to all programs)."""
    best, order = {}, []
    for records in invocations:
        for r in records:
            key = (r["impl"], r["bench"], r["metric"])
            if key not in best:
                order.append(key)
                best[key] = r
                continue
            lower_is_better = r["unit"] in TIME_UNITS
            if (r["value"] < best[key]["value"]) == lower_is_better and \
                    r["value"] != best[key]["value"]:
                best[key] = r
    return [best[k] for k in order]


MP_IMPL, PY_IMPL = "mp-cpp", "cpython-multiprocessing"


def param_mismatches(records):
    """The rows whose mp-bench and CPython records carry different params, one
    message each ("NAME: key: mp-cpp X, CPython Y; ..."). Rows only one side has
    are not compared. Key order does not matter."""
    params = {}  # (impl, bench) -> the distinct params dicts seen, in order
    for r in records:
        if r.get("impl") in (MP_IMPL, PY_IMPL) and "bench" in r:
            seen = params.setdefault((r["impl"], r["bench"]), [])
            p = r.get("params", {})
            if p not in seen:
                seen.append(p)
    messages = []
    for (impl, bench), mp_params in params.items():
        if impl != MP_IMPL or (PY_IMPL, bench) not in params:
            continue
        for mine in mp_params:
            for theirs in params[(PY_IMPL, bench)]:
                if mine == theirs:
                    continue
                keys = list(dict.fromkeys([*mine, *theirs]))
                diffs = [f"{k}: mp-cpp {json.dumps(mine.get(k, '(absent)'))}, "
                         f"CPython {json.dumps(theirs.get(k, '(absent)'))}"
                         for k in keys if mine.get(k, "(absent)") != theirs.get(k, "(absent)")]
                messages.append(f"{bench}: " + "; ".join(diffs))
    return messages


def python_sizes():
    """{name: (full size, --quick size)} of the CPython script's rows."""
    import importlib.util
    spec = importlib.util.spec_from_file_location("mp_bench", PYTHON_SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return {name: (full, quick) for name, (_, _, full, quick) in module.BENCHMARKS.items()}


def mp_bench_sizes(mp_bench):
    """{name: (full size, --quick size)} of mp-bench's rows (mp-bench --sizes)."""
    out = subprocess.run([str(mp_bench), "--sizes"], check=True, capture_output=True, text=True)
    sizes = {}
    for line in out.stdout.splitlines():
        name, full, quick = line.split()
        sizes[name] = (int(full), int(quick))
    return sizes


def size_mismatches(mp_sizes, py_sizes):
    """The rows both programs have whose sizes differ, one message each."""
    return [f"{name}: mp-cpp full/quick {mp_sizes[name][0]}/{mp_sizes[name][1]}, "
            f"CPython {py_sizes[name][0]}/{py_sizes[name][1]}"
            for name in mp_sizes if name in py_sizes and mp_sizes[name] != py_sizes[name]]


def refuse(mismatches, what):
    """Logs why the rows cannot be compared and returns True; False if none."""
    if not mismatches:
        return False
    log(f"compare.py: refusing to compare: these rows of mp-bench and of the CPython "
        f"script have the same name but different {what} (they must be the same on "
        f"both sides: BENCHMARKS in bench/python/mp_bench.py, MP_BENCH_ROW in "
        f"tools/mp-bench):")
    for message in mismatches:
        log(f"  {message}")
    return True


def refuse_mismatches(records):
    """Logs why the rows cannot be compared and returns True, or returns False."""
    return refuse(param_mismatches(records), "params")


# ---------------------------------------------------------------------------
# Tables
# ---------------------------------------------------------------------------

def fmt(value, unit):
    if value is None:
        return "—"
    a = abs(value)
    if a >= 1e6:
        text = f"{value / 1e6:.3g} M"
    elif a >= 1000:
        text = f"{value:,.0f} "
    elif a >= 100:
        text = f"{value:.0f} "
    elif a >= 10:
        text = f"{value:.1f} "
    else:
        text = f"{value:.3g} "
    return f"{text}{unit}".replace("  ", " ").strip()


def fmt_ratio(ratio):
    if ratio is None:
        return "—"
    return f"{ratio:,.0f}×" if ratio >= 100 else f"{ratio:.3g}×"


def better_ratio(mp_value, py_value, unit):
    """How many times better mp is than CPython (>1: mp wins)."""
    if mp_value is None or py_value is None or mp_value <= 0 or py_value <= 0:
        return None
    return py_value / mp_value if unit in TIME_UNITS else mp_value / py_value


def cost_ratio(value, floor, unit):
    """How many times the machine's floor a measurement costs (>= 1 normally)."""
    if value is None or floor is None or value <= 0 or floor <= 0:
        return None
    return value / floor if unit in TIME_UNITS else floor / value


def index(records):
    table = {}
    for r in records:
        table[(r["impl"], r["bench"], r["metric"])] = r
    return table


def value_of(table, impl, bench, metric):
    rec = table.get((impl, bench, metric))
    return rec["value"] if rec else None


def main_table(records):
    table = index(records)
    keys = []
    for r in records:  # CPython's order first, then rows only mp has
        if r["impl"] == "cpython-multiprocessing" and (r["bench"], r["metric"]) not in keys:
            keys.append((r["bench"], r["metric"]))
    for r in records:
        if r["impl"] == "mp-cpp" and (r["bench"], r["metric"]) not in keys:
            keys.append((r["bench"], r["metric"]))
    lines = ["| benchmark | metric | CPython | mp | mp vs CPython |",
             "|---|---|---:|---:|---:|"]
    for bench, metric in keys:
        py = table.get(("cpython-multiprocessing", bench, metric))
        mp = table.get(("mp-cpp", bench, metric))
        unit = (py or mp)["unit"]
        py_v, mp_v = py and py["value"], mp and mp["value"]
        notes = [f"{who} ok=false" for who, rec in (("CPython", py), ("mp", mp))
                 if rec and rec.get("ok") is False]
        cell = fmt_ratio(better_ratio(mp_v, py_v, unit))
        if notes:
            cell += " (" + ", ".join(notes) + ")"
        lines.append(f"| {bench} | {metric} | {fmt(py_v, unit)} | {fmt(mp_v, unit)} | {cell} |")
    return lines


def probe_table(records):
    table = index(records)
    probes = [r for r in records if r["impl"] == "limit"]
    if not probes:
        return []
    lines = ["| probe (raw system calls) | metric | floor | bounds | CPython | mp "
             "| CPython / floor | mp / floor |",
             "|---|---|---:|---|---:|---:|---:|---:|"]
    for p in probes:
        what = f"{p['bench']}: {p['params'].get('probe', '')}"
        floor = fmt(p["value"], p["unit"])
        bounds = PROBE_BOUNDS.get(p["bench"], [])
        measured = [b for b in bounds if any(
            (impl, b[0], b[1]) in table for impl in ("cpython-multiprocessing", "mp-cpp"))]
        if not measured:  # the rows it bounds did not run (or do not exist yet)
            names = ", ".join(b for b, _, _ in bounds)
            lines.append(f"| {what} | {p['metric']} | {floor} | {names} | — | — | — | — |")
        for bench, metric, factor in measured:
            py_v = value_of(table, "cpython-multiprocessing", bench, metric)
            mp_v = value_of(table, "mp-cpp", bench, metric)
            py_v = py_v * factor if py_v is not None else None
            mp_v = mp_v * factor if mp_v is not None else None
            lines.append(
                f"| {what} | {p['metric']} | {floor} | {bench} | {fmt(py_v, p['unit'])} "
                f"| {fmt(mp_v, p['unit'])} | {fmt_ratio(cost_ratio(py_v, p['value'], p['unit']))} "
                f"| {fmt_ratio(cost_ratio(mp_v, p['value'], p['unit']))} |")
    return lines


# Peers ("impl": "peer", rows peer_*): another library doing a row's work, and the
# mp rows (same metric) it is compared with.
PEER_ROWS = {
    "peer_boost_ipc_map": ["manager_dict_set_get", "interprocess_map_set_get"],
    "peer_boost_process_spawn": ["process_start_spawn_rss"],
}


def peer_table(records):
    table = index(records)
    peers = [r for r in records if r["impl"] == "peer"]
    if not peers:
        return []
    lines = ["| peer | metric | peer | mp row | mp | mp vs peer |",
             "|---|---|---:|---|---:|---:|"]
    for p in peers:
        for bench in PEER_ROWS.get(p["bench"], []):
            mp_v = value_of(table, "mp-cpp", bench, p["metric"])
            lines.append(
                f"| {p['bench']} | {p['metric']} | {fmt(p['value'], p['unit'])} | {bench} "
                f"| {fmt(mp_v, p['unit'])} "
                f"| {fmt_ratio(better_ratio(mp_v, p['value'], p['unit']))} |")
    return lines


def metric_unit(metric):
    """The time unit a metric's name carries (roundtrip_us, ns_per_pair, parallel_s), or
    none: the unit of a goal whose row was not measured."""
    for unit in ("ns", "us", "ms", "s"):
        per_time = metric.endswith("_per_" + unit)  # a rate (msgs_per_s), not a time
        if (metric.endswith("_" + unit) and not per_time) or metric.startswith(unit + "_per_"):
            return unit
    return ""


def goal_lines(records):
    table = index(records)
    lines = []
    for goal in GOALS:
        bench, metric = goal["bench"], goal["metric"]
        mp_v = value_of(table, "mp-cpp", bench, metric)
        unit = next((r["unit"] for r in records if r.get("bench") == bench),
                    metric_unit(metric))
        checks = []
        if "vs_cpython" in goal:
            want = goal["vs_cpython"]
            better = better_ratio(mp_v, value_of(table, "cpython-multiprocessing", bench, metric),
                                  unit)
            checks.append(f"≥ {want:g}× CPython: " +
                          ("not measured" if better is None else
                           f"{fmt_ratio(better)} — {'met' if better >= want else 'MISSED'}"))
        if "at_most" in goal:
            ceiling = goal["at_most"]
            checks.append(f"≤ {ceiling:g} {unit}: " +
                          ("not measured" if mp_v is None else
                           f"{mp_v:.3g} {unit} — {'met' if mp_v <= ceiling else 'MISSED'}"))
        if "at_least" in goal:
            floor = goal["at_least"]
            checks.append(f"≥ {floor:g} {unit}: " +
                          ("not measured" if mp_v is None else
                           f"{mp_v:.3g} {unit} — {'met' if mp_v >= floor else 'MISSED'}"))
        if "vs_mp" in goal:
            # Against another of mp's own rows of the same run.
            other, other_metric, want = goal["vs_mp"]
            better = better_ratio(mp_v, value_of(table, "mp-cpp", other, other_metric), unit)
            checks.append(f"≥ {want:g}× {other} {other_metric}: " +
                          ("not measured" if better is None else
                           f"{fmt_ratio(better)} — {'met' if better >= want else 'MISSED'}"))
        if "vs_floor" in goal:
            # An optional third element names the probe's metric (ping-pong probes
            # report same_cpu_/cross_cpu_roundtrip_us); else the row's own.
            probe, most, *probe_metric = goal["vs_floor"]
            floor_metric = probe_metric[0] if probe_metric else metric
            cost = cost_ratio(mp_v, value_of(table, "limit", probe, floor_metric), unit)
            if most is None:  # shown for context only
                if cost is not None:
                    checks.append(f"{fmt_ratio(cost)} {probe} (the hardware floor)")
            else:
                checks.append(f"≤ {most:g}× {probe}: " +
                              ("not measured" if cost is None else
                               f"{fmt_ratio(cost)} — {'met' if cost <= most else 'MISSED'}"))
        lines.append(f"- {bench}: " + "; ".join(checks))
    return lines


def busy_goal_lines(records, quiet_records):
    """Goals on a busy machine: the rows of BUSY_VS_CPYTHON_ROWS against CPython under the
    same load (the others shown with why they have no goal), and the rows of
    BUSY_VS_QUIET against mp's own quiet figures (if a quiet run is given)."""
    table, quiet = index(records), index(quiet_records)
    lines = []
    for r in records:
        if r["impl"] != "mp-cpp":
            continue
        better = better_ratio(r["value"], value_of(table, "cpython-multiprocessing",
                                                   r["bench"], r["metric"]), r["unit"])
        row = (r["bench"], r["metric"])
        if better is None:
            continue
        if row in BUSY_VS_CPYTHON_ROWS:
            lines.append(f"- {r['bench']} {r['metric']}: ≥ {BUSY_VS_CPYTHON:g}× CPython under "
                         f"the same load: {fmt_ratio(better)} — "
                         f"{'met' if better >= BUSY_VS_CPYTHON else 'MISSED'}")
        else:
            why = BUSY_NOT_VS_CPYTHON.get(row, "not named in BUSY_VS_CPYTHON_ROWS")
            lines.append(f"- {r['bench']} {r['metric']}: no goal under load ({why}): "
                         f"{fmt_ratio(better)}")
    for bench, metric, most in BUSY_VS_QUIET:
        busy_v = value_of(table, "mp-cpp", bench, metric)
        quiet_v = value_of(quiet, "mp-cpp", bench, metric)
        unit = next((r["unit"] for r in records if r.get("bench") == bench), "us")
        cost = cost_ratio(busy_v, quiet_v, unit)
        lines.append(f"- {bench}: ≤ {most:g}× its quiet figure ({fmt(quiet_v, unit)}): " +
                     ("not measured" if cost is None else
                      f"{fmt_ratio(cost)} — {'met' if cost <= most else 'MISSED'}"))
    return lines


def render(records, title_lines=(), busy_quiet=None):
    """The tables and goals; busy_quiet (a list of a quiet run's records, maybe empty)
    marks a busy-machine run, whose goals are busy_goal_lines."""
    out = list(title_lines)
    out += main_table(records)
    probes = probe_table(records)
    if probes:
        out += ["", "Limit probes: the same work done with raw system calls in C++ "
                "(no library), the floor for the rows they bound. Ping-pong probes pin "
                "both processes to one CPU (same_cpu) or one each (cross_cpu); an "
                "unpinned pair, as in the rows, lands on either."]
        out += [""] + probes
    peers = peer_table(records)
    if peers:
        out += ["", "Peers: another library doing the same work (docs/boost.md); "
                "\"mp vs peer\" is bigger when mp is better."]
        out += [""] + peers
    if busy_quiet is None:
        out += ["", "Goals:", ""] + goal_lines(records)
    else:
        out += ["", "Goals on a busy machine:", ""] + busy_goal_lines(records, busy_quiet)
    for section in (mp_map_lines(records), compile_lines(records)):
        if section:
            out += [""] + section
    return "\n".join(out) + "\n"


def mp_map_lines(records):
    """The table and goals of bench/mp_map_bench.py's rows (whole commands, wall time)."""
    rows = [r for r in records if str(r.get("bench", "")).startswith("mp_map_")]
    if not rows:
        return []
    table = index(rows)
    out = ["mp-map beside the tools it replaces (`bench/mp_map_bench.py`: wall time of the "
           "whole command, input from a file, median of the runs):", "",
           "| benchmark | tool | wall time | mp-map faster by |", "|---|---|---:|---:|"]
    for bench in dict.fromkeys(r["bench"] for r in rows):
        mine = value_of(table, "mp-map", bench, "wall_s")
        for r in rows:
            if r["bench"] != bench:
                continue
            ratio = "" if r["impl"] == "mp-map" or not mine else fmt_ratio(r["value"] / mine)
            params = ", ".join(f"{k}={v}" for k, v in r.get("params", {}).items())
            out.append(f"| {bench} ({params}) | {r['impl']} | {r['value']:.3g} s | {ratio} |")
    out += ["", "Goals:", ""]
    for bench, other, want in MP_MAP_GOALS:
        mine, theirs = (value_of(table, "mp-map", bench, "wall_s"),
                        value_of(table, other, bench, "wall_s"))
        if mine is None or theirs is None:
            out.append(f"- {bench}: ≥ {want:g}× {other}: not measured")
        else:
            ratio = theirs / mine
            out.append(f"- {bench}: ≥ {want:g}× {other}: {fmt_ratio(ratio)} — "
                       f"{'met' if ratio >= want else 'MISSED'}")
    return out



def compile_lines(records):
    """The table and goals of bench/compile_bench.py's rows (compiler CPU seconds)."""
    rows = [r for r in records if str(r.get("bench", "")).startswith("compile_")]
    if not rows:
        return []
    floor = next((r["value"] for r in rows if r["bench"] == COMPILE_FLOOR), None)
    out = ["Compile time (`bench/compile_bench.py`: CPU seconds of the compiler, "
           f"best of the runs; {rows[0]['impl']}):", "",
           "| what is compiled | CPU | × the standard headers alone |", "|---|---:|---:|"]
    for r in rows:
        params = ", ".join(f"{k}={v}" for k, v in r.get("params", {}).items())
        ratio = "" if r["bench"] == COMPILE_FLOOR or not floor else fmt_ratio(r["value"] / floor)
        out.append(f"| {r['bench']} ({params}) | {r['value']:.3g} s | {ratio} |")
    out += ["", "Goals:", ""]
    table = {r["bench"]: r["value"] for r in rows}
    for bench, most in COMPILE_GOALS:
        value = table.get(bench)
        if value is None:
            out.append(f"- {bench}: ≤ {most:g} s: not measured")
        else:
            out.append(f"- {bench}: ≤ {most:g} s: {value:.3g} s — "
                       f"{'met' if value <= most else 'MISSED'}")
    return out

# ---------------------------------------------------------------------------
# Machine description and README
# ---------------------------------------------------------------------------

def first_line(command):
    try:
        out = subprocess.run(command, capture_output=True, text=True, timeout=30)
        return out.stdout.strip().splitlines()[0] if out.returncode == 0 else None
    except (OSError, IndexError, subprocess.TimeoutExpired):
        return None


def machine_lines(args, cpus, mp_bench, python, load_at_start=None):
    model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = ""
    try:
        kb = int(re.search(r"MemTotal:\s+(\d+)", Path("/proc/meminfo").read_text()).group(1))
        mem = f", {kb / 1024 / 1024:.0f} GiB RAM"
    except (OSError, AttributeError):
        pass
    load = "" if load_at_start is None else f"; load average {load_at_start:.2f} at start"
    built = (first_line([str(mp_bench), "--version"]) if mp_bench else None) or "mp-bench"
    py_version = first_line([python, "-c", "import sys; print(sys.version.split()[0])"])
    mode = ("--quick sizes" if args.quick else "full sizes") + f"; median of {args.runs} runs"
    if args.repeat > 1:
        mode += f", best of {args.repeat} invocations"
    reproduce = "".join([" --quick" if args.quick else "",
                         f" --repeat {args.repeat}" if args.repeat != 3 else "",
                         f" --runs {args.runs}" if args.runs != 3 else "",
                         f" --busy {args.busy}" if args.busy else ""])
    return [
        f"Measured {datetime.date.today().isoformat()} on {model}, {os.cpu_count()} CPUs"
        f"{mem}, Linux {platform.release()}; both programs pinned to CPUs "
        f"{','.join(map(str, cpus))}{load}" +
        (f"; {args.busy} busy-loop processes per CPU beside both." if args.busy else "."),
        "",
        f"{built}; CPython {py_version or '?'} (`bench/python/mp_bench.py`). "
        f"{mode}; start method {args.start_method} except for "
        f"process_start_spawn. Reproduce with `./build.sh bench{reproduce}`.",
        "",
    ]


def update_readme(text, busy=False):
    readme = ROOT / "README.md"
    begin, end_mark = (BUSY_BEGIN, BUSY_END) if busy else (BEGIN, END)
    block = f"{begin}\n{text}{end_mark}"
    if readme.exists():
        content = readme.read_text()
        if begin in content and end_mark in content and \
                content.index(begin) < content.index(end_mark):
            start, end = content.index(begin), content.index(end_mark) + len(end_mark)
            readme.write_text(content[:start] + block + content[end:])
            log(f"# wrote the tables into {readme}")
            return
        if busy and END in content:  # the first busy run: right after the quiet tables
            at = content.index(END) + len(END)
            heading = "\n\n### On a busy machine\n\n"
            readme.write_text(content[:at] + heading + block + content[at:])
            log(f"# wrote the busy-machine tables into {readme}")
            return
    results = ROOT / "bench" / "RESULTS.md"
    results.write_text("# mp vs CPython: measured performance\n\n" + block + "\n")
    log(f"# {readme} has no {BEGIN} ... {END} markers: wrote {results} instead")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--mp-bench", type=Path, help="mp-bench binary (default: newest "
                    "build*/tools/mp-bench/mp-bench, or $MP_BENCH)")
    ap.add_argument("--mp-map", type=Path, help="also time this mp-map binary against "
                    "Python, xargs and GNU parallel (bench/mp_map_bench.py)")
    ap.add_argument("--python", default=sys.executable, help="Python to run the script with")
    ap.add_argument("--quick", action="store_true", help="smaller sizes (both programs)")
    ap.add_argument("--only", metavar="NAME[,NAME]", help="rows to run (both programs); "
                    "the probes that bound them come along")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--start-method", default="fork")
    ap.add_argument("--timeout", type=int, default=600, help="per-row limit in seconds")
    ap.add_argument("--cpus", default="0,1", help="CPUs both programs are pinned to")
    ap.add_argument("--repeat", type=int, default=3, metavar="K",
                    help="run both programs K times and keep each row's best median "
                         "(default 3)")
    ap.add_argument("--all-python", action="store_true",
                    help="also run the CPython rows mp-bench does not have yet")
    ap.add_argument("--update-readme", action="store_true",
                    help="write the tables between the performance markers of README.md")
    ap.add_argument("--raw-out", type=Path,
                    help="save the JSON lines of every invocation here")
    ap.add_argument("--from-raw", type=Path,
                    help="print the tables from saved JSON lines instead of running")
    ap.add_argument("--busy", type=int, default=0, metavar="K",
                    help="run K busy-loop processes per CPU beside both programs")
    ap.add_argument("--quiet-raw", type=Path,
                    help="with --busy: saved JSON lines (--raw-out) of a quiet run")
    args = ap.parse_args(argv)
    if args.repeat < 1:
        ap.error("--repeat must be >= 1")
    if not 0 <= args.busy <= 16:
        ap.error("--busy must be between 0 and 16")
    if args.quiet_raw and not args.busy:
        ap.error("--quiet-raw goes with --busy")
    busy_quiet = None
    if args.busy:
        busy_quiet = []
        if args.quiet_raw:
            saved = [json.loads(line) for line in args.quiet_raw.read_text().splitlines()
                     if line]
            busy_quiet = best_of([[r for r in saved if "bench" in r]])

    if args.from_raw:
        saved = [json.loads(line) for line in args.from_raw.read_text().splitlines() if line]
        records = best_of([[r for r in saved if "bench" in r]])
        meta = next((r for r in saved if "machine" in r), None)
        header = meta["machine"] if meta else []
        status = 0
    else:
        mp_bench = args.mp_bench or find_mp_bench()
        if refuse(size_mismatches(mp_bench_sizes(mp_bench), python_sizes()), "sizes"):
            return 2
        cpus = pin(args.cpus)
        load = os.getloadavg()[0]
        if load > 0.5:
            log(f"# warning: load average {load:.2f}: other work on this machine will "
                "disturb the numbers")
        invocations, status = [], 0
        for i in range(args.repeat):
            if args.repeat > 1:
                log(f"# invocation {i + 1} of {args.repeat}")
            with BusyLoops(args.busy, cpus):
                records, rc = run_both(args, mp_bench, args.python)
            if args.mp_map and not args.busy and (not args.only or "mp_map" in args.only):
                command = [args.python, str(MP_MAP_SCRIPT), "--mp-map", str(args.mp_map),
                           "--runs", str(args.runs)] + (["--quick"] if args.quick else [])
                tool_records, tool_rc = run_json_lines(command, "mp_map_bench.py")
                records += tool_records
                rc = rc or tool_rc
            if not args.busy and (not args.only or COMPILE_ONLY in args.only.split(",")):
                command = [args.python, str(COMPILE_SCRIPT), "--runs", str(args.runs)]
                compile_records, compile_rc = run_json_lines(command, "compile_bench.py")
                records += compile_records
                rc = rc or compile_rc
            invocations.append(records)
            status = status or rc
        records = best_of(invocations)
        header = machine_lines(args, cpus, mp_bench, args.python, load)
        if args.raw_out:
            with args.raw_out.open("w") as f:
                f.write(json.dumps({"machine": header}) + "\n")
                for r in (r for invocation in invocations for r in invocation):
                    f.write(json.dumps(r) + "\n")

    if refuse_mismatches(records):
        return 2
    text = render(records, header, busy_quiet)
    sys.stdout.write(text)
    if args.update_readme and args.only:
        log("# --only ran part of the rows: README.md left as it is")
    elif args.update_readme:
        update_readme(text, busy=bool(args.busy))
    return 1 if status else 0


if __name__ == "__main__":
    sys.exit(main())
