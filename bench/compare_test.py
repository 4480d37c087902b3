#!/usr/bin/env python3
"""Tests of bench/compare.py: it refuses to compare rows of mp-bench and of the
CPython script that measured different things.

    python3 bench/compare_test.py [-v]

With MP_BENCH=path/to/mp-bench in the environment (ctest sets it), also checks
that every row both programs have uses the same sizes, and runs one quick row
through compare.py end to end. With MP_BENCH_BASELINE=path/to/a/mp_bench.py (the
baseline specification the repository's copy implements), checks that every row
of the baseline's SIZES keeps its sizes in bench/python/mp_bench.py. Standard
library only.
"""

import contextlib
import io
import json
import os
import subprocess
import sys
import tempfile
import unittest
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import compare  # noqa: E402


def record(impl, bench, params, metric="ops_per_s", value=1.0, unit="ops/s"):
    return {"impl": impl, "bench": bench, "params": params, "metric": metric,
            "value": value, "unit": unit, "runs": [value]}


MP, PY = "mp-cpp", "cpython-multiprocessing"


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
