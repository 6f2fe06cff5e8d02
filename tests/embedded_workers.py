"""Child processes for the FileStore and SQLiteStore multi-process tests.

Run as a script: ``python embedded_workers.py KIND PATH ACTION ARGS...`` where
KIND is ``file`` or ``sqlite`` and PATH the store's directory or database file.

- ``increment KEY N``: add one to the integer stored under KEY, N times, by
  compare-and-set (load, add, save with the loaded version, retry on conflict).
- ``scribble KEY...``: print ``ready PID``, then overwrite the KEYs with large
  self-checking payloads (sha256 of the body, then the body) until killed.
- ``zygote KEY...``: for each line read on stdin, fork a child that scribbles
  (so a test can kill writers many times without paying for Python's start-up
  each time), wait for it to die and print ``dead STATUS``.
"""

from __future__ import annotations

import hashlib
import os
import random
import signal
import subprocess
import sys
import time

from pyramid_sessionstore.exceptions import ConflictError
from pyramid_sessionstore.stores import FileStore
from pyramid_sessionstore.stores import SQLiteStore
from pyramid_sessionstore.stores import Store


def payload(seed: int, size: int) -> bytes:
    """Return a self-checking payload: sha256 of a body of *size* bytes, then the body."""
    body = random.Random(seed).randbytes(size)
    return hashlib.sha256(body).digest() + body


def is_intact(data: bytes) -> bool:
    """Return whether *data* is a payload as :func:`payload` makes them."""
    return hashlib.sha256(data[32:]).digest() == data[:32]


def open_store(kind: str, path: str) -> Store:
    return FileStore(path=path) if kind == "file" else SQLiteStore(path=path)


def increment(store: Store, key: str, times: int) -> None:
    for _ in range(times):
        while True:
            record = store.load(key, 600)
            assert record is not None
            try:
                store.save(key, str(int(record.data) + 1).encode(), 600, record.version)
                break
            except ConflictError:
                continue


def scribble(store: Store, keys: list[str]) -> None:
    print(f"ready {os.getpid()}", flush=True)
    rng = random.Random(os.getpid())
    while True:
        key = rng.choice(keys)
        record = store.load(key, 600)
        data = payload(rng.randrange(1 << 30), rng.randrange(1, 2 << 20))
        try:
            store.save(key, data, 600, None if record is None else record.version)
        except ConflictError:
            continue


def zygote(kind: str, path: str, keys: list[str]) -> None:
    for _ in sys.stdin:
        pid = os.fork()
        if pid == 0:  # the store is opened after the fork, as a worker process would
            scribble(open_store(kind, path), keys)
        _, status = os.waitpid(pid, 0)
        print(f"dead {status}", flush=True)


class Zygote:
    """Drive a ``zygote`` process from a test: each call forks a writer and kills it."""

    def __init__(self, kind: str, path: str, keys: list[str]) -> None:
        argv = [sys.executable, __file__, kind, path, "zygote", *keys]
        self.process = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE)

    def kill_writer_after(self, delay: float) -> None:
        """Fork a writer, let it write for *delay* seconds, then SIGKILL it."""
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(b"go\n")
        self.process.stdin.flush()
        ready = self.process.stdout.readline().split()
        assert ready[:1] == [b"ready"], f"the writer did not start: {ready!r}"
        time.sleep(delay)
        os.kill(int(ready[1]), signal.SIGKILL)
        dead = self.process.stdout.readline().split()
        assert dead == [b"dead", str(signal.SIGKILL).encode()], dead

    def close(self) -> None:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.close()
        self.process.wait(timeout=30)
        self.process.stdout.close()


def main(argv: list[str]) -> None:
    kind, path, action, *args = argv
    if action == "zygote":
        zygote(kind, path, args)
        return
    store = open_store(kind, path)
    if action == "increment":
        increment(store, args[0], int(args[1]))
    elif action == "scribble":
        scribble(store, args)
    else:
        raise SystemExit(f"unknown action {action!r}")
    store.close()


if __name__ == "__main__":
    main(sys.argv[1:])
