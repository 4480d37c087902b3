#!/usr/bin/env python3
"""Submits work to example_python_work_server, a C++ program running an mp Pool.

usage: python_work_client.py ADDRESS

Plain Python: multiprocessing.connection.Client with an authkey (MP_EXAMPLE_AUTHKEY,
default "mp-example"). Each request is a tuple (function name, list of ints); the
answer is ("ok", results) or ("error", message).
"""
import os
import sys
from multiprocessing.connection import Client


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__.strip().splitlines()[2])
    address = sys.argv[1]
    authkey = os.environ.get("MP_EXAMPLE_AUTHKEY") or "mp-example"
    with Client(address, authkey=authkey.encode()) as conn:
        for name, items in (
            ("square", list(range(10))),
            ("isprime", list(range(90, 100))),
            ("collatz", [27, 97, 871]),
            ("collatz", [0]),
            ("cube", [1, 2]),
        ):
            conn.send((name, items))
            status, value = conn.recv()
            print(f"{name}({items}) -> {status}: {value}", flush=True)
        conn.send(("stop", []))


if __name__ == "__main__":
    main()
