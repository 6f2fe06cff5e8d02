"""The table, the engine and every statement of :class:`~.SQLStore`, built once.

Kept apart from the store so the store reads as the protocol and the SQL reads
as SQL (the split Flask-Session makes with ``postgresql/_queries.py``). Each
statement is built once per store with bind parameters: it compiles once, then
hits SQLAlchemy's compiled cache on every call.
"""

from __future__ import annotations

import inspect
from typing import Any

from ...exceptions import MissingDependencyError
from ...exceptions import missing_dependency
from ..base import mask_url

try:
    import sqlalchemy as sa
    from sqlalchemy.dialects import postgresql
except ImportError:  # SQLStore reports the missing driver
    sa = None  # type: ignore[assignment]

__all__ = ["create_engine", "statements", "table"]

#: The database's "now" as a Unix time (other dialects get the ANSI form). Times
#: are numbers, not TIMESTAMP columns, so no session time zone is involved.
#: MariaDB/MySQL: UNIX_TIMESTAMP() plus the fraction of NOW(6), both taken at
#: the statement's start, so neither the time zone nor a DST fold shifts it.
_MYSQL_NOW = "(UNIX_TIMESTAMP() + MICROSECOND(NOW(6)) / 1000000)"
EPOCH = {
    **{"mysql": _MYSQL_NOW, "mariadb": _MYSQL_NOW},
    "postgresql": "EXTRACT(EPOCH FROM CURRENT_TIMESTAMP)",
    "sqlite": "((julianday('now') - 2440587.5) * 86400.0)",
}
#: The extra that installs the DBAPI driver a url names.
_EXTRAS = {"psycopg": "postgresql", "pymysql": "mysql"}
_SKIP_ROLLBACK = sa is not None and "skip_autocommit_rollback" in (
    inspect.signature(sa.engine.default.DefaultDialect).parameters
)


def create_engine(url: str, options: dict[str, Any]) -> sa.engine.Engine:
    """Return an engine for *url*; a missing DBAPI driver names its package."""
    try:
        if sa.engine.make_url(url).get_backend_name() in ("mysql", "mariadb") and _SKIP_ROLLBACK:
            # PyMySQL sends ROLLBACK at every pool check-in, even in autocommit: a
            # wasted round trip per operation (SQLAlchemy >= 2.0.43 can skip it).
            options["skip_autocommit_rollback"] = True
        # Autocommit for the engine's life, not per checkout (that costs SET statements).
        return sa.create_engine(url, isolation_level="AUTOCOMMIT", **options)
    except ImportError as err:
        package = err.name or str(err)
        if extra := _EXTRAS.get(package):
            raise missing_dependency("SQLStore", package, extra) from err
        message = f"SQLStore needs the {package!r} package for {mask_url(url)}"
        raise MissingDependencyError(f"{message}: pip install {package}") from err
    except (sa.exc.ArgumentError, TypeError) as err:
        raise ValueError(f"url: cannot use {mask_url(url)}: {err}") from err


def table(name: str) -> sa.Table:
    """Return the table *name* (``schema.table`` allowed); docs/stores/sql.md has its DDL."""
    schema, _, name = name.rpartition(".")
    return sa.Table(
        name,
        sa.MetaData(),
        sa.Column("key", sa.String(128), primary_key=True),
        # A length makes MariaDB/MySQL pick LONGBLOB (plain BLOB stops at 64 KiB).
        sa.Column("data", sa.LargeBinary(2**32 - 1), nullable=False),
        sa.Column("version", sa.String(32), nullable=False),
        sa.Column("expires_at", sa.Double(), index=True),  # Unix time; NULL = never
        sa.Column("created", sa.Double(), nullable=False),
        schema=schema or None,
    )


def statements(t: sa.Table, dialect: str, batch_size: int) -> dict[str, Any]:
    """Return the store's statements on table *t*, by name.

    Bind parameters: ``k`` key, ``ttl`` seconds or None, ``slack`` seconds the
    stored expiry may be off the wanted one before a load refreshes it, ``data``,
    ``version``, ``expected`` (version), ``after`` (key), ``keys`` (list).
    """
    c, k = t.c, sa.bindparam("k", type_=sa.String())
    now: Any = sa.literal_column(EPOCH.get(dialect, EPOCH["postgresql"]), sa.Double())
    ttl: Any = sa.cast(sa.bindparam("ttl"), sa.Double())  # cast: PostgreSQL must type a NULL
    expires = now + ttl  # NULL (never) when ttl is None
    live = sa.or_(c.expires_at.is_(None), c.expires_at > now)
    data = sa.type_coerce(c.data, sa.types.NullType()).label("data")  # raw: the store checks it
    load = sa.select(data, c.version, c.expires_at, now.label("now")).where(c.key == k, live)
    touch = t.update().where(c.key == k, live).values(expires_at=expires)
    if dialect == "postgresql":
        # The refresh rides in the load, writing only when due: "never" on one side
        # only, or the stored expiry is off the wanted one by more than the slack.
        off = sa.func.abs(c.expires_at - expires) > sa.bindparam("slack")
        due = sa.or_(c.expires_at.is_(None) != ttl.is_(None), off)
        load = load.add_cte(touch.where(due).returning(c.key).cte("refresh"))
    changed: dict[str, Any] = {"data": sa.bindparam("data"), "version": sa.bindparam("version")}
    changed["expires_at"] = expires
    row = {"key": k, "created": now, **changed}
    # A taken key: IntegrityError, except on PostgreSQL, where ON CONFLICT DO
    # NOTHING keeps the server log clean and RETURNING says whether it inserted
    # (an INSERT's rowcount is not reliable across SQLAlchemy 2.0 releases).
    insert: Any = t.insert().values(row)
    if dialect == "postgresql":
        insert = postgresql.insert(t).values(row).on_conflict_do_nothing().returning(c.key)
    current = sa.and_(c.key == k, c.version == sa.bindparam("expected"), live)
    return {
        "load": load,
        "touch": touch,
        "insert": insert,
        "update": t.update().where(current).values(changed),
        "delete": t.delete().where(c.key == k),
        "delete_dead": t.delete().where(c.key == k, c.expires_at <= now),
        "count": sa.select(sa.func.count()).select_from(t).where(live),
        "keys": sa.select(c.key)
        .where(live, c.key > sa.bindparam("after"))
        .order_by(c.key)
        .limit(batch_size),
        # Two steps, not DELETE ... IN (SELECT ... LIMIT n): MariaDB refuses LIMIT there.
        "expired": sa.select(c.key).where(c.expires_at <= now).limit(batch_size),
        "reap": t.delete().where(
            c.key.in_(sa.bindparam("keys", expanding=True)), c.expires_at <= now
        ),
    }
