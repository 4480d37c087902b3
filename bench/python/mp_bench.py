#!/usr/bin/env python3
"""CPython `multiprocessing` reference for mp-bench (the C++ side is tools/mp-bench).

    python3 bench/python/mp_bench.py [--quick] [--only NAME[,NAME...]] [--runs 3]
                                     [--start-method fork] [--timeout 600] [--list]

Standard library only. One JSON object per line on stdout; progress and errors
on stderr. This is the project's own, shorter implementation of the baseline
specification's reference script: same benchmark names, sizes,
timed sections, params, metrics, units and output schema:

    {"impl": "cpython-multiprocessing", "bench": "queue_throughput_1k",
     "params": {"N": 100000, ...}, "metric": "msgs_per_s",
     "value": 123456.0,            # median of "runs", 6 significant digits
     "unit": "msg/s", "runs": [v1, v2, v3]}
    (value_lock_increment also carries "ok": true|false)

Conventions (mp-bench follows them too): --runs timed runs (default 3), value =
median; clock = time.perf_counter (CLOCK_MONOTONIC); process start-up, Pool and
Manager creation and payload construction are outside the timed section unless
the benchmark measures exactly that; children report ready and wait for a go
Event, the clock starts at go.set(); MB = 1e6 B, GB = 1e9 B; contexts come from
get_context(--start-method) except for process_start_*. Exit status 1 if a
benchmark raised or a check failed; it is named on stderr, the others still run.

Each benchmark's docstring states its exact timed section.
"""

import contextlib
import multiprocessing as mp
import os
import signal
import sys
import time

# argparse, json, zlib and shared_memory are imported where used: a spawned
# child re-imports this file, and process_start_spawn should time
# multiprocessing, not this script's imports.

IMPL = "cpython-multiprocessing"
perf = time.perf_counter
READY_TIMEOUT = 60.0  # s a child may take to report ready / done
RESULT_TIMEOUT = 600.0  # s to wait for a child's timing result
JOIN_TIMEOUT = 60.0  # s to wait for a finished child to exit
SHM_SIZE = 256 * 1024 * 1024
PRIME_N, PRIMES_BELOW_N = 20_000, 2262
WARMUP = 100


class BenchError(Exception):
    """A check failed or a child misbehaved."""


def median(values):
    s = sorted(values)
    mid = len(s) // 2
    return s[mid] if len(s) % 2 else (s[mid - 1] + s[mid]) / 2


def _num(x):
    return float(f"{x:.6g}")


def emit(bench, params, metric, runs, unit, **extra):
    import json
    rec = {"impl": IMPL, "bench": bench, "params": params, "metric": metric,
           "value": _num(median(runs)), "unit": unit, "runs": [_num(r) for r in runs]}
    rec.update(extra)
    print(json.dumps(rec), flush=True)


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def describe_exit(code):
    if code is None:
        return "still running"
    if code >= 0:
        return f"exit code {code}"
    try:
        return f"killed by {signal.Signals(-code).name}"
    except ValueError:
        return f"killed by signal {-code}"


class Children:
    """Started children, all joined when the block ends: terminated, then
    killed, if they outlive the grace period (short if the block raised)."""

    def __init__(self):
        self.procs = []

    def start(self, proc):
        proc.start()
        self.procs.append(proc)
        return proc

    def join_ok(self):
        for p in self.procs:
            p.join(JOIN_TIMEOUT)
        bad = [f"{p.name} {describe_exit(p.exitcode)}" for p in self.procs if p.exitcode != 0]
        if bad:
            raise BenchError("child process failed: " + ", ".join(bad))

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        for p in self.procs:
            p.join(JOIN_TIMEOUT if exc_type is None else 2.0)
            for stop in (p.terminate, p.kill):
                if p.is_alive():
                    stop()
                    p.join(5)
        return False


@contextlib.contextmanager
def make_pool(ctx, processes):
    """Pool closed+joined on success, terminated+joined on error."""
    pool = ctx.Pool(processes)
    try:
        yield pool
    except BaseException:
        pool.terminate()
        pool.join()
        raise
    pool.close()
    pool.join()


def recv_result(conn, kids):
    """One result from a child; if it died or hung instead, say how."""
    try:
        if conn.poll(RESULT_TIMEOUT):
            return conn.recv()
    except EOFError:
        pass
    kids.join_ok()
    raise BenchError("child sent no result")


def wait_sem(sem, count, what):
    for _ in range(count):
        if not sem.acquire(timeout=READY_TIMEOUT):
            raise BenchError(f"child not {what} within {READY_TIMEOUT:.0f}s")


def race_children(ctx, target, args_of, count):
    """Starts `count` children, child i running target(*args_of(i)); each posts the
    ready semaphore, waits for the event, does its share and posts the done semaphore
    (the last three of its arguments). Returns the seconds from the event to the last
    done, the children joined (race_children of tools/mp-bench/children.cpp)."""
    ready, go, done = args_of(0)[-3:]
    with Children() as kids:
        for i in range(count):
            kids.start(ctx.Process(target=target, args=args_of(i)))
        wait_sem(ready, count, "ready")
        t0 = perf()
        go.set()
        wait_sem(done, count, "done")
        seconds = perf() - t0
        kids.join_ok()
    return seconds


@contextlib.contextmanager
def watchdog(seconds):
    """Raise TimeoutError in the parent after `seconds`."""
    def on_alarm(signum, frame):
        raise TimeoutError(f"benchmark exceeded --timeout={seconds}s")
    old = signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


# ---------------------------------------------------------------------------
# Child-side functions (module level, so that spawn can find them)
# ---------------------------------------------------------------------------

def noop():
    pass


def queue_producer(q, n, payload_bytes, ready, go):
    payload = b"\xa5" * payload_bytes if payload_bytes else None
    ready.release()
    go.wait()
    if payload is None:
        for i in range(n):
            q.put(i)
    else:
        for _ in range(n):
            q.put(payload)
    # multiprocessing's exit handler flushes the queue's feeder thread


def pipe_echo(conn):
    while (x := conn.recv()) is not None:
        conn.send(x)
    conn.close()


def value_incrementer(v, n, ready, go, done):
    ready.release()
    go.wait()
    for _ in range(n):
        with v.get_lock():
            v.value += 1
    done.release()


def manager_dict_client(d, n, result_conn):
    len(d)  # connects this process's proxy before the clock starts
    t0 = perf()
    for i in range(n):
        d[i] = i
    t1 = perf()
    total = 0
    for i in range(n):
        total += d[i]
    t2 = perf()
    result_conn.send((t1 - t0, t2 - t1, total))
    result_conn.close()


def manager_dict_writer(d, n, writer, ready, go, done):
    len(d)  # connects this process's proxy before the clock starts
    ready.release()
    go.wait()
    base = writer * n
    for i in range(n):
        d[base + i] = i
    done.release()


def shm_pattern(size, seed):
    """256-byte block seed, seed+1, ... (mod 256), repeated; size % 256 == 0."""
    return bytes((seed + i) & 0xFF for i in range(256)) * (size // 256)


def shm_writer(name, size, seed, result_conn):
    from multiprocessing import shared_memory
    pattern = shm_pattern(size, seed)
    shm = shared_memory.SharedMemory(name=name)
    try:
        t0 = perf()
        shm.buf[:size] = pattern
        elapsed = perf() - t0
    finally:
        shm.close()
    result_conn.send(elapsed)
    result_conn.close()


def barrier_worker(barrier, cycles):
    for _ in range(cycles):
        barrier.wait()


def event_ponger(ping, pong, rounds):
    for _ in range(rounds):
        ping.wait()
        ping.clear()
        pong.set()


# ---------------------------------------------------------------------------
# Benchmarks: fn(cfg, name, n, *extra) emits the result lines of one row
# ---------------------------------------------------------------------------

class Config:
    def __init__(self, quick, runs, start_method):
        self.quick, self.runs, self.start_method = quick, runs, start_method
        self.ctx = mp.get_context(start_method)

    def params(self, **kw):
        return {**kw, "start_method": self.start_method}


def process_start(cfg, name, n, method):
    """Timed: p.start(); p.join() of Process(target=noop), one at a time.
    Run value = median over N processes; one untimed warm-up process first
    (for spawn it also starts the resource tracker)."""
    ctx = mp.get_context(method)

    def one():
        p = ctx.Process(target=noop)
        with Children() as kids:
            t0 = perf()
            kids.start(p)
            p.join()
            dt = perf() - t0
        code = p.exitcode
        p.close()
        if code != 0:
            raise BenchError(f"noop child: {describe_exit(code)}")
        return dt

    one()
    runs = [median([one() for _ in range(n)]) * 1e6 for _ in range(cfg.runs)]
    emit(name, {"N": n, "start_method": method}, "per_process_us", runs, "us")


def pool_map_trivial(cfg, name, n, chunksize):
    """Timed: pool.map(square, range(N), chunksize) on a running Pool(2),
    warmed up by one map over range(1000). Length and sum are checked."""
    from bench_tasks import square  # here: a spawned child does not import it at start
    expected = (n - 1) * n * (2 * n - 1) // 6
    runs = []
    with make_pool(cfg.ctx, 2) as pool:
        pool.map(square, range(1000))
        for _ in range(cfg.runs):
            t0 = perf()
            res = pool.map(square, range(n), chunksize)
            dt = perf() - t0
            if len(res) != n or sum(res) != expected:
                raise BenchError("pool.map returned wrong results")
            runs.append(n / dt)
    effective = chunksize or -(-n // (4 * 2))  # Pool.map: ceil(N / (4 * processes))
    emit(name, cfg.params(N=n, processes=2, chunksize=chunksize,
                          effective_chunksize=effective), "tasks_per_s", runs, "tasks/s")


def pool_apply_async_latency(cfg, name, n):
    """Timed: N sequential pool.apply_async(square, (i,)).get() on a running
    Pool(2), after 100 untimed calls."""
    from bench_tasks import square  # here: a spawned child does not import it at start
    runs = []
    with make_pool(cfg.ctx, 2) as pool:
        for i in range(WARMUP):
            pool.apply_async(square, (i,)).get()
        for _ in range(cfg.runs):
            t0 = perf()
            for i in range(n):
                if pool.apply_async(square, (i,)).get() != i * i:
                    raise BenchError("apply_async returned a wrong result")
            runs.append((perf() - t0) / n * 1e6)
    emit(name, cfg.params(N=n, processes=2), "roundtrip_us", runs, "us")


def pool_map_cpu(cfg, name, chunks):
    """Per run, timed separately: [count_primes_below(20000)] * chunks
    serially in the parent, then pool.map(count_primes_below, chunks,
    chunksize=1) on a running Pool(2). speedup = serial_s / parallel_s."""
    from bench_tasks import count_primes_below  # here: a spawned child does not import it at start
    tasks = [PRIME_N] * chunks
    serial_runs, parallel_runs, speedups = [], [], []
    with make_pool(cfg.ctx, 2) as pool:
        pool.map(count_primes_below, [100, 100], 1)
        for _ in range(cfg.runs):
            t0 = perf()
            serial = [count_primes_below(x) for x in tasks]
            t1 = perf()
            parallel = pool.map(count_primes_below, tasks, 1)
            t2 = perf()
            if serial != parallel or serial[0] != PRIMES_BELOW_N:
                raise BenchError(f"prime counts wrong: {serial[0]} / {parallel[0]} "
                                 f"(expected {PRIMES_BELOW_N})")
            serial_runs.append(t1 - t0)
            parallel_runs.append(t2 - t1)
            speedups.append((t1 - t0) / (t2 - t1))
    params = cfg.params(chunks=chunks, n_per_chunk=PRIME_N, processes=2, chunksize=1)
    emit(name, params, "speedup", speedups, "x")
    emit(name, params, "parallel_s", parallel_runs, "s")
    emit(name, params, "serial_s", serial_runs, "s")


def queue_throughput(cfg, name, n, payload_bytes):
    """A child puts N items on a fresh Queue (ints 0..N-1, or one prebuilt
    bytes object); the parent gets them all, checking order / size.
    Timed: go.set() -> parent received item N."""
    ctx, runs = cfg.ctx, []
    for _ in range(cfg.runs):
        q = ctx.Queue()
        ready, go = ctx.Semaphore(0), ctx.Event()
        with Children() as kids:
            kids.start(ctx.Process(target=queue_producer, args=(q, n, payload_bytes, ready, go)))
            wait_sem(ready, 1, "ready")
            t0 = perf()
            go.set()
            if payload_bytes:
                for _ in range(n):
                    if len(q.get()) != payload_bytes:
                        raise BenchError("queue item has the wrong size")
            else:
                for i in range(n):
                    if q.get() != i:
                        raise BenchError("queue items out of order")
            runs.append(perf() - t0)
            kids.join_ok()
        q.close()
        q.join_thread()
    params = cfg.params(N=n, payload="bytes" if payload_bytes else "small_int",
                        payload_bytes=payload_bytes or None)
    emit(name, params, "msgs_per_s", [n / t for t in runs], "msg/s")
    if payload_bytes:
        emit(name, params, "MB_per_s", [n * payload_bytes / 1e6 / t for t in runs], "MB/s")



def timed_roundtrips(conn, n, what):
    """Microseconds per round trip of n small ints echoed by the peer of `conn`, after
    WARMUP untimed ones."""
    for i in range(WARMUP):
        conn.send(i)
        conn.recv()
    t0 = perf()
    for i in range(n):
        conn.send(i)
        if conn.recv() != i:
            raise BenchError(f"{what} echo mismatch")
    return (perf() - t0) / n * 1e6

def pipe_roundtrip(cfg, name, n):
    """Duplex Pipe(), the child echoes. Timed: N x (send(i); recv() == i)
    after 100 untimed round trips."""
    ctx, runs = cfg.ctx, []
    for _ in range(cfg.runs):
        parent_conn, child_conn = ctx.Pipe()
        with Children() as kids:
            kids.start(ctx.Process(target=pipe_echo, args=(child_conn,)))
            child_conn.close()
            runs.append(timed_roundtrips(parent_conn, n, "pipe"))
            parent_conn.send(None)
            kids.join_ok()
        parent_conn.close()
    emit(name, cfg.params(N=n), "roundtrip_us", runs, "us")


def value_lock_increment(cfg, name, n):
    """Two children each do N x `with v.get_lock(): v.value += 1` on
    Value('i', 0). Timed: go.set() -> both report done; rate = 2N / time.
    ok = final value == 2N in every run."""
    ctx, runs, finals = cfg.ctx, [], []
    for _ in range(cfg.runs):
        v = ctx.Value("i", 0)
        ready, done, go = ctx.Semaphore(0), ctx.Semaphore(0), ctx.Event()
        runs.append(2 * n / race_children(ctx, value_incrementer,
                                          lambda i: (v, n, ready, go, done), 2))
        finals.append(v.value)
    ok = all(f == 2 * n for f in finals)
    emit(name, cfg.params(N=n, processes=2), "increments_per_s", runs, "incr/s", ok=ok)
    if not ok:
        raise BenchError(f"final counts {finals} != 2N = {2 * n}")


def lock_uncontended(cfg, name, n):
    """Timed, in the parent: N x (lock.acquire(); lock.release())."""
    lock, runs = cfg.ctx.Lock(), []
    for _ in range(cfg.runs):
        t0 = perf()
        for _ in range(n):
            lock.acquire()
            lock.release()
        runs.append((perf() - t0) / n * 1e9)
    emit(name, cfg.params(N=n), "ns_per_pair", runs, "ns")


def manager_dict_set_get(cfg, name, n):
    """One Manager (started untimed), a fresh dict() per run. The child
    connects (len(d), untimed), then times N x d[i] = i and N x d[i] itself
    and sends both times back; the parent checks len(d) and the sum."""
    ctx, set_runs, get_runs = cfg.ctx, [], []
    with ctx.Manager() as manager:
        for _ in range(cfg.runs):
            d = manager.dict()
            recv_conn, send_conn = ctx.Pipe(duplex=False)
            with Children() as kids:
                kids.start(ctx.Process(target=manager_dict_client, args=(d, n, send_conn)))
                send_conn.close()
                t_set, t_get, total = recv_result(recv_conn, kids)
                kids.join_ok()
            recv_conn.close()
            if total != n * (n - 1) // 2 or len(d) != n:
                raise BenchError("manager dict contents wrong")
            set_runs.append(n / t_set)
            get_runs.append(n / t_get)
    params = cfg.params(N=n, key="int i")
    emit(name, params, "set_ops_per_s", set_runs, "ops/s")
    emit(name, params, "get_ops_per_s", get_runs, "ops/s")


def manager_dict_concurrent(cfg, name, n):
    """mp addition (not in the original spec): one Manager (started untimed), a
    fresh dict() per run; two children each set N keys of their own
    (d[w*N + i] = i). Timed: go.set() -> both report done; rate = 2N / time.
    The parent checks len(d) == 2N."""
    ctx, runs = cfg.ctx, []
    with ctx.Manager() as manager:
        for _ in range(cfg.runs):
            d = manager.dict()
            ready, done, go = ctx.Semaphore(0), ctx.Semaphore(0), ctx.Event()
            runs.append(2 * n / race_children(ctx, manager_dict_writer,
                                              lambda w: (d, n, w, ready, go, done), 2))
            if len(d) != 2 * n:
                raise BenchError("manager dict contents wrong")
    emit(name, cfg.params(N=n, processes=2, key="int i"), "ops_per_s", runs, "ops/s")


def shared_memory_array_write(cfg, name, size):
    """Per run: a fresh SharedMemory of `size` bytes; a child attaches by
    name, builds the pattern (untimed) and times buf[:] = pattern (first
    touch: tmpfs page allocation included). The parent checks adler32 of
    the whole segment. GB_per_s = size / child's write time."""
    import zlib
    from multiprocessing import shared_memory
    ctx, runs = cfg.ctx, []
    for seed in range(cfg.runs):
        shm = shared_memory.SharedMemory(create=True, size=size)
        try:
            recv_conn, send_conn = ctx.Pipe(duplex=False)
            with Children() as kids:
                kids.start(ctx.Process(target=shm_writer, args=(shm.name, size, seed, send_conn)))
                send_conn.close()
                elapsed = recv_result(recv_conn, kids)
                kids.join_ok()
            recv_conn.close()
            block, expected = shm_pattern(1024 * 1024, seed), 1
            for _ in range(size // len(block)):
                expected = zlib.adler32(block, expected)
            with shm.buf[:size] as view:
                if zlib.adler32(view) != expected:
                    raise BenchError("shared memory contents wrong")
        finally:
            shm.close()
            shm.unlink()
        runs.append(size / 1e9 / elapsed)
    emit(name, cfg.params(size_bytes=size), "GB_per_s", runs, "GB/s")


HEAP_WINDOW = 2000
# Seven sizes: the window is no multiple of 7, so a slot sees every size in turn.
HEAP_SIZES = (16, 1000, 100, 40_000, 3000, 10_000, 120_000)
HEAP_SAMPLE_EVERY = 1024


def resident_mb():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGESIZE") / 1e6


def heap_churn(cfg, name, n):
    """mp addition (not in the original spec): shared arrays of mixed sizes
    created and dropped in a window, in the parent (no children). Timed: N
    steps; step i drops the RawArray('b') in slot i % HEAP_WINDOW (if any) and
    puts a new one of HEAP_SIZES[i % len] zeroed bytes there (its memory comes
    from multiprocessing.heap). ops_per_s = N / time. peak_rss_MB: the largest
    resident set (/proc/self/statm, sampled every HEAP_SAMPLE_EVERY steps)
    minus the one before the first run; rss_after_free_MB: the resident set
    once every array is dropped, minus the one before the first run (what the
    heap keeps)."""
    from multiprocessing.sharedctypes import RawArray
    rates, peaks, afters = [], [], []
    before = resident_mb()
    for _ in range(cfg.runs):
        window = [None] * HEAP_WINDOW
        peak = before
        t0 = perf()
        for i in range(n):
            slot = i % HEAP_WINDOW
            window[slot] = None
            window[slot] = RawArray("b", HEAP_SIZES[i % len(HEAP_SIZES)])
            if i % HEAP_SAMPLE_EVERY == 0:
                peak = max(peak, resident_mb())
        rates.append(n / (perf() - t0))
        peak = max(peak, resident_mb())
        window = None
        peaks.append(peak - before)
        afters.append(resident_mb() - before)
    params = cfg.params(N=n, window=HEAP_WINDOW, sizes=",".join(map(str, HEAP_SIZES)))
    emit(name, params, "ops_per_s", rates, "ops/s")
    emit(name, params, "peak_rss_MB", peaks, "MB")
    emit(name, params, "rss_after_free_MB", afters, "MB")


def barrier_cycle(cfg, name, n):
    """Barrier(2), parent + one child; 100 untimed cycles (the first with
    READY_TIMEOUT), then timed in the parent: N wait() cycles."""
    ctx, runs = cfg.ctx, []
    for _ in range(cfg.runs):
        barrier = ctx.Barrier(2)
        with Children() as kids:
            kids.start(ctx.Process(target=barrier_worker, args=(barrier, WARMUP + n)))
            barrier.wait(READY_TIMEOUT)
            for _ in range(WARMUP - 1):
                barrier.wait()
            t0 = perf()
            for _ in range(n):
                barrier.wait()
            runs.append((perf() - t0) / n * 1e6)
            kids.join_ok()
    emit(name, cfg.params(N=n, parties=2), "us_per_cycle", runs, "us")


def event_pingpong(cfg, name, n):
    """Parent: ping.set(); pong.wait(); pong.clear(). Child: ping.wait();
    ping.clear(); pong.set(). 100 untimed round trips, then N timed."""
    ctx, runs = cfg.ctx, []
    for _ in range(cfg.runs):
        ping, pong = ctx.Event(), ctx.Event()
        with Children() as kids:
            kids.start(ctx.Process(target=event_ponger, args=(ping, pong, WARMUP + n)))
            for _ in range(WARMUP):
                ping.set()
                pong.wait()
                pong.clear()
            t0 = perf()
            for _ in range(n):
                ping.set()
                pong.wait()
                pong.clear()
            runs.append((perf() - t0) / n * 1e6)
            kids.join_ok()
    emit(name, cfg.params(N=n), "roundtrip_us", runs, "us")



def listener_echo(address, authkey):
    from multiprocessing.connection import Client
    conn = Client(address, authkey=authkey)
    while (x := conn.recv()) is not None:
        conn.send(x)
    conn.close()


def listener_roundtrip(cfg, name, n):
    """multiprocessing.connection.Listener on a Unix socket (with an authkey); the
    child connects with Client and echoes. Timed: N x (send(i); recv() == i) after
    100 untimed round trips."""
    import tempfile
    from multiprocessing.connection import Listener
    ctx, runs, authkey = cfg.ctx, [], b"mp-bench"
    for _ in range(cfg.runs):
        with tempfile.TemporaryDirectory() as tmp:
            address = os.path.join(tmp, "listener")
            with Listener(address, authkey=authkey) as listener, Children() as kids:
                kids.start(ctx.Process(target=listener_echo, args=(address, authkey)))
                conn = listener.accept()
                runs.append(timed_roundtrips(conn, n, "listener"))
                conn.send(None)
                kids.join_ok()
                conn.close()
    emit(name, cfg.params(N=n, family="AF_UNIX"), "roundtrip_us", runs, "us")

# name: (function, extra arguments, full size, --quick size)
BENCHMARKS = {
    "process_start_fork": (process_start, ("fork",), 200, 50),
    "process_start_spawn": (process_start, ("spawn",), 20, 5),
    "process_start_forkserver": (process_start, ("forkserver",), 200, 50),
    "pool_map_trivial": (pool_map_trivial, (None,), 1_000_000, 200_000),
    "pool_map_trivial_chunk1": (pool_map_trivial, (1,), 50_000, 10_000),
    "pool_apply_async_latency": (pool_apply_async_latency, (), 5_000, 1_000),
    "pool_map_cpu": (pool_map_cpu, (), 64, 16),  # chunks
    "queue_throughput_small": (queue_throughput, (0,), 200_000, 50_000),
    "queue_throughput_1k": (queue_throughput, (1024,), 100_000, 20_000),
    "queue_throughput_1m": (queue_throughput, (1024 * 1024,), 500, 100),
    "pipe_roundtrip": (pipe_roundtrip, (), 20_000, 5_000),
    "value_lock_increment": (value_lock_increment, (), 200_000, 50_000),  # per child
    "lock_uncontended": (lock_uncontended, (), 1_000_000, 200_000),
    "manager_dict_set_get": (manager_dict_set_get, (), 20_000, 5_000),
    "manager_dict_concurrent": (manager_dict_concurrent, (), 20_000, 5_000),  # per child
    "shared_memory_array_write": (shared_memory_array_write, (), SHM_SIZE, SHM_SIZE),
    "heap_churn": (heap_churn, (), 50_000, 10_000),
    "barrier_cycle": (barrier_cycle, (), 10_000, 2_000),
    "event_pingpong": (event_pingpong, (), 10_000, 2_000),
    "listener_roundtrip": (listener_roundtrip, (), 20_000, 5_000),
}


def main(argv=None):
    import argparse
    ap = argparse.ArgumentParser(description="CPython multiprocessing benchmarks "
                                             "(JSON lines on stdout)")
    ap.add_argument("--quick", action="store_true", help="smaller sizes")
    ap.add_argument("--only", metavar="NAME[,NAME]", help="comma-separated benchmarks")
    ap.add_argument("--runs", type=int, default=3, help="timed runs (default 3)")
    ap.add_argument("--start-method", default="fork", choices=mp.get_all_start_methods(),
                    help="start method for all but process_start_* (default fork)")
    ap.add_argument("--timeout", type=int, default=600,
                    help="per-benchmark limit in seconds (default 600)")
    ap.add_argument("--list", action="store_true", help="list benchmark names and exit")
    args = ap.parse_args(argv)
    if args.list:
        print("\n".join(BENCHMARKS))
        return 0
    if args.runs < 1:
        ap.error("--runs must be >= 1")
    names = list(BENCHMARKS)
    if args.only:
        names = [s.strip() for s in args.only.split(",") if s.strip()]
        unknown = [s for s in names if s not in BENCHMARKS]
        if unknown:
            ap.error(f"unknown benchmark(s): {', '.join(unknown)}; "
                     f"choose from: {', '.join(BENCHMARKS)}")

    cfg = Config(args.quick, args.runs, args.start_method)
    log(f"# {IMPL}: Python {sys.version.split()[0]}, {os.cpu_count()} CPUs, "
        f"mode={'quick' if args.quick else 'full'}, runs={args.runs}, "
        f"start_method={args.start_method}")
    failures, t_all = [], perf()
    for name in names:
        fn, extra, full, quick = BENCHMARKS[name]
        t0 = perf()
        try:
            with watchdog(args.timeout):
                fn(cfg, name, quick if args.quick else full, *extra)
        except Exception as e:  # report, go on, fail at the end
            failures.append(name)
            log(f"# {name}: FAILED: {type(e).__name__}: {e}")
        else:
            log(f"# {name}: done in {perf() - t0:.1f}s")
    log(f"# total {perf() - t_all:.1f}s")
    if failures:
        log(f"# FAILED ({len(failures)}): {', '.join(failures)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
