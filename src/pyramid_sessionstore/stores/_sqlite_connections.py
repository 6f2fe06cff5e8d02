"""SQLiteStore's connections: one per thread and process, in WAL mode, closed with its thread.

A connection opened in a parent process is never used, nor closed, in a
forked child (the parent still uses it); :meth:`ThreadConnections.close`
retires every thread's connection at once (each thread opens a new one at
its next use). Statements stay in :mod:`._sqlite_statements`, the store's
policy in :mod:`.sqlite`.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
import weakref
from typing import Any

__all__ = ["Connection", "ThreadConnections"]

_AUTOCOMMIT: dict[str, Any] = {"isolation_level": None, "check_same_thread": False}


class Connection(sqlite3.Connection):
    """A connection that knows its process and generation (and can be weakly referenced)."""

    pid: int
    generation: int
    closer: weakref.finalize[[Connection], threading.Thread]


def _close(conn: Connection) -> None:
    """Close *conn*, unless it was inherited through fork: the parent still uses it."""
    if conn.pid == os.getpid():
        conn.close()


class ThreadConnections:
    """Open, keep and close the connections of the threads using the database at *path*.

    :param path: the database file.
    :param busy_timeout: seconds a write (or the switch to WAL) waits for the lock.
    :param synchronous: the ``PRAGMA synchronous`` level.
    """

    def __init__(self, path: str, busy_timeout: float, synchronous: str) -> None:
        self.path, self.busy_timeout, self.synchronous = path, busy_timeout, synchronous
        self._local, self._lock, self._generation = threading.local(), threading.Lock(), 0
        self._conns: weakref.WeakSet[Connection] = weakref.WeakSet()

    def get(self) -> Connection:
        """Return this thread's connection, opening one when there is none yet."""
        conn: Connection | None = getattr(self._local, "conn", None)
        if conn is not None and conn.generation == self._generation and conn.pid == os.getpid():
            return conn
        conn = sqlite3.connect(self.path, self.busy_timeout, factory=Connection, **_AUTOCOMMIT)
        conn.pid, conn.generation = os.getpid(), self._generation
        # Closed when this thread ends, or by close(); never in a child process.
        conn.closer = weakref.finalize(threading.current_thread(), _close, conn)
        try:
            self._wal(conn)
            conn.execute(f"PRAGMA synchronous = {self.synchronous}")
        except BaseException:
            conn.closer()
            raise
        self._local.conn = conn
        with self._lock:
            self._conns.add(conn)
        return conn

    def close(self) -> None:
        """Close the connections of every thread; a later :meth:`get` opens new ones."""
        with self._lock:
            self._generation += 1
            conns, self._conns = list(self._conns), weakref.WeakSet()
        for conn in conns:
            conn.closer()

    def _wal(self, conn: Connection) -> None:
        """Put the database in WAL mode, waiting up to ``busy_timeout`` for other processes.

        Changing the journal mode needs the database to itself, and SQLite answers
        "database is locked" at once, without its busy handler, while another
        connection holds it: processes opening a new file together (workers
        started without ``--preload``) failed at start-up.
        """
        deadline = time.monotonic() + self.busy_timeout
        while True:
            try:
                conn.execute("PRAGMA journal_mode = WAL")
                return
            except sqlite3.OperationalError as err:
                if "locked" not in str(err) or time.monotonic() >= deadline:
                    raise
            time.sleep(0.005)
