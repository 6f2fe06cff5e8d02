"""SQLStore: records in a table of PostgreSQL, MariaDB/MySQL or SQLite, via SQLAlchemy Core.

One row per record: ``key``, ``data``, ``version`` (a random token),
``expires_at`` and ``created`` (Unix times from the *database's* clock, so web
servers with drifting clocks agree and no time zone is involved; NULL = never).
Statements run in autocommit: a load is one ``SELECT``, a create one ``INSERT``,
an update one ``UPDATE ... WHERE version = :expected``. A load writes only when
the stored expiry is off the wanted one by more than ``refresh_interval``; on
PostgreSQL that refresh rides in the load itself (a data-modifying CTE).
Expired rows are misses until ``delete_expired`` removes them in batches
(``psessions gc``). It does not use the ORM, migrate a table it did not create,
or retry a lost compare-and-set (the factory does).
"""

from __future__ import annotations

import logging
import re
import secrets
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from typing import ClassVar

from ...exceptions import ConflictError
from ...exceptions import StoreUnavailableError
from ...exceptions import missing_dependency
from ..base import Converter
from ..base import Record
from ..base import as_bool
from ..base import as_int
from ..base import as_seconds
from ..base import mask_url
from . import _statements

try:
    import sqlalchemy as sa
except ImportError:  # the OPTIONS table stays readable without the driver
    sa = None  # type: ignore[assignment]

__all__ = ["SQLStore"]

security = logging.getLogger("pyramid_sessionstore.security")

_NAME = re.compile(r"([A-Za-z_]\w{0,62}\.)?[A-Za-z_]\w{0,59}", re.ASCII)
#: "Rolled back, try again" (MySQL deadlock; SQLSTATE serialization failure,
#: deadlock): the write did not happen, so it is a lost compare-and-set.
_RETRYABLE = {1213, "40001", "40P01"}


class SQLStore:
    """Keep records in a table of a SQL database, one statement per operation.

    :param url: SQLAlchemy URL, e.g. ``postgresql+psycopg://user:pw@host/db``.
    :param table: table name, or ``schema.table``. Default: ``pyramid_sessions``.
    :param create_table: create the table and its index at first use when missing.
        Default: true.
    :param pool_size: and *max_overflow*, *pool_recycle* (seconds), *pool_pre_ping*,
        *echo*: for ``create_engine``; unset means SQLAlchemy's default.
    :param refresh_interval: seconds a stored expiry may be off the wanted one before
        a load rewrites it (at most half the ttl), so reads are rarely writes. Default: 60.
    :param batch_size: rows per statement in ``delete_expired`` and ``keys``. Default: 1000.
    :param engine: a ready SQLAlchemy ``Engine`` instead of *url* (not disposed by close).
    """

    OPTIONS: ClassVar[dict[str, Converter]] = {
        **dict.fromkeys(("url", "table"), str),
        **dict.fromkeys(("create_table", "pool_pre_ping", "echo"), as_bool),
        # as_seconds: a whole number >= 0, or "none" for the default.
        **dict.fromkeys(("pool_size", "max_overflow", "pool_recycle"), as_seconds),
        **{"refresh_interval": as_seconds, "batch_size": as_int},
    }
    CODE_ONLY: ClassVar[frozenset[str]] = frozenset({"engine"})

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
    ) -> None:
        if sa is None:
            raise missing_dependency("SQLStore", "sqlalchemy", "sql")
        if (url is None) == (engine is None):
            raise ValueError("url: give a database url (or, in code, an engine instead)")
        if not _NAME.fullmatch(table):
            raise ValueError(f"table: expected a name like sessions or schema.sessions: {table!r}")
        if batch_size < 1:
            raise ValueError(f"batch_size: expected a whole number >= 1, got {batch_size!r}")
        self.batch_size, self.refresh_interval = batch_size, as_seconds(refresh_interval) or 0
        self._owned = engine is None
        if engine is None:
            given = {"pool_size": pool_size, "max_overflow": max_overflow, "echo": echo}
            given.update(pool_recycle=pool_recycle, pool_pre_ping=pool_pre_ping)
            engine = _statements.create_engine(
                str(url), {k: v for k, v in given.items() if v is not None}
            )
        self._where = mask_url(url) if url else engine.url.render_as_string(hide_password=True)
        if engine.dialect.name == "sqlite" and engine.url.database in (None, "", ":memory:"):
            raise ValueError("url: in-memory SQLite is private to one connection; give a file")
        if getattr(engine.dialect, "_on_connect_isolation_level", None) != "AUTOCOMMIT":
            # Only for a given engine: it costs SET statements per checkout on MySQL.
            engine = engine.execution_options(isolation_level="AUTOCOMMIT")
        #: The engine, in autocommit: a statement is a transaction, no BEGIN/COMMIT trips.
        self.engine = engine
        #: The table (``store.table.drop(store.engine)`` removes it).
        self.table = _statements.table(table)
        self._label = f"SQLStore at {self._where} (table {self.table.fullname})"
        self._ready, self._lock = not create_table, threading.Lock()
        self._pg = engine.dialect.name == "postgresql"
        self._sql = _statements.statements(self.table, engine.dialect.name, batch_size)

    def __repr__(self) -> str:
        return f"SQLStore(url={self._where!r}, table={self.table.fullname!r})"

    @contextmanager
    def _connection(self, action: str) -> Iterator[sa.engine.Connection]:
        """Yield a pooled connection; turn driver errors into the project's."""
        where = self._label
        try:
            if not self._ready:
                self._create()
            with self.engine.connect() as conn:
                yield conn
        except sa.exc.DBAPIError as err:
            orig: Any = err.orig
            code = getattr(orig, "sqlstate", None) or (orig.args or [None])[0]
            cause = f"{type(orig).__name__}: {orig}".strip()
            if code in _RETRYABLE and action == "save":
                raise ConflictError(f"{where}: {action} rolled back ({cause})", self) from err
            raise StoreUnavailableError(f"{where}: {action} failed: {cause}", self) from err
        except sa.exc.SQLAlchemyError as err:  # pool exhausted, ...
            raise StoreUnavailableError(f"{where}: {action} failed: {err}", self) from err

    def _create(self) -> None:
        with self._lock, self.engine.connect() as conn:
            try:  # checkfirst: one query when the table exists
                self.table.create(conn, checkfirst=True)
            except sa.exc.DBAPIError:
                # Another process created it between the check and the CREATE.
                if not sa.inspect(conn).has_table(self.table.name, schema=self.table.schema):
                    raise
            self._ready = True

    def load(self, key: str, ttl: int | None) -> Record | None:
        slack = None if ttl is None else min(self.refresh_interval, ttl / 2)
        params = {"k": key, "ttl": ttl, "slack": slack}
        with self._connection("load") as conn:
            row = conn.execute(self._sql["load"], params).first()
            if row is not None and not self._pg:  # PostgreSQL refreshed in the same statement
                stored, wanted = row.expires_at, None if ttl is None else float(row.now) + ttl
                if (stored is None) != (wanted is None) or (
                    wanted is not None and abs(stored - wanted) > (slack or 0)
                ):
                    conn.execute(self._sql["touch"], params)
        if row is None:
            return None
        if not isinstance(row.data, (bytes, memoryview)) or not row.version:
            # Not a row this store wrote (text put there by hand, an empty version).
            security.warning("SQLStore: deleting unreadable record %s… in %s", key[:12], self)
            self.delete(key)
            return None
        return Record(bytes(row.data), row.version)

    def save(self, key: str, data: bytes, ttl: int | None, expected_version: str | None) -> str:
        # A random token, not a counter: a record deleted and created again never
        # repeats a version, and the new one is known without reading it back.
        version = secrets.token_hex(16)
        params = {"k": key, "data": bytes(data), "version": version, "ttl": ttl}
        with self._connection("save") as conn:
            if expected_version is not None:
                params["expected"] = expected_version
                done = conn.execute(self._sql["update"], params).rowcount == 1
            else:  # a key held by an expired row is taken over
                done = self._insert(conn, params) or (
                    conn.execute(self._sql["delete_dead"], params).rowcount == 1
                    and self._insert(conn, params)
                )
        if not done:
            state = "exists" if expected_version is None else "changed, vanished or expired"
            raise ConflictError(f"record {key[:12]}… {state} in {self}", self)
        return version

    def _insert(self, conn: sa.engine.Connection, params: dict[str, Any]) -> bool:
        """Insert the row; False when the key is taken."""
        try:
            result = conn.execute(self._sql["insert"], params)
        except sa.exc.IntegrityError:
            return False
        return not result.returns_rows or result.first() is not None  # RETURNING: inserted

    def touch(self, key: str, ttl: int | None) -> bool:
        with self._connection("touch") as conn:
            return bool(conn.execute(self._sql["touch"], {"k": key, "ttl": ttl}).rowcount)

    def delete(self, key: str) -> None:
        with self._connection("delete") as conn:
            conn.execute(self._sql["delete"], {"k": key})

    def close(self) -> None:
        """Close the pooled connections (not those of an engine given by the caller)."""
        if self._owned:
            self.engine.dispose()

    def delete_expired(self) -> int:
        """Delete expired rows, *batch_size* at a time (short statements, few locks)."""
        removed = 0
        while True:
            with self._connection("delete_expired") as conn:
                keys = list(conn.execute(self._sql["expired"]).scalars())
                if keys:
                    removed += conn.execute(self._sql["reap"], {"keys": keys}).rowcount
            if len(keys) < self.batch_size:
                return removed

    def keys(self) -> Iterator[str]:
        after = ""
        while True:  # pages in key order: no cursor held open between yields
            with self._connection("keys") as conn:
                page = list(conn.execute(self._sql["keys"], {"after": after}).scalars())
            yield from page
            if len(page) < self.batch_size:
                return
            after = page[-1]

    def count(self) -> int:
        with self._connection("count") as conn:
            return int(conn.execute(self._sql["count"]).scalar_one())
