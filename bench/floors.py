"""Floors: the least a session on each engine can cost, written on the driver itself.

A floor session is a dict loaded by one read and written back only when it
changed, under an unsigned random cookie. It has no signing, no expiry
refresh, no serializer choice and no events; where ours writes conditionally
(SQL), the floor does too, since that is the shape of the work. Each floor
uses the leanest path its driver offers:

- memory: a dict of JSON strings;
- Redis: one kept redis-py ``Connection`` (the same lean path ours uses),
  ``GET`` to load, ``SET … EX`` to save;
- PostgreSQL: one psycopg connection in autocommit, statements prepared on
  the server and run through libpq (``psycopg.pq``), binary both ways: the
  path ours takes, minus its adapters (the floor knows its types); MariaDB:
  one PyMySQL connection in autocommit, its plain cursor (PyMySQL has no
  server-side prepared statements).
  A load is ``SELECT data, version … WHERE key = %s AND (live)``; a save of a
  loaded session the conditional ``UPDATE … WHERE key = %s AND version = %s``;
  a new one an ``INSERT``. :class:`RawSQL` is also what the store-level
  comparison (:mod:`bench.storelevel`) times ours against.
"""

from __future__ import annotations

import json
import secrets
import struct
from collections.abc import Callable
from typing import Any

__all__ = ["FloorSession", "RawSQL", "floor_factory", "memory_floor", "redis_floor"]

TIMEOUT = 1200
_DOUBLE = struct.Struct(">d")
_TEXT, _FLOAT8, _BYTEA = 25, 701, 17
#: Parameter types of the statements run on libpq (PostgreSQL's type OIDs).
_OIDS = {
    b"floor_read": [_TEXT],
    b"floor_update": [_BYTEA, _TEXT, _FLOAT8, _TEXT, _TEXT],
    b"floor_touch": [_FLOAT8, _TEXT],
    b"floor_insert": [_TEXT, _BYTEA, _TEXT, _FLOAT8],
}
#: The database's "now" as a Unix time, as SQLStore writes it (see its _statements).
NOW = {
    "postgresql": "EXTRACT(EPOCH FROM CURRENT_TIMESTAMP)",
    "mariadb": "(UNIX_TIMESTAMP() + MICROSECOND(NOW(6)) / 1000000)",
}


class FloorSession(dict[str, Any]):
    """A dict that knows its key, the version it loaded, and whether it was changed."""

    def __init__(self, key: str | None, data: dict[str, Any], version: str | None = None) -> None:
        super().__init__(data)
        self.key, self.version = key, version
        self.dirty = False

    def __setitem__(self, key: str, value: Any) -> None:
        super().__setitem__(key, value)
        self.dirty = True


def floor_factory(
    load: Callable[[str], tuple[bytes, str | None] | None],
    save: Callable[[FloorSession, bytes], None],
) -> Callable[[Any], FloorSession]:
    """Return a Pyramid session factory on *load* (key -> (JSON, version)) and *save*."""

    def finish(session: FloorSession, response: Any) -> None:
        if not session.dirty:
            return
        if session.key is None:
            session.key = secrets.token_hex(32)
            response.set_cookie("session", session.key, httponly=True, samesite="Lax")
            session.version = None
        save(session, json.dumps(session).encode())

    def factory(request: Any) -> FloorSession:
        key = request.cookies.get("session")
        found = load(key) if key else None
        if found is None:
            session = FloorSession(None, {})
        else:
            session = FloorSession(key, json.loads(found[0]), found[1])
        request.add_response_callback(lambda request, response: finish(session, response))
        return session

    return factory


def memory_floor() -> Callable[[Any], FloorSession]:
    """Return the floor on a dict of JSON strings."""
    records: dict[str, bytes] = {}

    def load(key: str) -> tuple[bytes, str | None] | None:
        data = records.get(key)
        return None if data is None else (data, None)

    def save(session: FloorSession, data: bytes) -> None:
        assert session.key is not None
        records[session.key] = data

    return floor_factory(load, save)


def redis_floor(url: str) -> tuple[Callable[[Any], FloorSession], Callable[[], None]]:
    """Return the floor on one kept redis-py connection, and its close function."""
    import redis

    pool = redis.Redis.from_url(url).connection_pool
    conn = pool.get_connection()
    conn.connect()

    def command(*args: Any) -> Any:
        conn.send_command(*args)
        return conn.read_response()

    def load(key: str) -> tuple[bytes, str | None] | None:
        data = command("GET", f"bench:floor:{key}")
        return None if data is None else (data, None)

    def save(session: FloorSession, data: bytes) -> None:
        command("SET", f"bench:floor:{session.key}", data, "EX", TIMEOUT)

    def close() -> None:
        pool.release(conn)
        pool.disconnect()

    return floor_factory(load, save), close


class RawSQL:
    """Session rows in *table* through the bare DBAPI driver of *url* (autocommit).

    :param kind: ``postgresql`` (psycopg, prepared statements) or ``mariadb`` (PyMySQL).
    :param conn: a driver connection in autocommit to use instead of opening one
        (not closed by :meth:`close`): the store level runs the bare driver on
        the store's own connection, so both talk to the same server process.
    """

    def __init__(self, kind: str, url: str, table: str, conn: Any = None) -> None:
        import sqlalchemy as sa

        self.kind, self.table, self._owned = kind, table, conn is None
        parts = sa.engine.make_url(url)
        if kind == "postgresql":
            import psycopg

            query = {k: str(v) for k, v in parts.query.items()}
            self.conn: Any = conn or psycopg.connect(
                host=parts.host,
                port=parts.port or 5432,
                user=parts.username,
                password=parts.password or "",
                dbname=parts.database,
                autocommit=True,
                **query,
            )
            self.cursor = self.conn.cursor(binary=True)
            self._options: dict[str, Any] = {"prepare": True}
            self._prepared: set[bytes] = set()
            key, blob = "key", "BYTEA"
        else:
            import pymysql

            self.conn = conn or pymysql.connect(
                host=parts.host,
                port=parts.port or 3306,
                user=parts.username,
                password=parts.password or "",
                database=parts.database,
                autocommit=True,
            )
            self.cursor = self.conn.cursor()
            self._options = {}
            key, blob = "`key`", "LONGBLOB"
        now = NOW[kind]
        self.ddl = [
            f"DROP TABLE IF EXISTS {table}",
            f"CREATE TABLE {table} ({key} VARCHAR(128) PRIMARY KEY, data {blob} NOT NULL,"
            " version VARCHAR(32) NOT NULL, expires_at DOUBLE PRECISION,"
            " created DOUBLE PRECISION NOT NULL)",
            f"CREATE INDEX ix_{table}_expires_at ON {table} (expires_at)",
        ]
        live = f"{key} = %s AND (expires_at IS NULL OR expires_at > {now})"
        self.select = f"SELECT data, version, expires_at FROM {table} WHERE {live}"
        self.update_sql = (
            f"UPDATE {table} SET data = %s, version = %s, expires_at = {now} + %s"
            f" WHERE {key} = %s AND version = %s"
        )
        self.touch_sql = f"UPDATE {table} SET expires_at = {now} + %s WHERE {live}"
        columns = f"{key}, data, version, expires_at, created"
        self.insert_sql = f"INSERT INTO {table} ({columns}) VALUES (%s, %s, %s, {now} + %s, {now})"

    def create(self) -> None:
        """Create the table afresh."""
        for statement in self.ddl:
            self.cursor.execute(statement)

    def ensure(self) -> None:
        """Create the table unless it exists (a second builder shares it)."""
        self.cursor.execute(self.ddl[1].replace("CREATE TABLE", "CREATE TABLE IF NOT EXISTS", 1))
        self.cursor.execute(self.ddl[2].replace("CREATE INDEX", "CREATE INDEX IF NOT EXISTS", 1))

    def drop(self) -> None:
        self.cursor.execute(self.ddl[0])

    def read(self, key: str) -> tuple[bytes, str] | None:
        """Return (data, version) of the live row *key*: one prepared SELECT, leanest path."""
        if self.kind == "postgresql":
            result = self._exec(b"floor_read", self.select, [key.encode()])
            if not result.ntuples:
                return None
            return result.get_value(0, 0), result.get_value(0, 1).decode()
        return self.read_cursor(key)

    def read_cursor(self, key: str) -> tuple[bytes, str] | None:
        """:meth:`read` through the driver's cursor (psycopg: prepared, binary)."""
        self.cursor.execute(self.select, (key,), **self._options)
        row = self.cursor.fetchone()
        return None if row is None else (bytes(row[0]), row[1])

    def update(self, key: str, data: bytes, expected: str, version: str) -> bool:
        """Write *data* if the row's version is *expected*: one conditional UPDATE."""
        if self.kind == "postgresql":
            params = [
                data,
                version.encode(),
                _DOUBLE.pack(TIMEOUT),
                key.encode(),
                expected.encode(),
            ]
            return self._exec(b"floor_update", self.update_sql, params).command_tuples == 1
        return self.update_cursor(key, data, expected, version)

    def update_cursor(self, key: str, data: bytes, expected: str, version: str) -> bool:
        """:meth:`update` through the driver's cursor."""
        params = (data, version, float(TIMEOUT), key, expected)
        self.cursor.execute(self.update_sql, params, **self._options)
        return bool(self.cursor.rowcount == 1)

    def touch(self, key: str) -> bool:
        """Move the live row's expiry: the UPDATE an expiry refresh sends, alone."""
        if self.kind == "postgresql":
            params = [_DOUBLE.pack(TIMEOUT), key.encode()]
            return self._exec(b"floor_touch", self.touch_sql, params).command_tuples == 1
        self.cursor.execute(self.touch_sql, (float(TIMEOUT), key))
        return bool(self.cursor.rowcount == 1)

    def skip_commit_flush(self) -> None:
        """PostgreSQL: commit without waiting for the WAL flush (``synchronous_commit = off``).

        Not what any store does: it only shows how much of a write is the flush.
        """
        self.cursor.execute("SET synchronous_commit = off")

    def insert(self, key: str, data: bytes, version: str) -> None:
        """Add a new row: one INSERT, on the leanest path."""
        if self.kind == "postgresql":
            params = [key.encode(), data, version.encode(), _DOUBLE.pack(TIMEOUT)]
            self._exec(b"floor_insert", self.insert_sql, params)
            return
        self.cursor.execute(self.insert_sql, (key, data, version, float(TIMEOUT)))

    def _exec(self, name: bytes, sql: str, params: list[bytes]) -> Any:
        """Run *sql* prepared as *name* on libpq (psycopg.pq), binary both ways."""
        from psycopg import pq

        pgconn = self.conn.pgconn
        if name not in self._prepared:
            numbered = sql
            for n in range(1, len(params) + 1):
                numbered = numbered.replace("%s", f"${n}", 1)
            types = [_OIDS[name][n] for n in range(len(params))]
            pgconn.prepare(name, numbered.encode(), types)
            self._prepared.add(name)
        formats = [pq.Format.BINARY] * len(params)
        result = pgconn.exec_prepared(name, params, formats, pq.Format.BINARY)
        if result.status not in (pq.ExecStatus.TUPLES_OK, pq.ExecStatus.COMMAND_OK):
            raise RuntimeError(result.error_message.decode())
        return result

    def close(self) -> None:
        if self._owned:
            self.conn.close()

    def session_factory(self) -> Callable[[Any], FloorSession]:
        """Return the floor session factory on this table."""

        def load(key: str) -> tuple[bytes, str | None] | None:
            return self.read(key)

        def save(session: FloorSession, data: bytes) -> None:
            assert session.key is not None
            version = secrets.token_hex(16)
            if session.version is None:
                self.insert(session.key, data, version)
            elif not self.update(session.key, data, session.version, version):
                raise RuntimeError("floor: the conditional UPDATE lost (nothing else writes)")
            session.version = version

        return floor_factory(load, save)
