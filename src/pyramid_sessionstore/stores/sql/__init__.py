"""SQLStore: records in a table of PostgreSQL, MariaDB/MySQL or SQLite, via SQLAlchemy.

One row per record, times as Unix seconds by the *database's* clock (NULL =
never). Each statement is its own autocommit transaction. A write sets the
expiry to ttl + slack (``refresh_interval``); a load rewrites it only when the
record would end before now + ttl: never early, at most the slack late.
SQLAlchemy makes the engine, pool, SQL text and table; a request's statements
run on DBAPI cursors or libpq (``_connections``). No ORM, no migrations.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from typing import ClassVar

from ...exceptions import ConflictError
from ...exceptions import missing_dependency
from ..base import Clock
from ..base import Converter
from ..base import Record
from ..base import as_bool
from ..base import as_int
from ..base import as_seconds
from ..base import mask_url
from . import _statements

try:
    import sqlalchemy as sa

    from ._connections import LEASE
    from ._connections import Connections
    from ._connections import store_error
except ImportError:  # the OPTIONS table stays readable without the driver
    sa = None  # type: ignore[assignment]

__all__ = ["SQLStore"]

security = logging.getLogger("pyramid_sessionstore.security")


class SQLStore:
    """Keep records in a table of a SQL database, one statement per operation.

    :param url: SQLAlchemy URL, e.g. ``postgresql+psycopg://user:pw@host/db``.
    :param table: table name, or ``schema.table``. Default: ``pyramid_sessions``.
    :param create_table: create the table and its index at first use when missing.
        Default: true.
    :param pool_size: and *max_overflow*, *pool_recycle* (seconds), *pool_pre_ping*,
        *echo*: for ``create_engine``; unset means SQLAlchemy's default.
    :param refresh_interval: seconds a record may outlive its ttl, so that a load
        rewrites the expiry once per this many seconds, not at every read (at most
        half the ttl is used). A record never ends before its ttl. Default: 60.
    :param batch_size: rows per statement in ``delete_expired`` and ``keys``. Default: 1000.
    :param engine: a ready SQLAlchemy ``Engine`` instead of *url* (not disposed by close).
    :param clock: code only: read the time from this function (Unix seconds) instead
        of the database's clock, for tests and benchmarks that move time. Default: None.
    """

    OPTIONS: ClassVar[dict[str, Converter]] = {
        **dict.fromkeys(("url", "table"), str),
        **dict.fromkeys(("create_table", "pool_pre_ping", "echo"), as_bool),
        # as_seconds: a whole number >= 0, or "none" for the default.
        **dict.fromkeys(("pool_size", "max_overflow", "pool_recycle"), as_seconds),
        **{"refresh_interval": as_seconds, "batch_size": as_int},
    }
    CODE_ONLY: ClassVar[frozenset[str]] = frozenset({"engine", "clock"})

    def __init__(
        self,
        *,
        url: str | None = None,
        table: str = "pyramid_sessions",
        create_table: bool = True,
        pool_size: int | None = None,
        max_overflow: int | None = None,
        pool_recycle: int | None = None,
        pool_pre_ping: bool = False,
        echo: bool = False,
        refresh_interval: int | None = 60,
        batch_size: int = 1000,
        engine: sa.engine.Engine | None = None,
        clock: Clock | None = None,
    ) -> None:
        if sa is None:
            raise missing_dependency("SQLStore", "sqlalchemy", _statements.extra_for(url or ""))
        if (url is None) == (engine is None):
            raise ValueError("url: give a database url (or, in code, an engine instead)")
        if batch_size < 1:
            raise ValueError(f"batch_size: expected a whole number >= 1, got {batch_size!r}")
        #: The table (``store.table.drop(store.engine)`` removes it).
        self.table = _statements.table(table)
        self.batch_size, self.refresh_interval = batch_size, as_seconds(refresh_interval) or 0
        self._owned = engine is None
        if engine is None:
            given = {"pool_size": pool_size, "max_overflow": max_overflow, "echo": echo}
            given.update(pool_recycle=pool_recycle, pool_pre_ping=pool_pre_ping)
            engine = _statements.create_engine(str(url), given)
        _statements.usable(engine)
        self._where = mask_url(url) if url else engine.url.render_as_string(hide_password=True)
        # An engine the application shares: one statement per check-out, so the
        # store never holds a connection its code waits for; so too with pre-ping.
        self._conns = Connections(engine, LEASE if self._owned and not pool_pre_ping else 0.0)
        if self._conns.switch:  # a given engine: it costs SET statements per use on MySQL
            engine = engine.execution_options(isolation_level="AUTOCOMMIT")
        #: The engine, in autocommit: a statement is a transaction, no BEGIN/COMMIT trips.
        self.engine = engine
        self._label = f"SQLStore at {self._where} (table {self.table.fullname})"
        self._ready, self._lock, self._clock = not create_table, threading.Lock(), clock
        name = engine.dialect.name
        self._sql = _statements.statements(self.table, name, batch_size, clock is not None)
        self._conns.prepare(_statements.compiled(self._sql, engine.dialect))

    def __repr__(self) -> str:
        return f"SQLStore(url={self._where!r}, table={self.table.fullname!r})"

    @contextmanager
    def _connection(self, action: str) -> Iterator[sa.engine.Connection]:
        """Yield a pooled SQLAlchemy connection (for the operator's statements)."""
        try:
            self._conns.release_idle()  # also forgets a parent's connections after a fork
            if not self._ready:
                with self._lock, self.engine.connect() as conn:
                    _statements.create_table(conn, self.table)
                    self._ready = True
            with self.engine.connect() as conn:
                yield conn
        except sa.exc.SQLAlchemyError as err:
            raise store_error(self, action, err) from err

    def _run(self, action: str, name: str, params: dict[str, Any], rows: bool = False) -> Any:
        """Run *name*; return its first row if *rows*, else its row count (0: a taken key)."""
        if not self._ready:
            with self._connection(action):
                pass
        try:
            return self._conns.run(name, params, rows)
        except (self._conns.errors, sa.exc.SQLAlchemyError) as err:
            if name == "insert" and isinstance(err, self._conns.integrity_error):
                return 0
            raise store_error(self, action, err, name, self._conns.errors)  # noqa: B904 - its __cause__ is set

    def _params(self, key: str, ttl: int | None) -> dict[str, Any]:
        """Return the bind parameters every hot statement may use (floats: one plan)."""
        life = None if ttl is None else float(ttl + min(self.refresh_interval, ttl / 2))
        params = {"k": key, "ttl": None if ttl is None else float(ttl), "life": life}
        if self._clock is not None:
            params["now"] = float(self._clock())
        return params

    def _read(self, action: str, key: str, params: dict[str, Any]) -> tuple[Record, Any] | None:
        """Return the live record of *key* and its seconds left (None: never)."""
        if (row := self._run(action, "load", params, rows=True)) is None:
            return None
        if not _statements.readable(row):
            security.warning("SQLStore: deleting unreadable record %s… in %s", key[:12], self)
            self.delete(key)
            return None
        return Record(bytes(row[0]), row[1]), row[2]

    def load(self, key: str, ttl: int | None) -> Record | None:
        if (found := self._read("load", key, params := self._params(key, ttl))) is None:
            return None
        left = found[1]
        # Due when it would end before now + ttl, or lies beyond the slack (a shorter
        # ttl; by a second at least, so clocks a little apart do not rewrite it).
        if (
            ttl is not None
            if left is None
            else ttl is None or not ttl <= left <= params["life"] + 1
        ):
            self._run("load", "refresh", params)
        return found[0]

    def peek(self, key: str) -> tuple[Record, float | None] | None:
        """Return the record of *key* and when its session expires: the load's ``SELECT`` alone.

        The stored expiry less ``refresh_interval`` (the most slack a write adds;
        the ttl it depends on is not kept): never later than the session's own.
        """
        sent = time.time() if self._clock is None else self._clock()
        if (found := self._read("peek", key, self._params(key, None))) is None or found[1] is None:
            return found
        return found[0], sent + found[1] - self.refresh_interval

    def save(self, key: str, data: bytes, ttl: int | None, expected_version: str | None) -> str:
        # A random token, not a counter: a record deleted and created again never
        # repeats a version, and the new one is known without reading it back.
        version = secrets.token_hex(16)
        params = self._params(key, ttl)
        params.update(data=bytes(data), version=version)
        if expected_version is not None:
            params["expected"] = expected_version
            done = self._run("save", "update", params) == 1
        else:  # a key held by an expired row is taken over
            done = self._run("save", "insert", params) == 1 or (
                self._run("save", "delete_dead", params) == 1
                and self._run("save", "insert", params) == 1
            )
        if not done:
            state = "exists" if expected_version is None else "changed, vanished or expired"
            raise ConflictError(f"record {key[:12]}… {state} in {self}", self)
        return version

    def touch(self, key: str, ttl: int | None) -> bool:
        return bool(self._run("touch", "touch", self._params(key, ttl)))

    def delete(self, key: str) -> None:
        self._run("delete", "delete", self._params(key, None))

    def close(self) -> None:
        """Close the pooled connections (not those of an engine given by the caller)."""
        self._conns.release_idle()
        if self._owned:
            self.engine.dispose()

    def _rows(self, action: str, name: str, **params: Any) -> tuple[list[Any], int]:
        """Run the operator's statement *name*; return its first column and row count."""
        if self._clock is not None:
            params["now"] = float(self._clock())
        with self._connection(action) as conn:
            result = conn.execute(self._sql[name], params)
            return (list(result.scalars()) if result.returns_rows else []), result.rowcount

    def delete_expired(self) -> int:
        """Delete expired rows, *batch_size* at a time (short statements, few locks)."""
        removed = 0
        while True:
            keys = self._rows("delete_expired", "expired")[0]
            if keys:
                removed += self._rows("delete_expired", "reap", keys=keys)[1]
            if len(keys) < self.batch_size:
                return removed

    def keys(self) -> Iterator[str]:
        after = ""
        while True:  # pages in key order: no cursor held open between yields
            page = self._rows("keys", "keys", after=after)[0]
            yield from page
            if len(page) < self.batch_size:
                return
            after = page[-1]

    def count(self) -> int:
        return int(self._rows("count", "count")[0][0])
