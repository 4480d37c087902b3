#!/usr/bin/env python3
"""Tests of tests/reliability_report.py: the README block says what the recorded figures
say, the start methods included (they come from the tests' names, never typed here).

    python3 tests/checks/reliability_report_test.py -v
"""

import sys
import unittest
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import reliability_report  # noqa: E402


def figure(test, name, value, build="build"):
    return {"source": "test", "build": build, "test": test, "figure": name, "value": value}


class Methods(unittest.TestCase):
    def test_parameterised_and_fault_injection_names_give_the_methods(self):
        records = [
            figure("StartMethods/ResourceLeak.ManyProcesses/fork", "processes_started", 64),
            figure("StartMethods/ResourceLeak.ManyProcesses/forkserver", "processes_started", 64),
            figure("Participants/FaultInjection.Kill/dict_spawn", "fault_workers_killed", 3),
            figure("Participants/FaultInjection.Kill/pool_fork", "fault_workers_killed", 2),
        ]
        self.assertEqual(reliability_report.methods_of(records, "build", "processes_started"),
                         "fork and forkserver")
        self.assertEqual(reliability_report.methods_of(records, "build", "fault_workers_killed"),
                         "fork and spawn")
        self.assertEqual(reliability_report.methods_of(records, "other", "processes_started"),
                         "every start method")
        three = [figure(f"StartMethods/ResourceLeak.ManyProcesses/{method}", "processes_started",
                        64) for method in ("spawn", "fork", "forkserver")]
        self.assertEqual(reliability_report.methods_of(three, "build", "processes_started"),
                         "fork, forkserver and spawn")

    def test_the_rows_name_the_methods_that_ran(self):
        leak = "StartMethods/ResourceLeak.ManyProcesses/"
        records = [figure(leak + method, name, value)
                   for method in ("spawn", "forkserver")
                   for name, value in (("processes_started", 64), ("fds_leaked", 0))]
        block = reliability_report.render(records, ["build"])
        self.assertIn("(forkserver and spawn)", block)
        self.assertIn("128 processes, 0 fds leaked", block)
        self.assertNotIn("fork and spawn", block)


if __name__ == "__main__":
    unittest.main()
