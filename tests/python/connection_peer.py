"""The Python side of tests/listener_test.cpp: a real CPython talking to mp.

    connection_peer.py listen ADDRESS KEY   a multiprocessing.connection.Listener at
                                            ADDRESS ("host:port" is TCP), one client
    connection_peer.py connect ADDRESS KEY  a Client of the Listener at ADDRESS

KEY is the authkey in hex, or "-" for none. The listener prints "ready ADDRESS" once
bound (ADDRESS as mp writes it). Either way the peer then serves the commands that
arrive as bytes messages, until "quit" or the end of the connection:

    echo BYTES        answer b"py:" + BYTES
    send-big N        answer N bytes: bytes(range(256)) repeated
    check-big N       receive one message; answer b"ok" if it is N such bytes
    raw-escape N      answer N bytes as a frame written by hand with the -1 escape
                      (what CPython sends for messages over 2 GiB)
    recv-handle       receive an fd (reduction.recv_handle); answer what it reads
    send-handle PATH  send the fd of PATH opened for reading (reduction.send_handle)
    version           answer "X.Y"

Exit status: 0 after "quit" or the end, 3 on multiprocessing.AuthenticationError (the
exception's text is printed), 1 on anything else. An alarm ends it after 120 s, so a
broken test never leaves it behind.
"""
import os
import signal
import struct
import sys
from multiprocessing import AuthenticationError, reduction
from multiprocessing.connection import Client, Listener


def pattern(n):
    block = bytes(range(256))
    return (block * (n // 256 + 1))[:n]


def parse_address(text):
    if text.startswith("@"):
        return "\0" + text[1:]
    host, sep, port = text.rpartition(":")
    if sep and port.isdigit() and "/" not in host and host:
        return (host.strip("[]"), int(port))
    return text


def format_address(address):
    if isinstance(address, tuple):
        host = address[0]
        return ("[%s]" % host if ":" in host else host) + ":%d" % address[1]
    if isinstance(address, bytes):
        address = address.decode("latin-1")
    return "@" + address[1:] if address.startswith("\0") else address


def serve(conn):
    while True:
        try:
            message = conn.recv_bytes()
        except EOFError:
            return
        command, _, argument = message.partition(b" ")
        if command == b"quit":
            return
        elif command == b"echo":
            conn.send_bytes(b"py:" + argument)
        elif command == b"send-big":
            conn.send_bytes(pattern(int(argument)))
        elif command == b"check-big":
            got = conn.recv_bytes()
            conn.send_bytes(b"ok" if got == pattern(int(argument)) else b"bad %d" % len(got))
        elif command == b"raw-escape":
            body = pattern(int(argument))
            os.write(conn.fileno(), struct.pack("!i", -1) + struct.pack("!Q", len(body)) + body)
        elif command == b"recv-handle":
            fd = reduction.recv_handle(conn)
            with os.fdopen(fd, "rb") as f:
                conn.send_bytes(f.read())
        elif command == b"send-handle":
            with open(argument, "rb") as f:
                reduction.send_handle(conn, f.fileno(), os.getpid())
        elif command == b"version":
            conn.send_bytes(b"%d.%d" % sys.version_info[:2])
        else:
            conn.send_bytes(b"unknown command")


def main():
    signal.alarm(120)
    role, address, key = sys.argv[1:4]
    authkey = None if key == "-" else bytes.fromhex(key)
    try:
        if role == "listen":
            with Listener(parse_address(address), authkey=authkey) as listener:
                print("ready", format_address(listener.address), flush=True)
                conn = listener.accept()
        else:
            conn = Client(parse_address(address), authkey=authkey)
        serve(conn)
        conn.close()
    except AuthenticationError as e:
        print("AuthenticationError:", e, flush=True)
        sys.exit(3)


if __name__ == "__main__":
    main()
