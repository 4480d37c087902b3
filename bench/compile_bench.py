#!/usr/bin/env python3
"""What mp costs its users at compile time: CPU seconds of the compiler.

    python3 bench/compile_bench.py [--cxx c++] [--runs 3]

Rows, each printed as a JSON line in mp_bench.py's schema ("impl" is the compiler):

  compile_mp_hpp          a file holding only `#include <mp/mp.hpp>`, checked with
                          -std=c++20 -fsyntax-only: what every file using mp pays.
  compile_example_pool_map  examples/pool_map.cpp compiled to an object file at -O0
                          (-std=c++20, no optimization, no debug information): a short
                          user program, instantiating Pool::map.
  compile_std_headers     a file holding only <string>, <vector>, <memory>, <chrono>
                          and <functional>, checked as compile_mp_hpp: the floor that
                          a header using the standard library cannot go below.

"value" is the least user+system CPU time of --runs compilations (other work on the
machine only ever adds to it), in seconds. Standard library only.
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
INCLUDE = ROOT / "lib" / "include"
STD_HEADERS = ["string", "vector", "memory", "chrono", "functional"]


def cpu_seconds(argv):
    """User+system CPU time of one run of argv (which must succeed)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    proc = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed:\n{proc.stderr[-2000:]}")
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def rows(cxx, scratch):
    """(bench, params, argv) of each row."""
    probe = scratch / "mp_hpp.cpp"
    probe.write_text("#include <mp/mp.hpp>\n")
    floor = scratch / "std_headers.cpp"
    floor.write_text("".join(f"#include <{h}>\n" for h in STD_HEADERS))
    check = [cxx, "-std=c++20", "-fsyntax-only"]
    example = ROOT / "examples" / "pool_map.cpp"
    return [
        ("compile_mp_hpp", {"flags": "-fsyntax-only"}, check + [f"-I{INCLUDE}", str(probe)]),
        ("compile_example_pool_map", {"flags": "-O0 -c"},
         [cxx, "-std=c++20", "-O0", f"-I{INCLUDE}", f"-I{example.parent}", "-c", str(example),
          "-o", os.devnull]),
        ("compile_std_headers", {"flags": "-fsyntax-only"}, check + [str(floor)]),
    ]


def compiler_name(cxx):
    out = subprocess.run([cxx, "--version"], capture_output=True, text=True).stdout
    return out.splitlines()[0] if out else cxx


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cxx", default=os.environ.get("CXX", "c++"), help="the compiler")
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args(argv)
    if args.runs < 1:
        ap.error("--runs must be >= 1")
    impl = compiler_name(args.cxx)
    with tempfile.TemporaryDirectory(prefix="mp-compile-bench-") as scratch:
        for bench, params, command in rows(args.cxx, Path(scratch)):
            runs = [cpu_seconds(command) for _ in range(args.runs)]
            print(json.dumps({"impl": impl, "bench": bench, "params": params,
                              "metric": "cpu_s", "value": float(f"{min(runs):.3g}"),
                              "unit": "s", "runs": [float(f"{r:.3g}") for r in runs]}),
                  flush=True)
            print(f"# {bench}: {min(runs):.2f} s", file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
