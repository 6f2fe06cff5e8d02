"""SQLStore's own behaviour: settings, errors, statements per operation, expiry in SQL."""

from __future__ import annotations

import logging
import re
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from pyramid_sessionstore.exceptions import ConfigurationError
from pyramid_sessionstore.exceptions import ConflictError
from pyramid_sessionstore.exceptions import MissingDependencyError
from pyramid_sessionstore.exceptions import StoreUnavailableError
from pyramid_sessionstore.stores import sql as sql_module
from pyramid_sessionstore.stores.registry import build_store
from pyramid_sessionstore.stores.sql import SQLStore
from pyramid_sessionstore.stores.sql._statements import EPOCH
from pyramid_sessionstore.testing import new_key
from sqlstores import closed_url
from sqlstores import server_url
from sqlstores import tables

pytestmark = pytest.mark.sql

KINDS = ["postgresql", "mysql", "sqlite"]
DOCS = Path(__file__).parent.parent / "docs" / "stores" / "sql.md"


@pytest.fixture(params=KINDS)
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def url(kind: str, tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'sessions.sqlite'}" if kind == "sqlite" else server_url(kind)


@pytest.fixture
def make(url: str) -> Iterator[Any]:
    """Build stores on *url* with a fresh table each; options as keywords."""
    factories: list[Iterator[Any]] = []

    def build(**options: Any) -> SQLStore:
        factories.append(tables(url, **options))
        return next(factories[-1])(f"t{uuid.uuid4().hex[:12]}")  # type: ignore[no-any-return]

    yield build
    for factory in factories:
        next(factory, None)  # drops its tables


def stored_expiry(store: SQLStore, key: str) -> float | None:
    """Return the raw expires_at of *key*."""
    column = store.table.c.expires_at
    with store.engine.connect() as conn:
        value = conn.execute(sa.select(column).where(store.table.c.key == key)).scalar()
    return None if value is None else float(value)


def db_now(store: SQLStore) -> float:
    """Return the database's clock as a Unix time, the way the store reads it."""
    now = sa.literal_column(EPOCH[store.engine.dialect.name])
    with store.engine.connect() as conn:
        return float(conn.execute(sa.select(now)).scalar_one())


# -- settings ------------------------------------------------------------------


def test_every_setting_round_trips_through_build_store(tmp_path: Path) -> None:
    settings = {
        "session.sql.url": f"sqlite:///{tmp_path / 's.sqlite'}",
        "session.sql.table": "app_sessions",
        "session.sql.create_table": "false",
        "session.sql.pool_size": "3",
        "session.sql.max_overflow": "4",
        "session.sql.pool_recycle": "300",
        "session.sql.pool_pre_ping": "true",
        "session.sql.echo": "false",
        "session.sql.refresh_interval": "30",
        "session.sql.batch_size": "50",
    }
    assert {k.rsplit(".", 1)[1] for k in settings} == set(SQLStore.OPTIONS)
    store = build_store("sql", settings)
    assert isinstance(store, SQLStore)
    pool: Any = store.engine.pool
    assert (pool.size(), pool._max_overflow, pool._recycle, pool._pre_ping) == (3, 4, 300, True)
    assert store.engine.echo is False
    assert (store.refresh_interval, store.batch_size) == (30, 50)
    assert store.table.name == "app_sessions" and store._ready  # create_table=false
    assert repr(store) == f"SQLStore(url='sqlite:///{tmp_path / 's.sqlite'}', table='app_sessions')"
    store.close()


@pytest.mark.parametrize(
    ("setting", "value", "fragment"),
    [
        ("pool_size", "many", "session.sql.pool_size"),
        ("max_overflow", "-1", "session.sql.max_overflow"),
        ("pool_recycle", "soon", "session.sql.pool_recycle"),
        ("create_table", "perhaps", "session.sql.create_table"),
        ("refresh_interval", "-5", "session.sql.refresh_interval"),
        ("batch_size", "lots", "session.sql.batch_size"),
        ("batch_size", "0", "batch_size"),
        ("table", "sessions; drop table x", "table"),
        ("urll", "sqlite:///x", "did you mean"),
    ],
)
def test_bad_setting_names_it(tmp_path: Path, setting: str, value: str, fragment: str) -> None:
    settings = {
        "session.sql.url": f"sqlite:///{tmp_path / 's.sqlite'}",
        f"session.sql.{setting}": value,
    }
    with pytest.raises(ConfigurationError, match=re.escape(fragment)):
        build_store("sql", settings)


@pytest.mark.parametrize("url", ["sqlite://", "sqlite:///:memory:", "nosuchdb://host/db"])
def test_unusable_url_is_a_configuration_error(url: str) -> None:
    with pytest.raises(ConfigurationError, match="url"):
        build_store("sql", {"session.sql.url": url})


def test_url_is_required_and_excludes_engine(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="url"):
        build_store("sql", {})
    engine = sa.create_engine(f"sqlite:///{tmp_path / 's.sqlite'}")
    with pytest.raises(ValueError, match="url"):
        SQLStore(url="sqlite:///x.sqlite", engine=engine)
    engine.dispose()


# -- drivers -------------------------------------------------------------------


def test_missing_sqlalchemy_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sql_module, "sa", None)
    assert "url" in SQLStore.OPTIONS  # still readable
    with pytest.raises(MissingDependencyError, match=r"sqlalchemy.*pyramid_sessionstore\[sql\]"):
        SQLStore(url="sqlite:///x.sqlite")


def test_missing_dbapi_driver_names_its_package(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(MissingDependencyError, match="pg8000"):
        SQLStore(url="postgresql+pg8000://app:s3cret@127.0.0.1/db")
    monkeypatch.setitem(sys.modules, "psycopg", None)  # as if not installed
    with pytest.raises(MissingDependencyError, match=r"psycopg.*\[postgresql\]") as info:
        build_store("sql", {"session.sql.url": "postgresql+psycopg://app:s3cret@127.0.0.1/db"})
    assert "s3cret" not in str(info.value)


# -- errors --------------------------------------------------------------------


@pytest.mark.parametrize("server", ["postgresql", "mysql"])
def test_unreachable_server_error_masks_the_password(server: str) -> None:
    store = SQLStore(url=closed_url(server))  # connects at first use, not here
    assert "secret" not in repr(store) and "u:***@" in repr(store)
    with pytest.raises(StoreUnavailableError) as info:
        store.load(new_key(), 60)
    assert "secret" not in str(info.value) and "u:***@127.0.0.1" in str(info.value)
    assert isinstance(info.value.__cause__, sa.exc.DBAPIError)
    assert info.value.store is store
    store.close()


def test_missing_table_without_create_table_is_unavailable(make: Any) -> None:
    store = make(create_table=False)
    with pytest.raises(StoreUnavailableError, match=store.table.name):
        store.load(new_key(), 60)


def test_unreadable_row_is_deleted_with_a_warning(
    make: Any, kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    store, key = make(), new_key()
    store.count()  # creates the table
    # SQLite takes text in a BLOB column; every engine takes an empty version.
    data = "text, not bytes" if kind == "sqlite" else b"bytes"
    version = "v1" if kind == "sqlite" else ""
    row = {"key": key, "data": data, "version": version, "expires_at": None, "created": 0.0}
    with store.engine.connect() as conn:
        conn.execute(
            sa.text(f"INSERT INTO {store.table.name} VALUES ({', '.join(':' + c for c in row)})"),
            row,
        )
    with caplog.at_level(logging.WARNING, logger="pyramid_sessionstore.security"):
        assert store.load(key, 60) is None
    assert "unreadable record" in caplog.text
    assert store.count() == 0


# -- statements per operation ----------------------------------------------------


def test_each_operation_is_one_statement(make: Any, kind: str) -> None:
    store, key = make(), new_key()
    store.count()  # creates the table: not counted
    statements: list[str] = []
    sa.event.listen(store.engine, "before_cursor_execute", lambda *a: statements.append(a[2]))

    def count(call: Any) -> int:
        statements.clear()
        call()
        return len(statements)

    versions = [store.save(key, b"a", 600, None)]
    assert count(lambda: store.save(new_key(), b"a", 600, None)) == 1  # create
    assert count(lambda: store.load(key, 600)) == 1  # no refresh due
    assert count(lambda: versions.append(store.save(key, b"b", 600, versions[-1]))) == 1
    assert store.load(key, 600) == (b"b", versions[-1])  # the update happened
    assert count(lambda: store.touch(key, 600)) == 1
    due = count(lambda: store.load(key, 1200))  # refresh due
    assert due == (1 if kind == "postgresql" else 2)
    assert count(lambda: store.delete(key)) == 1


# -- expiry --------------------------------------------------------------------


def test_load_refreshes_expiry_only_when_off_by_more_than_the_interval(make: Any) -> None:
    store, key = make(refresh_interval=60), new_key()
    store.save(key, b"a", 600, None)
    saved = stored_expiry(store, key)
    assert saved is not None and abs(saved - (db_now(store) + 600)) < 5
    store.load(key, 600)
    assert stored_expiry(store, key) == saved  # a read, not a write
    store.load(key, 1200)
    assert abs(stored_expiry(store, key) - (db_now(store) + 1200)) < 5  # type: ignore[operator]
    store.load(key, 100)  # shorter by more than the interval: applied too
    assert abs(stored_expiry(store, key) - (db_now(store) + 100)) < 5  # type: ignore[operator]
    store.load(key, None)
    assert stored_expiry(store, key) is None
    store.load(key, 600)
    assert abs(stored_expiry(store, key) - (db_now(store) + 600)) < 5  # type: ignore[operator]


def test_refresh_interval_zero_refreshes_every_load(make: Any) -> None:
    store, key = make(refresh_interval=0), new_key()
    store.save(key, b"a", 600, None)
    before = stored_expiry(store, key)
    time.sleep(0.05)
    store.load(key, 600)
    assert stored_expiry(store, key) > before  # type: ignore[operator]


@pytest.mark.parametrize("server", ["postgresql", "mysql"])
def test_session_time_zone_does_not_shift_expiry(server: str) -> None:
    zone: dict[str, Any] = {
        "postgresql": {"options": "-c timezone=Asia/Kathmandu"},  # UTC+05:45
        "mysql": {"init_command": "SET time_zone = '-11:00'"},
    }
    engine = sa.create_engine(server_url(server), connect_args=zone[server])
    store = SQLStore(engine=engine, table=f"t{uuid.uuid4().hex[:12]}")
    try:
        key = new_key()
        store.save(key, b"a", 100, None)
        assert abs(stored_expiry(store, key) - (time.time() + 100)) < 5  # type: ignore[operator]
        assert store.load(key, 100) is not None
        short = new_key()
        store.save(short, b"a", 1, None)
        time.sleep(1.1)
        assert store.load(short, 1) is None
    finally:
        store.table.drop(store.engine, checkfirst=True)
        engine.dispose()


def test_create_takes_over_an_expired_row(make: Any) -> None:
    store, key = make(), new_key()
    old = store.save(key, b"old", 1, None)
    time.sleep(1.1)
    assert store.load(key, 1) is None  # expired, not yet collected
    new = store.save(key, b"new", 60, None)
    assert store.load(key, 60) == (b"new", new) and new != old
    with pytest.raises(ConflictError):
        store.save(key, b"again", 60, None)


def test_delete_expired_and_keys_work_in_batches(make: Any) -> None:
    store = make(batch_size=2)
    dead = [new_key() for _ in range(5)]
    live = {new_key() for _ in range(3)}
    for key in dead:
        store.save(key, b"x", 1, None)
    for key in live:
        store.save(key, b"x", 600, None)
    time.sleep(1.1)
    assert set(store.keys()) == live and store.count() == 3
    assert store.delete_expired() == 5
    assert store.delete_expired() == 0


# -- schema ----------------------------------------------------------------------


@pytest.mark.parametrize(("server", "block"), [("postgresql", 0), ("mysql", 1)])
def test_documented_ddl_works_with_create_table_false(server: str, block: int) -> None:
    ddl = re.findall(r"```sql\n(.*?)```", DOCS.read_text(), re.S)[block]
    name = f"t{uuid.uuid4().hex[:12]}"
    url = server_url(server)
    engine = sa.create_engine(url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        for statement in filter(str.strip, ddl.replace("pyramid_sessions", name).split(";")):
            conn.execute(sa.text(statement))
    store = SQLStore(engine=engine, table=name, create_table=False)
    try:
        key = new_key()
        version = store.save(key, b"\x00\xff" * 40000, 60, None)  # > 64 KiB: LONGBLOB
        assert store.load(key, 60) == (b"\x00\xff" * 40000, version)
        assert store.touch(key, 60) and store.count() == 1 and store.delete_expired() == 0
        store.close()  # not ours to dispose
        assert store.load(key, 60) is not None
    finally:
        store.table.drop(engine, checkfirst=True)
        engine.dispose()


def test_schema_qualified_table_on_postgresql() -> None:
    factory = tables(server_url("postgresql"))
    store = next(factory)(f"public.t{uuid.uuid4().hex[:12]}")
    try:
        key = new_key()
        store.save(key, b"x", 60, None)
        assert store.table.schema == "public" and store.count() == 1
    finally:
        next(factory, None)


def test_given_engine_is_used_in_autocommit_and_not_disposed(tmp_path: Path) -> None:
    engine = sa.create_engine(f"sqlite:///{tmp_path / 's.sqlite'}")
    pool = engine.pool
    store = SQLStore(engine=engine, table="sessions")
    key = new_key()
    version = store.save(key, b"x", 60, None)
    assert store.load(key, 60) == (b"x", version)
    assert "sqlite:///" in repr(store)
    store.close()
    assert engine.pool is pool
    engine.dispose()
