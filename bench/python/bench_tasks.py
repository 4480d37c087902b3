"""The task functions that both Python sides of mp-bench hand to their pools
(mp_bench.py's multiprocessing rows and mpi4py_bench.py's MPIPoolExecutor rows), so
that both time the same work. A module of its own, so that workers import it by name.
"""


def square(x):
    return x * x


def count_primes_below(n):
    """Naive trial division; count_primes_below(20000) == 2262."""
    count = 0
    for k in range(2, n):
        d = 2
        while d * d <= k:
            if k % d == 0:
                break
            d += 1
        else:
            count += 1
    return count
