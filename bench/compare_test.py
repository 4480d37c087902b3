#!/usr/bin/env python3
"""Tests of bench/compare.py: it refuses to compare rows of mp-bench and of the
CPython script that measured different things, and its busy mode (--busy K) starts
and stops its busy loops and writes its own README block.

    python3 bench/compare_test.py [-v]

With MP_BENCH=path/to/mp-bench in the environment (ctest sets it), also checks
that every row both programs have uses the same sizes, and runs one quick row
through compare.py end to end. With MP_BENCH_BASELINE=path/to/a/mp_bench.py (the
baseline specification the repository's copy implements), checks that every row
of the baseline's SIZES keeps its sizes in bench/python/mp_bench.py. Standard
library only.
"""

import argparse
import contextlib
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import unittest
import unittest.mock
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import compare  # noqa: E402


def record(impl, bench, params, metric="ops_per_s", value=1.0, unit="ops/s"):
    return {"impl": impl, "bench": bench, "params": params, "metric": metric,
            "value": value, "unit": unit, "runs": [value]}


MP, PY = "mp-cpp", "cpython-multiprocessing"


class GoalUnits(unittest.TestCase):
    def test_an_unmeasured_goal_shows_the_unit_its_metric_names(self):
        lines = compare.goal_lines([])
        lock = next(line for line in lines if line.startswith("- lock_uncontended:"))
        self.assertIn("≤ 10 ns: not measured", lock)

    def test_a_measured_goal_shows_the_unit_of_its_record(self):
        lines = compare.goal_lines([record(MP, "lock_uncontended", {}, "ns_per_pair", 4.0,
                                           "ns")])
        lock = next(line for line in lines if line.startswith("- lock_uncontended:"))
        self.assertIn("≤ 10 ns: 4 ns — met", lock)

    def test_time_units_come_from_the_metric_name_and_rates_have_none(self):
        for metric, unit in [("roundtrip_us", "us"), ("ns_per_pair", "ns"),
                             ("us_per_cycle", "us"), ("parallel_s", "s"),
                             ("msgs_per_s", ""), ("GB_per_s", ""), ("speedup", "")]:
            self.assertEqual(compare.metric_unit(metric), unit, metric)


class ParamMismatches(unittest.TestCase):
    def test_same_params_in_any_key_order_match(self):
        records = [record(MP, "lock_uncontended", {"N": 5, "start_method": "fork"}),
                   record(PY, "lock_uncontended", {"start_method": "fork", "N": 5})]
        self.assertEqual(compare.param_mismatches(records), [])

    def test_a_different_size_is_named_with_both_values(self):
        records = [record(MP, "pipe_roundtrip", {"N": 5000, "start_method": "fork"}),
                   record(PY, "pipe_roundtrip", {"N": 20000, "start_method": "fork"})]
        messages = compare.param_mismatches(records)
        self.assertEqual(len(messages), 1)
        self.assertIn("pipe_roundtrip", messages[0])
        self.assertIn("N: mp-cpp 5000, CPython 20000", messages[0])
        self.assertNotIn("start_method", messages[0])

    def test_a_key_only_one_side_has_is_a_mismatch(self):
        records = [record(MP, "heap_churn", {"N": 5, "window": 2000}),
                   record(PY, "heap_churn", {"N": 5})]
        messages = compare.param_mismatches(records)
        self.assertEqual(len(messages), 1)
        self.assertIn('window: mp-cpp 2000, CPython "(absent)"', messages[0])

    def test_rows_of_one_side_and_probes_are_not_compared(self):
        records = [record(MP, "shared_memory_array_write_prefault", {"size_bytes": 1}),
                   record("limit", "probe_fork", {"N": 50}),
                   record(PY, "probe_fork", {"N": 200}),
                   record(PY, "heap_churn", {"N": 7})]
        self.assertEqual(compare.param_mismatches(records), [])

    def test_every_metric_line_is_checked(self):
        records = [record(MP, "pool_map_cpu", {"chunks": 16}, metric="speedup"),
                   record(MP, "pool_map_cpu", {"chunks": 64}, metric="serial_s"),
                   record(PY, "pool_map_cpu", {"chunks": 16}, metric="speedup")]
        messages = compare.param_mismatches(records)
        self.assertEqual(len(messages), 1)
        self.assertIn("chunks: mp-cpp 64, CPython 16", messages[0])


class SizeMismatches(unittest.TestCase):
    def test_only_common_rows_with_different_sizes(self):
        mp_sizes = {"a": (10, 5), "b": (20, 4), "only_mp": (1, 1)}
        py_sizes = {"a": (10, 5), "b": (20, 5), "only_py": (2, 2)}
        self.assertEqual(compare.size_mismatches(mp_sizes, py_sizes),
                         ["b: mp-cpp full/quick 20/4, CPython 20/5"])

    def test_python_sizes_reads_the_scripts_table(self):
        sizes = compare.python_sizes()
        self.assertEqual(sizes["process_start_fork"], (200, 50))
        self.assertTrue(all(len(v) == 2 for v in sizes.values()))


def run_main(argv):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = compare.main(argv)
    return status, out.getvalue(), err.getvalue()


class FromRaw(unittest.TestCase):
    def raw_file(self, records):
        handle = tempfile.NamedTemporaryFile("w", suffix=".jsonl", delete=False)
        self.addCleanup(os.unlink, handle.name)
        with handle:
            for r in records:
                handle.write(json.dumps(r) + "\n")
        return handle.name

    def test_unlike_rows_are_refused_with_status_2_and_no_table(self):
        path = self.raw_file([
            record(MP, "queue_throughput_1k", {"N": 20000, "payload_bytes": 1024}),
            record(PY, "queue_throughput_1k", {"N": 20000, "payload_bytes": 1000})])
        status, out, err = run_main(["--from-raw", path])
        self.assertEqual(status, 2)
        self.assertEqual(out, "")
        self.assertIn("refusing to compare", err)
        self.assertIn("queue_throughput_1k: payload_bytes: mp-cpp 1024, CPython 1000", err)

    def test_like_rows_print_the_table(self):
        path = self.raw_file([
            record(MP, "queue_throughput_1k", {"N": 20000}, value=4.0),
            record(PY, "queue_throughput_1k", {"N": 20000}, value=2.0)])
        status, out, err = run_main(["--from-raw", path])
        self.assertEqual(status, 0, err)
        self.assertIn("| queue_throughput_1k | ops_per_s |", out)
        self.assertIn("2×", out)


class Goals(FromRaw):
    def dict_records(self, concurrent, single):
        params = {"N": 20000}
        return [record(MP, "manager_dict_concurrent", params, value=concurrent),
                record(PY, "manager_dict_concurrent", params, value=concurrent / 300),
                record(MP, "manager_dict_set_get", params, "set_ops_per_s", single),
                record(PY, "manager_dict_set_get", params, "set_ops_per_s", single / 600)]

    def test_a_row_against_another_row_of_mp(self):
        status, out, err = run_main(["--from-raw", self.raw_file(self.dict_records(15.0, 10.0))])
        self.assertEqual(status, 0, err)
        self.assertIn("- manager_dict_concurrent: ≥ 250× CPython: 300× — met; "
                      "≥ 1.5× manager_dict_set_get set_ops_per_s: 1.5× — met", out)

    def test_two_writers_slower_than_one_is_missed(self):
        _, out, _ = run_main(["--from-raw", self.raw_file(self.dict_records(6.0, 10.0))])
        self.assertIn("≥ 1.5× manager_dict_set_get set_ops_per_s: 0.6× — MISSED", out)

    def test_the_other_row_missing_is_not_measured(self):
        _, out, _ = run_main(["--from-raw", self.raw_file(self.dict_records(6.0, 10.0)[:2])])
        self.assertIn("≥ 1.5× manager_dict_set_get set_ops_per_s: not measured", out)


class CompileTime(FromRaw):
    GXX = "g++ (Debian 12.2.0-14) 12.2.0"

    def test_compile_rows_get_their_table_and_goals(self):
        path = self.raw_file([
            record(MP, "queue_throughput_1k", {"N": 20000}, value=4.0),
            record(PY, "queue_throughput_1k", {"N": 20000}, value=2.0),
            record(self.GXX, "compile_mp_hpp", {"flags": "-fsyntax-only"}, "cpu_s", 0.8, "s"),
            record(self.GXX, "compile_example_pool_map", {"flags": "-O0 -c"}, "cpu_s", 2.5,
                   "s"),
            record(self.GXX, "compile_std_headers", {"flags": "-fsyntax-only"}, "cpu_s", 0.4,
                   "s")])
        status, out, err = run_main(["--from-raw", path])
        self.assertEqual(status, 0, err)
        self.assertIn("| compile_mp_hpp (flags=-fsyntax-only) | 0.8 s | 2× |", out)
        self.assertIn("- compile_mp_hpp: ≤ 1 s: 0.8 s — met", out)
        self.assertIn("- compile_example_pool_map: ≤ 2 s: 2.5 s — MISSED", out)
        self.assertIn(self.GXX, out)
        # Compile rows are not rows of the CPython table.
        self.assertNotIn("| compile_mp_hpp | cpu_s |", out)

    def test_no_compile_rows_no_compile_section(self):
        path = self.raw_file([record(MP, "queue_throughput_1k", {"N": 20000}, value=4.0),
                              record(PY, "queue_throughput_1k", {"N": 20000}, value=2.0)])
        status, out, err = run_main(["--from-raw", path])
        self.assertEqual(status, 0, err)
        self.assertNotIn("Compile time", out)
def alive(pid):
    """Whether process `pid` exists and is not a zombie."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


CPUS = sorted(os.sched_getaffinity(0))[:2]


class BusyLoopsTest(unittest.TestCase):
    def test_k_loops_per_cpu_each_pinned_to_its_cpu_and_all_stopped(self):
        with compare.BusyLoops(2, CPUS) as loops:
            pids = [p.pid for p in loops.procs]
            self.assertEqual(len(pids), 2 * len(CPUS))
            self.assertTrue(all(alive(pid) for pid in pids))
            pinned = sorted(cpu for pid in pids for cpu in os.sched_getaffinity(pid))
            self.assertEqual(pinned, sorted(CPUS * 2))
        self.assertEqual(loops.procs, [])
        self.assertFalse(any(alive(pid) for pid in pids))

    def test_stopped_when_the_block_raises(self):
        with self.assertRaises(RuntimeError):
            with compare.BusyLoops(1, CPUS) as loops:
                pids = [p.pid for p in loops.procs]
                raise RuntimeError("the benchmark failed")
        self.assertEqual(len(pids), len(CPUS))
        self.assertFalse(any(alive(pid) for pid in pids))

    def test_zero_per_cpu_starts_nothing(self):
        with compare.BusyLoops(0, CPUS) as loops:
            self.assertEqual(loops.procs, [])

    def test_loops_started_before_a_failed_start_are_stopped(self):
        started = []
        real_popen = compare.subprocess.Popen

        def popen_that_fails_the_third(*args, **kwargs):
            if len(started) == 2:
                raise OSError("no more processes")
            started.append(real_popen(*args, **kwargs))
            return started[-1]

        with unittest.mock.patch.object(compare.subprocess, "Popen", popen_that_fails_the_third):
            with self.assertRaises(OSError):
                with compare.BusyLoops(3, CPUS):
                    self.fail("the block must not run")
        self.assertEqual(len(started), 2)
        self.assertFalse(any(alive(p.pid) for p in started))


def busy_records(barrier_us, event_us, py_us=100.0):
    return [record(MP, "barrier_cycle", {"N": 5}, "us_per_cycle", barrier_us, "us"),
            record(PY, "barrier_cycle", {"N": 5}, "us_per_cycle", py_us, "us"),
            record(MP, "event_pingpong", {"N": 5}, "roundtrip_us", event_us, "us"),
            record(PY, "event_pingpong", {"N": 5}, "roundtrip_us", py_us, "us")]


class BusyMode(unittest.TestCase):
    def setUp(self):
        self.root = Path(tempfile.mkdtemp())
        self.addCleanup(shutil.rmtree, self.root)
        patcher = unittest.mock.patch.object(compare, "ROOT", self.root)
        patcher.start()
        self.addCleanup(patcher.stop)
        # main() pins this process to --cpus
        self.addCleanup(os.sched_setaffinity, 0, os.sched_getaffinity(0))

    def fake_run(self, records, seen):
        """A run_both that records which busy loops live while it runs."""
        def run_both(args, mp_bench, python):
            mine = [p for p in live_children() if is_busy_loop(p)]
            seen.append(mine)
            return list(records), 0
        return run_both

    def run_busy(self, argv, records):
        seen = []
        with unittest.mock.patch.object(compare, "run_both", self.fake_run(records, seen)), \
                unittest.mock.patch.object(compare, "mp_bench_sizes", lambda _: {}):
            status, out, err = run_main(["--mp-bench", "/nonexistent/mp-bench",
                                         "--cpus", ",".join(map(str, CPUS))] + argv)
        return status, out, err, seen

    def test_each_invocation_runs_beside_k_loops_per_cpu_and_none_is_left(self):
        status, out, err, seen = self.run_busy(["--busy", "2", "--repeat", "3"],
                                               busy_records(1.0, 1.0))
        self.assertEqual(status, 0, err)
        self.assertEqual([len(pids) for pids in seen], [2 * len(CPUS)] * 3)
        self.assertEqual(len({pid for pids in seen for pid in pids}), 6 * len(CPUS),
                         "each invocation starts its own loops")
        self.assertFalse(any(alive(pid) for pids in seen for pid in pids))
        self.assertEqual([p for p in live_children() if is_busy_loop(p)], [])

    def test_a_quiet_run_starts_no_loops(self):
        status, _, err, seen = self.run_busy(["--repeat", "2"], busy_records(1.0, 1.0))
        self.assertEqual(status, 0, err)
        self.assertEqual(seen, [[], []])

    def test_the_header_names_the_load_and_how_to_reproduce_it(self):
        _, out, _, _ = self.run_busy(["--busy", "3", "--repeat", "1"], busy_records(1.0, 1.0))
        self.assertIn("; 3 busy-loop processes per CPU beside both.", out)
        self.assertIn("Reproduce with `./build.sh bench --repeat 1 --busy 3`.", out)

    def test_busy_goals_against_cpython_and_the_quiet_figures(self):
        quiet = self.root / "quiet.jsonl"
        quiet.write_text("".join(json.dumps(r) + "\n" for r in busy_records(0.5, 0.1)))
        # barrier 5 us (10x its quiet 0.5 us, 20x CPython); event 4 us (40x its quiet
        # 0.1 us, 25x CPython); CPython 100 us.
        status, out, err, _ = self.run_busy(["--busy", "3", "--repeat", "1", "--quiet-raw",
                                             str(quiet)], busy_records(5.0, 4.0))
        self.assertEqual(status, 0, err)
        self.assertIn("Goals on a busy machine:", out)
        self.assertNotIn("\nGoals:\n", out)
        self.assertIn("- barrier_cycle us_per_cycle: ≥ 3× CPython under the same load: 20× — met",
                      out)
        self.assertIn("- barrier_cycle: ≤ 20× its quiet figure (0.5 us): 10× — met", out)
        self.assertIn("- event_pingpong: ≤ 20× its quiet figure (0.1 us): 40× — MISSED", out)

    def test_the_goal_against_cpython_names_its_rows_and_shows_the_others(self):
        records = busy_records(5.0, 4.0) + [
            record(MP, "pool_map_cpu", {"N": 5}, "speedup", 1.5, "x"),
            record(PY, "pool_map_cpu", {"N": 5}, "speedup", 1.9, "x"),
            record(MP, "heap_churn", {"N": 5}, "peak_rss_MB", 10.0, "MB"),
            record(PY, "heap_churn", {"N": 5}, "peak_rss_MB", 10.0, "MB"),
            record(MP, "not_a_row_yet", {"N": 5}, "roundtrip_us", 1.0, "us"),
            record(PY, "not_a_row_yet", {"N": 5}, "roundtrip_us", 9.0, "us")]
        _, out, _, _ = self.run_busy(["--busy", "3", "--repeat", "1"], records)
        self.assertIn("- barrier_cycle us_per_cycle: ≥ 3× CPython under the same load: 20× — met",
                      out)
        self.assertNotIn("- pool_map_cpu speedup: ≥", out)
        self.assertNotIn("- heap_churn peak_rss_MB: ≥", out)
        self.assertNotIn("- not_a_row_yet roundtrip_us: ≥", out)
        self.assertIn("- pool_map_cpu speedup: no goal under load (" +
                      compare.BUSY_NOT_VS_CPYTHON[("pool_map_cpu", "speedup")] + "): 0.789×",
                      out)
        self.assertIn("- heap_churn peak_rss_MB: no goal under load (memory, not speed): 1×",
                      out)
        self.assertIn("- not_a_row_yet roundtrip_us: no goal under load (not named in "
                      "BUSY_VS_CPYTHON_ROWS): 9×", out)

    def test_every_row_of_the_goal_against_cpython_has_a_cpython_row(self):
        python = (HERE / "python" / "mp_bench.py").read_text()
        for bench, metric in compare.BUSY_VS_CPYTHON_ROWS | set(compare.BUSY_NOT_VS_CPYTHON):
            self.assertIn(f'"{bench}": (', python)
            self.assertIn(f'"{metric}"', python)
        self.assertFalse(compare.BUSY_VS_CPYTHON_ROWS & set(compare.BUSY_NOT_VS_CPYTHON))

    def test_cpython_ahead_under_load_is_missed(self):
        _, out, _, _ = self.run_busy(["--busy", "1", "--repeat", "1"],
                                     busy_records(50.0, 1.0, py_us=100.0))
        self.assertIn("- barrier_cycle us_per_cycle: ≥ 3× CPython under the same load: 2× — MISSED",
                      out)
        self.assertIn("- barrier_cycle: ≤ 20× its quiet figure (—): not measured", out)

    def test_bad_arguments_are_refused(self):
        for argv in (["--busy", "17"], ["--busy", "-1"], ["--quiet-raw", "x.jsonl"]):
            with self.assertRaises(SystemExit, msg=argv), \
                    contextlib.redirect_stderr(io.StringIO()):
                compare.main(argv)

    def selected_rows(self, argv):
        """The --only lists run_both passes to mp-bench and to the CPython script."""
        lists = {}

        def fake_run_json_lines(command, label):
            lists[label] = command[command.index("--only") + 1].split(",")
            return [], 0

        listed = {"mp": ["pipe_roundtrip", "barrier_cycle", "probe_fork",
                         "probe_futex_roundtrip"],
                  "py": ["pipe_roundtrip", "barrier_cycle", "heap_churn"]}
        with unittest.mock.patch.object(
                compare, "list_rows",
                lambda command: listed["py" if str(compare.PYTHON_SCRIPT) in command
                                       else "mp"]), \
                unittest.mock.patch.object(compare, "run_json_lines", fake_run_json_lines):
            compare.run_both(argparse.Namespace(**argv),
                             "mp-bench", "python3")
        return lists

    def test_a_busy_run_leaves_the_probes_out(self):
        common = {"runs": 1, "timeout": 1, "start_method": "fork", "quick": True,
                  "all_python": False}
        for only in (None, "barrier_cycle"):
            busy = self.selected_rows({**common, "busy": 3, "only": only})
            self.assertEqual(busy["mp-bench"], ["barrier_cycle"] if only else
                             ["pipe_roundtrip", "barrier_cycle"], only)
            quiet = self.selected_rows({**common, "busy": 0, "only": only})
            self.assertIn("probe_futex_roundtrip", quiet["mp-bench"], only)

    QUIET_README = ("# mp\n\n## Performance\n\n" + compare.BEGIN + "\nquiet table\n" +
                    compare.END + "\n\n## Reliability\n")

    def test_the_first_busy_table_goes_right_after_the_quiet_one(self):
        (self.root / "README.md").write_text(self.QUIET_README)
        status, out, err, _ = self.run_busy(["--busy", "3", "--repeat", "1", "--update-readme"],
                                            busy_records(1.0, 1.0))
        self.assertEqual(status, 0, err)
        readme = (self.root / "README.md").read_text()
        self.assertEqual(readme, self.QUIET_README.replace(
            compare.END + "\n", compare.END + "\n\n### On a busy machine\n\n" +
            compare.BUSY_BEGIN + "\n" + out + compare.BUSY_END + "\n"))

    def test_a_later_busy_run_replaces_only_the_busy_block(self):
        before = self.QUIET_README.replace(
            "## Reliability", f"{compare.BUSY_BEGIN}\nold busy table\n{compare.BUSY_END}\n\n"
            "## Reliability")
        (self.root / "README.md").write_text(before)
        _, out, _, _ = self.run_busy(["--busy", "3", "--repeat", "1", "--update-readme"],
                                     busy_records(1.0, 1.0))
        readme = (self.root / "README.md").read_text()
        self.assertEqual(readme, before.replace("old busy table\n", out))
        self.assertIn("quiet table", readme)

    def test_a_quiet_run_leaves_the_busy_block_alone(self):
        before = self.QUIET_README + f"{compare.BUSY_BEGIN}\nbusy table\n{compare.BUSY_END}\n"
        (self.root / "README.md").write_text(before)
        _, out, _, _ = self.run_busy(["--repeat", "1", "--update-readme"],
                                     busy_records(1.0, 1.0))
        readme = (self.root / "README.md").read_text()
        self.assertEqual(readme, before.replace("quiet table\n", out))

    def test_busy_tables_with_only_are_not_written(self):
        (self.root / "README.md").write_text(self.QUIET_README)
        _, _, err, _ = self.run_busy(["--busy", "1", "--repeat", "1", "--update-readme",
                                      "--only", "barrier_cycle"], busy_records(1.0, 1.0))
        self.assertIn("README.md left as it is", err)
        self.assertEqual((self.root / "README.md").read_text(), self.QUIET_README)


def live_children():
    """The pids of this process's live children (from /proc, standard library only)."""
    me = str(os.getpid())
    children = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[1] == me and fields[0] != "Z":
            children.append(int(entry.name))
    return children


def is_busy_loop(pid):
    try:
        return b"while True: pass" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


@unittest.skipUnless(os.environ.get("MP_BENCH"), "MP_BENCH (path of mp-bench) not set")
class WithMpBench(unittest.TestCase):
    def test_every_common_row_has_the_same_sizes(self):
        mp_sizes = compare.mp_bench_sizes(os.environ["MP_BENCH"])
        py_sizes = compare.python_sizes()
        self.assertGreater(len(set(mp_sizes) & set(py_sizes)), 10)
        self.assertEqual(compare.size_mismatches(mp_sizes, py_sizes), [])

    def test_sizes_lists_the_rows_of_list(self):
        listed = subprocess.run([os.environ["MP_BENCH"], "--list"], check=True,
                                capture_output=True, text=True).stdout.split()
        self.assertEqual(list(compare.mp_bench_sizes(os.environ["MP_BENCH"])), listed)

    def test_one_quick_row_end_to_end(self):
        result = subprocess.run(
            [sys.executable, str(HERE / "compare.py"), "--mp-bench", os.environ["MP_BENCH"],
             "--only", "lock_uncontended", "--quick", "--runs", "1", "--repeat", "1",
             "--cpus", "0"], capture_output=True, text=True, timeout=300)
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertIn("| lock_uncontended | ns_per_pair |", result.stdout)

    def test_only_compile_runs_the_compile_rows(self):
        result = subprocess.run(
            [sys.executable, str(HERE / "compare.py"), "--mp-bench", os.environ["MP_BENCH"],
             "--only", "compile", "--runs", "1", "--repeat", "1", "--cpus", "0"],
            capture_output=True, text=True, timeout=300)
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertIn("| compile_mp_hpp (flags=-fsyntax-only) |", result.stdout)
        self.assertIn("- compile_example_pool_map: ≤ 2 s:", result.stdout)


@unittest.skipUnless(os.environ.get("MP_BENCH_BASELINE"),
                     "MP_BENCH_BASELINE (the baseline mp_bench.py) not set")
class WithBaseline(unittest.TestCase):
    def test_the_repository_copy_keeps_every_baseline_size(self):
        import importlib.util
        spec = importlib.util.spec_from_file_location("baseline", os.environ["MP_BENCH_BASELINE"])
        baseline = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(baseline)
        ours = compare.python_sizes()
        for name, sizes in baseline.SIZES.items():
            self.assertEqual(ours.get(name), tuple(sizes), name)


if __name__ == "__main__":
    unittest.main()
