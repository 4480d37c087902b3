#!/usr/bin/env python3
"""Tests of bench/mpi_report.py's parsing, goal checks and README update, on saved
JSON lines (no mpirun).

    python3 bench/mpi_report_test.py [-v]
"""

import contextlib
import io
import json
import sys
import tempfile
import unittest
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import mpi_report  # noqa: E402


def line(impl, bench, metric, value, unit):
    return json.dumps({"impl": impl, "bench": bench, "params": {}, "metric": metric,
                       "value": value, "unit": unit, "runs": 3})


def run_lines(latency_mp=30.0, latency_py=400.0, speedup=1.9, trivial_mp=2e7,
              trivial_py=1e6):
    return [
        line("mp", "mpi_ping_pong", "roundtrip_us", 2.5, "us"),
        "some mpirun chatter",
        line("mp", "mpi_pool_map_cpu", "speedup", speedup, "x"),
        line("mp", "mpi_pool_map_cpu", "local_speedup", 1.9, "x"),
        line("mp", "mpi_pool_apply_async_latency", "roundtrip_us", latency_mp, "us"),
        line("mp", "mpi_pool_map_trivial", "tasks_per_s", trivial_mp, "tasks/s"),
        '{"not": "a record"}',
        "{broken json",
        line("mpi4py", "mpi_pool_map_cpu", "speedup", 1.2, "x"),
        line("mpi4py", "mpi_pool_apply_async_latency", "roundtrip_us", latency_py, "us"),
        line("mpi4py", "mpi_pool_map_trivial", "tasks_per_s", trivial_py, "tasks/s"),
    ]


def met(records):
    return {bench: ok for bench, _, ok in mpi_report.goals(records)}


class Parse(unittest.TestCase):
    def test_keeps_only_records(self):
        records = mpi_report.parse(run_lines())
        self.assertEqual(len(records), 8)
        self.assertEqual(mpi_report.value_of(records, "mpi4py", "mpi_pool_map_trivial",
                                             "tasks_per_s"), 1e6)

    def test_non_numeric_value_is_not_measured(self):
        records = mpi_report.parse([line("mp", "mpi_pool_map_cpu", "speedup", "fast", "x")])
        self.assertIsNone(mpi_report.value_of(records, "mp", "mpi_pool_map_cpu", "speedup"))


class BestOf(unittest.TestCase):
    def test_each_row_keeps_its_best_invocation(self):
        slow = mpi_report.parse(run_lines(latency_mp=90.0, speedup=1.9, trivial_mp=1e7))
        fast = mpi_report.parse(run_lines(latency_mp=30.0, speedup=1.5, trivial_mp=2e7))
        best = mpi_report.best_of([slow, fast])
        value = lambda impl, bench, metric: mpi_report.value_of(best, impl, bench, metric)
        self.assertEqual(value("mp", "mpi_pool_apply_async_latency", "roundtrip_us"), 30.0)
        self.assertEqual(value("mp", "mpi_pool_map_cpu", "speedup"), 1.9)
        self.assertEqual(value("mp", "mpi_pool_map_trivial", "tasks_per_s"), 2e7)
        self.assertEqual(len(best), len(slow))

    def test_repeat_must_be_positive(self):
        with contextlib.redirect_stderr(io.StringIO()), self.assertRaises(SystemExit):
            mpi_report.main(["build", "--repeat", "0"])


class Goals(unittest.TestCase):
    def test_all_met(self):
        self.assertTrue(all(met(mpi_report.parse(run_lines())).values()))

    def test_latency_is_a_time_lower_is_better(self):
        # 400 / 41 < 10: missed; 400 / 40 = 10: met.
        self.assertFalse(met(mpi_report.parse(run_lines(latency_mp=41.0)))
                         ["mpi_pool_apply_async_latency"])
        self.assertTrue(met(mpi_report.parse(run_lines(latency_mp=40.0)))
                        ["mpi_pool_apply_async_latency"])

    def test_trivial_is_a_rate_higher_is_better(self):
        self.assertFalse(met(mpi_report.parse(run_lines(trivial_mp=9e6)))
                         ["mpi_pool_map_trivial"])

    def test_speedup_is_mps_own(self):
        self.assertFalse(met(mpi_report.parse(run_lines(speedup=1.79)))["mpi_pool_map_cpu"])

    def test_missing_rows_are_missed_not_met(self):
        records = mpi_report.parse([l for l in run_lines() if '"mpi4py"' not in l])
        goals = met(records)
        self.assertFalse(goals["mpi_pool_apply_async_latency"])
        self.assertFalse(goals["mpi_pool_map_trivial"])
        self.assertTrue(goals["mpi_pool_map_cpu"])
        self.assertIn("not measured", mpi_report.render(records))


class Readme(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.TemporaryDirectory()
        self.raw = Path(self.dir.name) / "raw.jsonl"
        self.readme = Path(self.dir.name) / "README.md"

    def tearDown(self):
        self.dir.cleanup()

    def report(self, lines, readme_text):
        self.raw.write_text("\n".join(lines) + "\n")
        self.readme.write_text(readme_text)
        with contextlib.redirect_stdout(io.StringIO()), \
                contextlib.redirect_stderr(io.StringIO()):
            return mpi_report.main(["--from-raw", str(self.raw), "--update-readme",
                                    "--readme", str(self.readme)])

    def test_writes_between_markers_and_keeps_the_rest(self):
        text = f"# T\n\nbefore\n{mpi_report.BEGIN}\nold table\n{mpi_report.END}\nafter\n"
        self.assertEqual(self.report(run_lines(), text), 0)
        out = self.readme.read_text()
        self.assertTrue(out.startswith("# T\n\nbefore\n" + mpi_report.BEGIN + "\n"))
        self.assertTrue(out.endswith(mpi_report.END + "\nafter\n"))
        self.assertNotIn("old table", out)
        self.assertIn("| `mpi_pool_apply_async_latency`", out)
        self.assertIn("13.3×", out)  # 400 / 30
        self.assertNotIn("MISSED", out)

    def test_a_missed_goal_is_written_and_fails(self):
        text = f"{mpi_report.BEGIN}\n{mpi_report.END}\n"
        self.assertEqual(self.report(run_lines(latency_mp=200.0), text), 1)
        self.assertIn("MISSED", self.readme.read_text())

    def test_no_markers_is_an_error_and_leaves_the_readme(self):
        self.assertEqual(self.report(run_lines(), "no markers\n"), 2)
        self.assertEqual(self.readme.read_text(), "no markers\n")


if __name__ == "__main__":
    unittest.main()
