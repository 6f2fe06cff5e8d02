"""SQLiteStore: records in one SQLite file, shared by the worker processes of a machine.

WAL mode (readers never wait for the writer), a busy timeout (writers queue),
one connection per thread and process. Each write is one autocommit statement,
which takes the write lock before reading, so the busy timeout applies and no
transaction upgrades a read lock (SQLite would answer ``BUSY`` at once). A load
or a peek is a ``SELECT``, never waiting under WAL. Expiries are written ``ttl``
plus a slack (``refresh_interval``) ahead and a load rewrites one only when less
than ``ttl`` is left, so readers rarely queue for the lock and a record ends
late by at most the slack, never early. A mangled row is a miss, and deleted.
Not for many machines, nor on a network filesystem. Expired rows stay until
``psessions gc``. The statements are in :mod:`._sqlite_statements`, the
connections in :mod:`._sqlite_connections`.
"""

from __future__ import annotations

import logging
import os
import re
import secrets
import sqlite3
import time
from collections.abc import Iterator
from typing import Any
from typing import ClassVar

from ..exceptions import ConflictError
from ._sqlite_connections import Connection
from ._sqlite_connections import ThreadConnections
from ._sqlite_statements import STATEMENTS
from .base import Clock
from .base import Converter
from .base import Record
from .base import UnavailableOn
from .base import as_float
from .base import as_seconds

__all__ = ["SQLiteStore"]

security_log = logging.getLogger("pyramid_sessionstore.security")
_TABLE = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}\Z")
_VERSION = re.compile(r"[0-9]{1,19}\Z")  # a random 62-bit start, + 1 per update; 64-bit column
_SYNCHRONOUS = ("off", "normal", "full", "extra")


def _as_path(value: Any) -> str:
    if str(value) in ("", ":memory:"):  # abspath would make either a file in the cwd
        raise ValueError(f"expected a database file, got {value!r} (in memory: store = memory)")
    return str(value)


def _as_synchronous(value: Any) -> str:
    """Convert a ``PRAGMA synchronous`` level: off, normal, full or extra."""
    if str(value).lower() not in _SYNCHRONOUS:
        raise ValueError(f"expected one of {', '.join(_SYNCHRONOUS)}, got {value!r}")
    return str(value).lower()


class SQLiteStore:
    """Keep records in a table of an SQLite database file.

    :param path: the database file; it and its directory are created when missing.
    :param table: the table name, created when missing. Default: ``sessions``.
    :param busy_timeout: seconds a write (or the switch of a new file to WAL) waits for
        the lock before failing. Default: 5.
    :param synchronous: ``PRAGMA synchronous``, off, normal, full or extra. With WAL,
        ``normal`` survives an application crash, not a power cut. Default: ``normal``.
    :param refresh_interval: seconds a record may outlive its ttl (at most half the
        ttl), so a load rewrites the expiry at most that often. Default: 60.
    :param clock: returns the current Unix time; tests pass a fake one.
    """

    OPTIONS: ClassVar[dict[str, Converter]] = {"path": _as_path, "table": str}
    OPTIONS |= {"busy_timeout": as_float, "synchronous": _as_synchronous}
    OPTIONS |= {"refresh_interval": as_seconds}
    CODE_ONLY: ClassVar[frozenset[str]] = frozenset({"clock"})
    #: Rows ``delete_expired`` removes per transaction, and keys ``keys`` fetches per query.
    BATCH: ClassVar[int] = 1000

    def __init__(
        self,
        *,
        path: str | os.PathLike[str],
        table: str = "sessions",
        busy_timeout: float = 5.0,
        synchronous: str = "normal",
        refresh_interval: int | None = 60,
        clock: Clock = time.time,
    ) -> None:
        if not _TABLE.match(table):
            raise ValueError(f"table must be a plain SQL identifier, got {table!r}")
        self.path, self.table = os.path.abspath(_as_path(os.fspath(path))), table
        self.busy_timeout, self.synchronous = busy_timeout, _as_synchronous(synchronous)
        self.refresh_interval = as_seconds(refresh_interval) or 0
        self._clock, self._guard = clock, UnavailableOn(self, (sqlite3.Error, OSError))
        self._connections = ThreadConnections(self.path, busy_timeout, self.synchronous)
        #: This thread's connection (opened at first use).
        self._conn = self._connections.get
        names = {"t": f'"{table}"', "i": f'"{table}_expires_at"'}
        self._sql = {name: sql.format(**names) for name, sql in STATEMENTS.items()}
        with self._guard:  # fail at start-up, not at the first request
            os.makedirs(os.path.dirname(self.path), exist_ok=True)
            with self._conn() as conn:
                for sql in ("BEGIN IMMEDIATE", self._sql["schema"], self._sql["index"]):
                    conn.execute(sql)

    def __repr__(self) -> str:
        return f"SQLiteStore(path={self.path!r}, table={self.table!r})"

    def _expiry(self, ttl: int | None, now: float) -> float | None:
        """Return when a record written now with *ttl* expires: after ttl and the slack."""
        return None if ttl is None else now + ttl + min(self.refresh_interval, ttl / 2)

    def _row(self, conn: Connection, key: str, now: float) -> tuple[Record, float | None] | None:
        """Return *key*'s live record and its stored expiry; delete a mangled row."""
        if (row := conn.execute(self._sql["select"], {"key": key}).fetchone()) is None:
            return None
        data, version, expires, typed = row
        if not typed:
            security_log.warning("SQLiteStore: removed malformed row %s of %r", key, self)
            conn.execute(self._sql["delete"], {"key": key})
            return None
        if expires is not None and expires <= now:
            return None  # gc removes it
        return Record(data, str(version)), expires

    def load(self, key: str, ttl: int | None) -> Record | None:
        now = self._clock()
        params: dict[str, Any] = {"key": key, "now": now, "exp": self._expiry(ttl, now)}
        with self._guard:
            if (found := self._row(conn := self._conn(), key, now)) is None:
                return None
            record, expires = found
            # Less than ttl left, or more than ttl and the slack (a shorter ttl): rewrite.
            if expires is None or ttl is None or not now + ttl <= expires <= params["exp"]:
                if expires != params["exp"]:
                    conn.execute(self._sql["touch"], params)
            return record

    def peek(self, key: str) -> tuple[Record, float | None] | None:
        """Return the record of *key* and when its session expires, in one ``SELECT``.

        The stored expiry is ``ttl`` plus a slack ahead of the last refresh; the
        slack depends on the ttl (at most half of it), which is not stored, so
        peek subtracts its bound, ``refresh_interval``. The expiry it returns is
        thus never later than the session's own (``now + ttl`` at the last
        refresh) and at most ``refresh_interval`` earlier: exact when ttl >=
        2 * refresh_interval, otherwise accurate to the refresh granularity.
        """
        with self._guard:
            found = self._row(self._conn(), key, self._clock())
        if found is None or found[1] is None:
            return found
        return found[0], found[1] - self.refresh_interval

    def save(self, key: str, data: bytes, ttl: int | None, expected_version: str | None) -> str:
        now = self._clock()
        params = {"key": key, "data": data, "now": now, "exp": self._expiry(ttl, now)}
        # A new record starts at a random version and each update adds one, so a
        # version is never reused, not even by a record created after a delete.
        if expected_version is None:
            params["ver"] = secrets.randbits(62) + 1
        elif _VERSION.match(expected_version) and int(expected_version) < (1 << 63) - 1:
            params["old"], params["ver"] = int(expected_version), int(expected_version) + 1
        with self._guard:
            conn = self._conn()
            if expected_version is None:
                done = conn.execute(self._sql["create"], params).rowcount == 1
                done = done or conn.execute(self._sql["revive"], params).rowcount == 1
            else:  # a version that is not a number was never ours: a conflict
                done = "old" in params and conn.execute(self._sql["update"], params).rowcount == 1
        if not done:
            raise ConflictError(f"{key[:12]}... is not at version {expected_version!r}", self)
        return str(params["ver"])

    def touch(self, key: str, ttl: int | None) -> bool:
        now = self._clock()
        params = {"key": key, "now": now, "exp": self._expiry(ttl, now)}
        with self._guard:
            return self._conn().execute(self._sql["touch"], params).rowcount == 1

    def delete(self, key: str) -> None:
        with self._guard:
            self._conn().execute(self._sql["delete"], {"key": key})

    def close(self) -> None:
        """Close the connections of every thread; a later call opens new ones."""
        self._connections.close()

    def delete_expired(self) -> int:
        """Remove expired rows, ``BATCH`` per transaction so writers are not held up."""
        params, removed = {"now": self._clock(), "limit": self.BATCH}, 0
        with self._guard:
            while (count := self._conn().execute(self._sql["gc"], params).rowcount) == self.BATCH:
                removed += count
            return removed + count

    def keys(self) -> Iterator[str]:
        """Yield live keys, fetched in pages so no read transaction stays open."""
        params: dict[str, Any] = {"now": self._clock(), "limit": self.BATCH}
        page = [""] * self.BATCH  # keys sort after ""
        while len(page) == self.BATCH:
            params["after"] = page[-1]
            with self._guard:
                page = [row[0] for row in self._conn().execute(self._sql["keys"], params)]
            yield from page

    def count(self) -> int:
        with self._guard:
            row = self._conn().execute(self._sql["count"], {"now": self._clock()}).fetchone()
        return int(row[0])
