#!/usr/bin/env python3
"""The MPI rows of README's "Scaling out": runs bench/mpi.sh (mp-bench-mpi and
mpi4py.futures under mpirun -n 3, and a raw MPI ping-pong), checks the goals of
mp's pools over MPI, and with --update-readme writes the table between
<!-- mpi:begin --> and <!-- mpi:end -->.

    python3 bench/mpi_report.py BUILD_DIR [--quick] [--repeat K] [--update-readme]
                                [--raw-out F]
    python3 bench/mpi_report.py --from-raw F [--update-readme]

bench/mpi.sh runs --repeat times (default 3) and each row keeps its best value over
those invocations, as bench/compare.py does: other work on a shared machine only ever
slows a run down, and these rows (several processes sharing two CPUs) move by 2x from
one invocation to the next.

The goals (each against mpi4py.futures in the same invocation where it has the row):
  mpi_pool_map_cpu              mp's speedup at least 1.8
  mpi_pool_apply_async_latency  at least 10x mpi4py's submit().result()
  mpi_pool_map_trivial          at least 10x mpi4py's map(chunksize=N/64) tasks/s
Exit status 0 when every goal is met, 1 when one is missed or not measured, 2 when
the run itself failed. Standard library only (bench/compare.py's formatting).
"""

import argparse
import datetime
import json
import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
from compare import best_of, better_ratio, fmt, fmt_ratio  # noqa: E402

BEGIN, END = "<!-- mpi:begin -->", "<!-- mpi:end -->"
MP, PY = "mp", "mpi4py"

# bench, metric, what the row is, and its goal: ("at_least", x) on mp's own value or
# ("vs_mpi4py", x) on how many times better mp is than mpi4py.
ROWS = [
    ("mpi_pool_map_trivial", "tasks_per_s", "`pool.map(square, range(N))`, chunksize N / 64",
     ("vs_mpi4py", 10.0)),
    ("mpi_pool_map_cpu", "speedup", "64 x primes below 20,000, speedup over serial",
     ("at_least", 1.8)),
    ("mpi_pool_apply_async_latency", "roundtrip_us",
     "`apply_async(square, i).get()` / `submit().result()` in a loop", ("vs_mpi4py", 10.0)),
]


def parse(lines):
    """The JSON records among `lines` (mpirun and the programs print other things)."""
    records = []
    for line in lines:
        line = line.strip()
        if not line.startswith("{"):
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict) and {"impl", "bench", "metric", "value"} <= record.keys():
            records.append(record)
    return records


def value_of(records, impl, bench, metric):
    for r in records:
        if (r["impl"], r["bench"], r["metric"]) == (impl, bench, metric):
            value = r["value"]
            return float(value) if isinstance(value, (int, float)) else None
    return None


def unit_of(records, bench, metric):
    return next((r.get("unit", "") for r in records
                 if (r["bench"], r["metric"]) == (bench, metric)), "")


def goals(records):
    """[(bench, text, met)] for each goal; met is False when not measured."""
    out = []
    for bench, metric, _, (kind, want) in ROWS:
        mp_v = value_of(records, MP, bench, metric)
        unit = unit_of(records, bench, metric)
        if kind == "at_least":
            met = mp_v is not None and mp_v >= want
            got = "not measured" if mp_v is None else f"{mp_v:.3g}"
            out.append((bench, f"≥ {want:g}: {got}", met))
        else:
            ratio = better_ratio(mp_v, value_of(records, PY, bench, metric), unit)
            met = ratio is not None and ratio >= want
            got = "not measured" if ratio is None else fmt_ratio(ratio)
            out.append((bench, f"≥ {want:g}× mpi4py.futures: {got}", met))
    return out


def render(records, note=""):
    lines = ["| Row | mp over MPI | mpi4py.futures | mp / mpi4py | Goal |",
             "|---|---|---|---|---|"]
    for (bench, metric, what, _), (_, goal, met) in zip(ROWS, goals(records)):
        unit = unit_of(records, bench, metric)
        mp_v, py_v = value_of(records, MP, bench, metric), value_of(records, PY, bench, metric)
        lines.append(f"| `{bench}` ({what}) | {fmt(mp_v, unit)} | {fmt(py_v, unit)} | "
                     f"{fmt_ratio(better_ratio(mp_v, py_v, unit))} | {goal} — "
                     f"{'met' if met else 'MISSED'} |")
    extra = []
    local = value_of(records, MP, "mpi_pool_map_cpu", "local_speedup")
    if local is not None:
        extra.append(f"a local `Pool(2)` in the same run: speedup {local:.3g}")
    ping = value_of(records, MP, "mpi_ping_pong", "roundtrip_us")
    if ping is not None:
        extra.append(f"raw MPI ping-pong between two ranks (the floor): {fmt(ping, 'us')}")
    text = "\n".join(lines) + "\n"
    if extra:
        sentence = "; ".join(extra)
        text += "\n" + sentence[0].upper() + sentence[1:] + ".\n"
    if note:
        text += "\n" + note + "\n"
    return text


def update_readme(readme, table):
    """Writes `table` between the markers of `readme`; False if it has none."""
    content = readme.read_text()
    if BEGIN not in content or END not in content or content.index(BEGIN) > content.index(END):
        return False
    start, end = content.index(BEGIN), content.index(END) + len(END)
    readme.write_text(content[:start] + f"{BEGIN}\n{table}{END}" + content[end:])
    return True


def run(build, quick):
    command = [str(HERE / "mpi.sh"), str(build)] + (["--quick"] if quick else [])
    print("#", " ".join(command), file=sys.stderr, flush=True)
    done = subprocess.run(command, stdout=subprocess.PIPE, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"bench/mpi.sh failed ({done.returncode})")
    return done.stdout.splitlines()


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("build", nargs="?", type=Path, help="build dir with mp-bench-mpi")
    ap.add_argument("--quick", action="store_true", help="smaller sizes (both sides)")
    ap.add_argument("--repeat", type=int, default=3, metavar="K",
                    help="invocations of bench/mpi.sh; each row keeps its best (default 3)")
    ap.add_argument("--update-readme", action="store_true", help="write README's MPI table")
    ap.add_argument("--raw-out", type=Path, help="also save the JSON lines here")
    ap.add_argument("--from-raw", type=Path, help="report saved JSON lines; run nothing")
    ap.add_argument("--readme", type=Path, default=ROOT / "README.md", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if (args.build is None) == (args.from_raw is None):
        ap.error("give BUILD_DIR or --from-raw FILE")
    if args.repeat < 1:
        ap.error("--repeat must be at least 1")
    try:
        if args.from_raw:
            records = parse(args.from_raw.read_text().splitlines())
        else:
            records = best_of([parse(run(args.build, args.quick)) for _ in range(args.repeat)])
    except (OSError, RuntimeError) as e:
        print(f"mpi_report: {e}", file=sys.stderr)
        return 2
    if args.raw_out:
        args.raw_out.write_text("".join(json.dumps(r) + "\n" for r in records))
    load = os.getloadavg()[0]
    note = (f"Measured {datetime.date.today().isoformat()}, `mpirun -n 3` on "
            f"{os.cpu_count()} CPUs, best of {args.repeat} invocation"
            f"{'s' if args.repeat != 1 else ''}, load average {load:.1f} at the end"
            f"{', --quick sizes' if args.quick else ''}.")
    table = render(records, "" if args.from_raw else note)
    print(table, end="")
    if args.update_readme:
        if not update_readme(args.readme, table):
            print(f"mpi_report: {args.readme} has no {BEGIN} ... {END}", file=sys.stderr)
            return 2
        print(f"# wrote the MPI table into {args.readme}", file=sys.stderr)
    return 0 if all(met for _, _, met in goals(records)) else 1


if __name__ == "__main__":
    sys.exit(main())
