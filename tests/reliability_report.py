#!/usr/bin/env python3
"""Writes README's Reliability section from the figures the last runs recorded.

    reliability_report.py [--readme README.md] BUILD_DIR...

Reads BUILD_DIR/reliability/*.jsonl for each build directory that has them:
figures.jsonl, written by the test suite (tests/figures.hpp, tests/leak_check.sh),
and fuzz.jsonl, written by `./build.sh fuzz`. Prints the markdown block and, with
--readme, replaces what lies between <!-- reliability:begin --> and
<!-- reliability:end --> in that file. Run by `./build.sh reliability`.
"""
import argparse
import datetime
import json
import os
import pathlib
import platform
import sys

BEGIN = "<!-- reliability:begin -->"
END = "<!-- reliability:end -->"

# What each build directory is (build.sh's names); others are named by path.
BUILD_KINDS = {
    "build": "g++, RelWithDebInfo",
    "build-asan": "g++, AddressSanitizer + UndefinedBehaviorSanitizer + LeakSanitizer",
    "build-fuzz": "clang++, libFuzzer + ASan + UBSan + LSan",
}


def read_figures(build_dir):
    records = []
    for path in sorted(pathlib.Path(build_dir, "reliability").glob("*.jsonl")):
        for line in path.read_text().splitlines():
            if line.strip():
                record = json.loads(line)
                record["build"] = os.path.basename(os.path.normpath(build_dir))
                records.append(record)
    return records


def fmt(value):
    return f"{value:,}" if isinstance(value, int) else str(value)


def test_figure(records, build, figure, test_prefix=""):
    """Sum of `figure` over the tests of `build` whose name contains test_prefix."""
    values = [r["value"] for r in records
              if r.get("source") == "test" and r["build"] == build and r["figure"] == figure
              and test_prefix in r["test"]]
    return sum(values) if values else None


def methods_of(records, build, figure):
    """The start methods the tests that recorded `figure` ran with, from their names:
    a parameterised test ends in /<method>, a fault-injection one in _<method>."""
    methods = set()
    for r in records:
        if r.get("source") == "test" and r["build"] == build and r["figure"] == figure:
            methods.add(r["test"].rsplit("/", 1)[-1].rsplit("_", 1)[-1])
    if not methods:
        return "every start method"
    *rest, last = sorted(methods)
    return f"{', '.join(rest)} and {last}" if rest else last


def leak_figure(records, build, figure):
    for r in records:
        if r.get("source") == "leak_check" and r["build"] == build and r["figure"] == figure:
            return r["value"]
    return None


def figure_row(lookup, figures, check, result):
    """A row of the tests' table: `check` (its "{methods}": the start methods the first
    figure's tests ran with), and result(*values) of the named figures
    (looked up with test_figure or leak_figure). None for a build without the first
    figure, which says that the row's test ran."""
    def make(records, build):
        values = [lookup(records, build, figure) for figure in figures]
        if values[0] is None:
            return None
        return (check.replace("{methods}", methods_of(records, build, figures[0])),
                result(*values))
    return make


def load_row(records, build):
    load = [r for r in records if r.get("source") == "test" and r["build"] == build
            and r["figure"].startswith("queue_load_items_")
            and not r["figure"].startswith("queue_load_items_per_s_")]
    if not load:
        return None
    rates = [r["value"] for r in records if r.get("source") == "test"
             and r["build"] == build
             and r["figure"].startswith("queue_load_items_per_s_")]
    methods = ", ".join(sorted(r["figure"].rsplit("_", 1)[1] for r in load))
    return ("load: 4 producers and 4 consumers move items through one "
            f"Queue ({methods}), checked by count, sum and sum of squares",
            f"{fmt(sum(r['value'] for r in load))} items moved, none lost or "
            "duplicated" + (f"; {fmt(min(rates))} to {fmt(max(rates))} items/s"
                            if rates else ""))


def fault_row(records, build):
    workers_killed = test_figure(records, build, "fault_workers_killed")
    if workers_killed is None:
        return None
    participants = sorted({r["test"].split("/")[-1].rsplit("_", 1)[0] for r in records
                           if r.get("source") == "test" and r["build"] == build
                           and r["figure"] == "fault_workers_killed"})
    workers_started = test_figure(records, build, "fault_workers_started")
    return ("fault injection: workers SIGKILLed at random moments while "
            "they work on shared state (participants: "
            + ", ".join(participants) + "; "
            + methods_of(records, build, "fault_workers_killed") + ")",
            f"{fmt(workers_killed)} of {fmt(workers_started)} workers killed; "
            "state consistent, every killed worker died of the SIGKILL, no fd "
            "or process left")


# The tests' table, row by row: each maker gives (check, result) for a build, or None.
TEST_ROWS = [
    figure_row(test_figure,
               ("pickle_inputs_tried", "pickle_inputs_rejected", "pickle_inputs_loaded"),
               "pickle bad input: every truncation and byte edit of 8 representative pickles",
               lambda tried, rejected, loaded:
               f"{fmt(tried)} inputs: {fmt(rejected)} rejected with UnpicklingError, "
               f"{fmt(loaded)} loaded (edited value bytes), nothing else"),
    figure_row(test_figure, ("processes_started", "fds_leaked"),
               "fd leak: processes started, killed, joined, closed ({methods}), "
               "/proc/self/fd before and after",
               lambda started, leaked: f"{fmt(started)} processes, {fmt(leaked)} fds leaked"),
    figure_row(test_figure,
               ("parents_killed", "daemon_children", "daemon_children_gone",
                "nondaemon_children", "nondaemon_children_still_running"),
               "SIGKILL a parent with running children (daemon and non-daemon, {methods})",
               lambda killed, daemons, gone, others, running:
               f"{fmt(killed)} parents killed: {fmt(gone)} of {fmt(daemons)} daemon children "
               f"died with them; {fmt(running)} of {fmt(others)} non-daemon children kept "
               "running (as in Python)"),
    figure_row(test_figure, ("pool_parents_killed", "pool_workers", "pool_workers_gone"),
               "SIGKILL a parent with a running Pool ({methods} workers)",
               lambda parents, workers, gone:
               f"{fmt(parents)} parents killed: {fmt(gone)} of {fmt(workers)} pool workers "
               "died with them"),
    load_row,
    figure_row(test_figure, ("queue_processes_sigkilled", "queue_items_checked"),
               "Queue producers and consumers SIGKILLed at random in put/get ({methods})",
               lambda killed, checked:
               f"{fmt(killed)} processes killed; {fmt(checked)} items delivered, each whole, "
               "in order per producer, never twice; the queue kept working"),
    fault_row,
    figure_row(leak_figure, ("processes_checked", "stray_processes", "new_dev_shm_entries"),
               "after the whole suite: processes of this build still running, new /dev/shm "
               "entries",
               lambda checked, strays, shm:
               f"{fmt(strays)} stray processes (of {fmt(checked)} checked), {fmt(shm)} new "
               "/dev/shm entries"),
]


def render(records, builds):
    lines = []
    when = datetime.date.today().isoformat()
    lines.append(f"Generated {when} on {platform.machine()}, Linux {platform.release()}, "
                 f"{os.cpu_count()} CPUs, by `./build.sh reliability` from the figures the "
                 "last `./build.sh test`, `sanitize` and `fuzz` runs recorded (no number here is "
                 "typed by hand). CI runs all three and fails on any finding.")
    lines.append("")

    fuzz = [r for r in records if r.get("source") == "fuzz"]
    if fuzz:
        lines.append("Fuzzing (libFuzzer, clang++ with ASan + UBSan + LSan; a crash, leak, UB or "
                     "an exception other than the documented one fails CI):")
        lines.append("")
        lines.append("| target | run | inputs executed | seed inputs | corpus after | coverage "
                     "(edges) | findings |")
        lines.append("|---|---:|---:|---:|---:|---:|---:|")
        for r in fuzz:
            lines.append(f"| `{r['target']}` | {r['seconds']} s | {fmt(r['executions'])} | "
                         f"{fmt(r['seed_inputs'])} | {fmt(r['corpus_inputs'])} | "
                         f"{fmt(r['coverage_edges'])} | 0 |")
        lines.append("")

    rows = []
    for build in builds:
        kind = BUILD_KINDS.get(build, build)
        for make in TEST_ROWS:
            row = make(records, build)
            if row:
                rows.append((kind,) + row)
    if rows:
        lines.append("Tests (`ctest`; the sanitizer build reports any leak, UB or memory error as "
                     "a failure):")
        lines.append("")
        lines.append("| build | check | result |")
        lines.append("|---|---|---|")
        for kind, check, result in rows:
            lines.append(f"| {kind} | {check} | {result} |")
        lines.append("")
    if not fuzz and not rows:
        lines.append("No figures recorded yet: run `./build.sh test`, `./build.sh sanitize` and "
                     "`./build.sh fuzz` first.")
        lines.append("")
    return "\n".join(lines).rstrip("\n")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--readme", help="README.md to update between the markers")
    parser.add_argument("build_dirs", nargs="+")
    args = parser.parse_args()
    records, builds = [], []
    for build_dir in args.build_dirs:
        found = read_figures(build_dir)
        if found:
            records += found
            builds.append(found[0]["build"])
    block = render(records, builds)
    print(block)
    if args.readme:
        text = pathlib.Path(args.readme).read_text()
        if BEGIN not in text or END not in text:
            sys.exit(f"reliability_report.py: {args.readme} has no {BEGIN} ... {END} block")
        head, rest = text.split(BEGIN, 1)
        _, tail = rest.split(END, 1)
        pathlib.Path(args.readme).write_text(f"{head}{BEGIN}\n{block}\n{END}{tail}")


if __name__ == "__main__":
    main()
