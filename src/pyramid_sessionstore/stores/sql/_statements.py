"""The table, the engine and every statement of :class:`~.SQLStore`, built once.

Kept apart from the store so the store reads as the protocol and the SQL reads
as SQL (the split Flask-Session makes with ``postgresql/_queries.py``). Each
statement is built once per store with bind parameters. The ones a request
runs are compiled to the dialect's SQL text once (:func:`compiled`); the
operator's ones (gc, scans) hit SQLAlchemy's compiled cache on every call.
"""

from __future__ import annotations

import inspect
import math
import re
from typing import Any

from ...exceptions import MissingDependencyError
from ...exceptions import missing_dependency
from ..base import mask_url

try:
    import sqlalchemy as sa
    from sqlalchemy.dialects import postgresql
except ImportError:  # SQLStore reports the missing driver
    sa = None  # type: ignore[assignment]

__all__ = [
    "HOT",
    "compiled",
    "create_engine",
    "create_table",
    "extra_for",
    "readable",
    "statements",
    "table",
    "usable",
]

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
#: The driver a url names by default, and the form that uses ours instead.
_DEFAULT_DRIVERS = {"psycopg2": "postgresql+psycopg", "MySQLdb": "mysql+pymysql"}
_SKIP_ROLLBACK = sa is not None and "skip_autocommit_rollback" in (
    inspect.signature(sa.engine.default.DefaultDialect).parameters
)


_NAME = re.compile(r"([A-Za-z_]\w{0,62}\.)?[A-Za-z_]\w{0,59}", re.ASCII)


def create_engine(url: str, options: dict[str, Any]) -> sa.engine.Engine:
    """Return an engine for *url* with the *options* that are not None.

    :raises MissingDependencyError: the DBAPI driver is missing (names its package).
    :raises ValueError: *url* is unusable, or names an in-memory SQLite database.
    """
    options = {k: v for k, v in options.items() if v is not None}
    try:
        if sa.engine.make_url(url).get_backend_name() in ("mysql", "mariadb") and _SKIP_ROLLBACK:
            # PyMySQL sends ROLLBACK at every pool check-in, even in autocommit: a
            # wasted round trip per operation (SQLAlchemy >= 2.0.43 can skip it).
            options["skip_autocommit_rollback"] = True
        # Autocommit for the engine's life, not per checkout (that costs SET statements).
        engine = sa.create_engine(url, isolation_level="AUTOCOMMIT", **options)
    except ImportError as err:
        package = err.name or str(err)
        if extra := _EXTRAS.get(package):
            raise missing_dependency("SQLStore", package, extra) from err
        message = f"SQLStore needs the {package!r} package for {mask_url(url)}"
        message += f": pip install {package}"
        if ours := _DEFAULT_DRIVERS.get(package):
            message += f", or write the url as {ours}://... and pip install"
            message += f" 'pyramid_sessionstore[{extra_for(ours)}]'"
        raise MissingDependencyError(message) from err
    except (sa.exc.ArgumentError, TypeError) as err:
        raise ValueError(f"url: cannot use {mask_url(url)}: {err}") from err
    return usable(engine)


def usable(engine: sa.engine.Engine) -> sa.engine.Engine:
    """Return *engine*; raise ValueError for an in-memory SQLite one."""
    if engine.dialect.name == "sqlite" and engine.url.database in (None, "", ":memory:"):
        raise ValueError("url: in-memory SQLite is private to one connection; give a file")
    return engine


def extra_for(url: str) -> str:
    """Return the extra to install for *url*: the one with its database's driver.

    Read from the scheme alone, so it works before SQLAlchemy is installed.
    """
    backend = url.partition(":")[0].partition("+")[0].lower()
    if backend == "postgresql":
        return "postgresql"
    return "mysql" if backend in ("mysql", "mariadb") else "sql"


def table(name: str) -> sa.Table:
    """Return the table *name* (``schema.table`` allowed); docs/stores/sql.md has its DDL.

    :raises ValueError: for a name that is not a plain identifier (or two, dotted).
    """
    if not _NAME.fullmatch(name):
        raise ValueError(f"table: expected a name like sessions or schema.sessions: {name!r}")
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


def create_table(conn: sa.engine.Connection, t: sa.Table) -> None:
    """Create *t* and its index on *conn* unless it exists (one query when it does).

    Another process may create it between the check and the ``CREATE``: that
    error is swallowed once the table is seen to exist.
    """
    try:
        t.create(conn, checkfirst=True)
    except sa.exc.DBAPIError:
        if not sa.inspect(conn).has_table(t.name, schema=t.schema):
            raise


def readable(row: Any) -> bool:
    """Return whether a load's *row* (data, version, seconds left) is one the store wrote.

    Not so: text put there by hand, a NULL or empty version, a NaN or non-number
    time left.
    """
    data, version, left = row
    if not (isinstance(data, (bytes, memoryview)) and isinstance(version, str) and version):
        return False
    return left is None or (type(left) in (float, int) and math.isfinite(left))


def statements(t: sa.Table, dialect: str, batch_size: int, clock: bool) -> dict[str, Any]:
    """Return the store's statements on table *t*, by name.

    Bind parameters: ``k`` key; ``ttl`` the idle seconds a record must still
    have after a load (None: never expires); ``life`` the seconds a write gives
    it (``ttl`` plus the refresh slack, so a refresh is due once per slack, and
    a record may outlive its ``ttl`` by the slack but never ends before it);
    ``data``, ``version``, ``expected`` (version), ``after`` (key), ``keys``
    (list); ``now``, the time, when *clock* (else the database's clock is read).
    """
    c, k = t.c, sa.bindparam("k", type_=sa.String())
    now: Any = (
        sa.bindparam("now", type_=sa.Double())
        if clock
        else sa.literal_column(EPOCH.get(dialect, EPOCH["postgresql"]), sa.Double())
    )
    # PostgreSQL must be told a NULL's type; MariaDB/MySQL has no CAST to DOUBLE.
    typed = sa.type_coerce if dialect in ("mysql", "mariadb") else sa.cast
    ttl: Any = typed(sa.bindparam("ttl"), sa.Double())
    expires = now + typed(sa.bindparam("life"), sa.Double())  # NULL (never) for None
    live = sa.or_(c.expires_at.is_(None), c.expires_at > now)
    # Due: "never" on one side only, or the stored expiry would end the record
    # before now + ttl, or it lies beyond now + life (the ttl was shortened).
    # (SQLStore.load tells the same from the time left.)
    due = sa.or_(
        c.expires_at.is_(None) != ttl.is_(None), c.expires_at < now + ttl, c.expires_at > expires
    )
    data = sa.type_coerce(c.data, sa.types.NullType()).label("data")  # raw: the store checks it
    # The load's third column is the time left (NULL: never expires), from which
    # the store tells whether a refresh is due (then sends "refresh", a second
    # statement once per slack per active record). The same test in SQL, or a
    # data-modifying CTE doing the refresh in the load, costs every load more
    # than it saves: drivers and servers pay per column and per expression.
    left: Any = c.expires_at - now
    if dialect == "sqlite":  # any type goes in any column: text is no time
        kinds: list[Any] = [sa.literal_column(f"'{k}'") for k in ("real", "integer", "null")]
        number = sa.func.typeof(c.expires_at).in_(kinds)  # NULL - now is NULL: never
        left = sa.case((number, left), else_=sa.literal_column("'?'"))
    load = sa.select(data, c.version, left.label("remaining")).where(c.key == k, live)
    touch = t.update().where(c.key == k, live).values(expires_at=expires)
    changed: dict[str, Any] = {"data": sa.bindparam("data"), "version": sa.bindparam("version")}
    changed["expires_at"] = expires
    row = {"key": k, "created": now, **changed}
    # A taken key: IntegrityError, except on PostgreSQL, where ON CONFLICT DO
    # NOTHING keeps the server log clean (the DBAPI row count says 0).
    insert: Any = t.insert().values(row)
    if dialect == "postgresql":
        insert = postgresql.insert(t).values(row).on_conflict_do_nothing()
    current = sa.and_(c.key == k, c.version == sa.bindparam("expected"), live)
    return {
        "load": load,
        "touch": touch,
        # Due again in the WHERE: of two loads that both saw it due, one writes.
        "refresh": touch.where(due),
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


#: The statements run on DBAPI cursors (see ``_connections``); the others go
#: through SQLAlchemy (expanding parameters, operator commands).
HOT = ("load", "refresh", "touch", "insert", "update", "delete", "delete_dead")


def compiled(stmts: dict[str, Any], dialect: sa.engine.Dialect) -> dict[str, tuple[str, Any]]:
    """Return the SQL text of the :data:`HOT` statements for *dialect*, by name.

    Each value is (text, names): *names* is the order of the positional
    parameters for a positional paramstyle (``qmark`` for sqlite3, ``$n`` for
    psycopg, whose statements run at the libpq level), or None when the driver
    takes a dict (``pyformat`` for PyMySQL).
    """
    if dialect.driver == "psycopg":  # libpq's own $n placeholders: run by psycopg.pq
        dialect = type(dialect)(paramstyle="numeric_dollar")  # type: ignore[call-arg]
    positional = dialect.paramstyle in ("qmark", "format", "numeric", "numeric_dollar")
    done = {}
    for name in HOT:
        text = stmts[name].compile(dialect=dialect)
        done[name] = (text.string, tuple(text.positiontup or ()) if positional else None)
    return done
