"""mpi4py.futures' side of mp-bench-mpi (bench/mpi.sh runs both under mpirun -n 3):
the same rows, timed the same way, with MPIPoolExecutor (one worker per serving rank).

    mpirun -n 3 python3 -m mpi4py.futures bench/python/mpi4py_bench.py [--quick]
"""
import json
import os
import statistics
import sys
import time

from mpi4py.futures import MPIPoolExecutor

# The tasks mp_bench.py times too (this directory is not on the path under mpi4py.futures).
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_tasks import count_primes_below, square  # noqa: E402

RUNS = 3


def emit(bench, params, metric, runs, unit):
    print(json.dumps({"impl": "mpi4py", "bench": bench, "params": params, "metric": metric,
                      "value": statistics.median(runs), "unit": unit, "runs": len(runs)}),
          flush=True)


def main():
    quick = "--quick" in sys.argv
    with MPIPoolExecutor() as ex:
        tasks = [20000] * 64
        list(ex.map(count_primes_below, [100, 100]))
        speedups = []
        for _ in range(RUNS):
            start = time.perf_counter()
            serial = [count_primes_below(x) for x in tasks]
            t_serial = time.perf_counter() - start
            start = time.perf_counter()
            assert list(ex.map(count_primes_below, tasks)) == serial
            speedups.append(t_serial / (time.perf_counter() - start))
        emit("mpi_pool_map_cpu", {"chunks": 64, "n_per_chunk": 20000}, "speedup", speedups, "x")

        n = 1000 if quick else 5000
        for i in range(100):
            ex.submit(square, i).result()
        runs = []
        for _ in range(RUNS):
            start = time.perf_counter()
            for i in range(n):
                assert ex.submit(square, i).result() == i * i
            runs.append((time.perf_counter() - start) / n * 1e6)
        emit("mpi_pool_apply_async_latency", {"N": n}, "roundtrip_us", runs, "us")

        n = 200_000 if quick else 1_000_000
        chunksize = n // 64
        list(ex.map(square, [1] * 1000))
        runs = []
        for _ in range(RUNS):
            start = time.perf_counter()
            results = list(ex.map(square, range(n), chunksize=chunksize))
            elapsed = time.perf_counter() - start
            assert len(results) == n and results[-1] == (n - 1) ** 2
            runs.append(n / elapsed)
        emit("mpi_pool_map_trivial", {"N": n, "chunksize": chunksize}, "tasks_per_s", runs,
             "tasks/s")


if __name__ == "__main__":
    main()
