"""SQLiteStore: settings, schema, malformed rows, locking, several processes."""

from __future__ import annotations

import contextlib
import logging
import random
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from clocks import FakeClock
from embedded_workers import Zygote
from embedded_workers import is_intact
from embedded_workers import payload
from pyramid_sessionstore.exceptions import ConfigurationError
from pyramid_sessionstore.exceptions import ConflictError
from pyramid_sessionstore.exceptions import StoreUnavailableError
from pyramid_sessionstore.stores import SQLiteStore
from pyramid_sessionstore.stores import Store
from pyramid_sessionstore.stores.registry import build_store
from pyramid_sessionstore.testing import new_key

WORKERS = str(Path(__file__).parent / "embedded_workers.py")


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "sessions.sqlite"


@pytest.fixture
def store(db: Path, clock: FakeClock) -> Iterator[SQLiteStore]:
    store = SQLiteStore(path=db, clock=clock)
    yield store
    store.close()


@contextlib.contextmanager
def raw(db: Path) -> Iterator[sqlite3.Connection]:
    """Open the database behind the store's back (autocommit)."""
    conn = sqlite3.connect(db, isolation_level=None)
    try:
        yield conn
    finally:
        conn.close()


# -- settings -------------------------------------------------------------------


def test_settings_round_trip_every_option(tmp_path: Path) -> None:
    settings = {
        "session.sqlite.path": str(tmp_path / "var" / "s.sqlite"),
        "session.sqlite.table": "web_sessions",
        "session.sqlite.busy_timeout": "2.5",
        "session.sqlite.synchronous": "FULL",
        "session.sqlite.refresh_interval": "30",
    }
    store = build_store("sqlite", settings)
    assert isinstance(store, SQLiteStore)
    assert set(SQLiteStore.OPTIONS) == {k.rsplit(".", 1)[1] for k in settings}
    assert (store.path, store.table, store.busy_timeout, store.synchronous) == (
        str(tmp_path / "var" / "s.sqlite"),
        "web_sessions",
        2.5,
        "full",
    )
    assert store.refresh_interval == 30
    conn = store._conn()
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    assert conn.execute("PRAGMA busy_timeout").fetchone()[0] == 2500
    key = new_key()
    store.save(key, b"x", 60, None)
    with raw(tmp_path / "var" / "s.sqlite") as conn:
        assert conn.execute("SELECT key FROM web_sessions").fetchall() == [(key,)]
    store.close()


@pytest.mark.parametrize(
    ("option", "value"), [("busy_timeout", "soon"), ("synchronous", "sometimes")]
)
def test_bad_setting_value_names_the_setting(tmp_path: Path, option: str, value: str) -> None:
    settings = {"session.sqlite.path": str(tmp_path / "s"), f"session.sqlite.{option}": value}
    with pytest.raises(ConfigurationError) as info:
        build_store("sqlite", settings)
    assert info.value.setting == f"session.sqlite.{option}"


@pytest.mark.parametrize("table", ["web-sessions", 'x"; DROP TABLE y; --', "", "1st"])
def test_table_that_is_not_an_identifier_is_a_configuration_error(
    tmp_path: Path, table: str
) -> None:
    settings = {"session.sqlite.path": str(tmp_path / "s"), "session.sqlite.table": table}
    with pytest.raises(ConfigurationError, match="table"):
        build_store("sqlite", settings)


def test_missing_path_setting_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="path"):
        build_store("sqlite", {})


@pytest.mark.parametrize("path", [":memory:", ""])
def test_a_path_that_is_not_a_file_is_refused(path: str) -> None:
    with pytest.raises(ConfigurationError, match="session.sqlite.path"):
        build_store("sqlite", {"session.sqlite.path": path})


def test_directory_of_the_database_is_created(tmp_path: Path) -> None:
    SQLiteStore(path=tmp_path / "a" / "b" / "s.sqlite").close()
    assert (tmp_path / "a" / "b" / "s.sqlite").is_file()


def test_unwritable_path_raises_unavailable_naming_it(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a directory")
    path = tmp_path / "file" / "s.sqlite"
    with pytest.raises(StoreUnavailableError, match=str(path)) as info:
        SQLiteStore(path=path)
    assert info.value.__cause__ is not None


def test_file_that_is_not_a_database_raises_unavailable(tmp_path: Path) -> None:
    (tmp_path / "s.sqlite").write_bytes(b"not a database, but long enough to be read " * 100)
    with pytest.raises(StoreUnavailableError, match="s.sqlite"):
        SQLiteStore(path=tmp_path / "s.sqlite")


def test_store_satisfies_protocol(store: SQLiteStore) -> None:
    typed: Store = store
    assert isinstance(typed, Store)
    assert repr(store) == f"SQLiteStore(path={store.path!r}, table='sessions')"


# -- rows and expiry ----------------------------------------------------------------


def test_load_refreshes_expiry_in_the_row(store: SQLiteStore, db: Path, clock: FakeClock) -> None:
    key = new_key()
    version = store.save(key, b"data", 10, None)
    assert _expiry(db, key) == clock.now + 10 + 5  # the ttl, then the slack: half the ttl here
    clock.now += 8
    assert store.load(key, 10) == (b"data", version)
    assert _expiry(db, key) == clock.now + 15
    clock.now += 8
    assert store.load(key, None) == (b"data", version)
    assert _expiry(db, key) is None
    clock.now += 10**9
    assert store.load(key, 10) == (b"data", version)


def _expiry(db: Path, key: str) -> float | None:
    with raw(db) as conn:
        row = conn.execute("SELECT expires_at FROM sessions WHERE key = ?", (key,)).fetchone()
    return None if row is None else row[0]


def test_a_load_writes_only_when_less_than_the_ttl_is_left(db: Path, clock: FakeClock) -> None:
    store = SQLiteStore(path=db, clock=clock, refresh_interval=60)
    key = new_key()
    store.save(key, b"data", 1200, None)
    saved = _expiry(db, key)
    assert saved == clock.now + 1260
    changes = store._conn().total_changes
    clock.now += 60  # exactly the ttl left: no write
    assert store.load(key, 1200) is not None
    assert (_expiry(db, key), store._conn().total_changes) == (saved, changes)
    clock.now += 1  # less than the ttl left: written ttl and slack ahead again
    assert store.load(key, 1200) is not None
    assert _expiry(db, key) == clock.now + 1260
    assert store.load(key, 10) is not None  # a shorter ttl: more than ttl + slack left
    assert _expiry(db, key) == clock.now + 15  # the slack is at most half the ttl
    assert store.load(key, None) is not None and _expiry(db, key) is None
    store.close()


@pytest.mark.parametrize("refresh_interval", [0, 3, 60])
def test_an_active_session_never_ends_early_and_ends_at_most_the_slack_late(
    db: Path, clock: FakeClock, refresh_interval: int
) -> None:
    """Issue 10, item 21: every read restarts the idle count; the slack may only add to it."""
    store = SQLiteStore(path=db, clock=clock, refresh_interval=refresh_interval)
    ttl, slack = 10, min(refresh_interval, 5)
    key = new_key()
    store.save(key, b"data", ttl, None)
    clock.now += 4
    assert store.load(key, ttl) is not None
    clock.now += 7  # idle 7 s < ttl: still there (it was gone at 6 s with the old slack)
    assert store.load(key, ttl) is not None
    for gap in [9.99, 0.5, 6, 9.5, 1, 9.99, 3]:  # never idle for a full ttl: never ends
        clock.now += gap
        assert store.load(key, ttl) is not None, gap
    last_read = clock.now
    assert last_read + ttl <= _expiry(db, key) <= last_read + ttl + slack  # type: ignore[operator]
    assert store.count() == 1
    clock.now = last_read + ttl + slack
    assert store.load(key, ttl) is None
    assert store.delete_expired() == 1
    store.close()


def test_expired_row_is_a_miss_until_collected(
    store: SQLiteStore, db: Path, clock: FakeClock
) -> None:
    key = new_key()
    version = store.save(key, b"data", 10, None)
    clock.now += 10 + 5  # the ttl and the slack
    assert store.load(key, 10) is None
    assert store.touch(key, 10) is False
    with pytest.raises(ConflictError):
        store.save(key, b"back", 10, version)
    with raw(db) as conn:
        assert conn.execute("SELECT count(*) FROM sessions").fetchone() == (1,)
    new_version = store.save(key, b"new", 10, None)  # create over the expired row
    assert store.load(key, 10) == (b"new", new_version)


def test_versions_are_never_reused(store: SQLiteStore) -> None:
    key, seen = new_key(), set()
    for _ in range(5):
        version = store.save(key, b"a", 60, None)
        for _ in range(3):
            seen.add(version)
            version = store.save(key, b"b", 60, version)
        seen.add(version)
        store.delete(key)
    assert len(seen) == 20


def test_version_that_is_not_ours_is_a_conflict(store: SQLiteStore) -> None:
    key = new_key()
    store.save(key, b"a", 60, None)
    for bogus in ("", "abc", "-1", "1.5", "\u00b2", "\u0663", "9" * 5000, str(2**63), "\ud800"):
        with pytest.raises(ConflictError):
            store.save(key, b"b", 60, bogus)


#: Rows something else wrote into the table: (data, version, expires_at), as SQL literals,
#: since SQLite keeps any type in any column (issue 10, item 6).
MANGLED = {
    "text-data": ("'text, not bytes'", "7", "NULL"),
    "integer-data": ("12345", "7", "NULL"),
    "text-version": ("x'00'", "'not a number'", "NULL"),
    "real-version": ("x'00'", "1.5", "NULL"),
    "blob-version": ("x'00'", "x'07'", "NULL"),
    "text-expiry": ("x'00'", "7", "'tomorrow'"),
    "blob-expiry": ("x'00'", "7", "x'ffff'"),
    "empty-text-expiry": ("x'00'", "7", "''"),
}


def insert_mangled(db: Path, key: str, name: str) -> None:
    with raw(db) as conn:
        conn.execute(f"INSERT INTO sessions VALUES (?, {', '.join(MANGLED[name])}, 0)", (key,))


@pytest.fixture(params=list(MANGLED))
def mangled(request: pytest.FixtureRequest, db: Path, store: SQLiteStore) -> str:
    """Return the key of a mangled row (the store made the table first)."""
    key = new_key()
    insert_mangled(db, key, request.param)
    return key


def rows(db: Path) -> int:
    with raw(db) as conn:
        return int(conn.execute("SELECT count(*) FROM sessions").fetchone()[0])


def test_mangled_row_is_logged_deleted_and_a_miss(
    store: SQLiteStore, db: Path, caplog: pytest.LogCaptureFixture, mangled: str
) -> None:
    with caplog.at_level(logging.WARNING, logger="pyramid_sessionstore.security"):
        assert store.load(mangled, 60) is None
        assert store.load(mangled, None) is None
    assert [r.name for r in caplog.records] == ["pyramid_sessionstore.security"]
    assert rows(db) == 0


def test_mangled_row_is_neither_touched_nor_updated_but_a_create_replaces_it(
    store: SQLiteStore, db: Path, mangled: str
) -> None:
    assert store.touch(mangled, 60) is False
    assert store.touch(mangled, None) is False
    for version in ("7", "0", "8"):
        with pytest.raises(ConflictError):
            store.save(mangled, b"mine", 60, version)
    version = store.save(mangled, b"fresh", 60, None)
    assert store.load(mangled, 60) == (b"fresh", version)
    assert rows(db) == 1


def test_mangled_row_is_not_counted_and_delete_removes_it(
    store: SQLiteStore, db: Path, mangled: str
) -> None:
    live = new_key()
    store.save(live, b"x", 60, None)
    assert list(store.keys()) == [live] and store.count() == 1
    store.delete(mangled)
    assert rows(db) == 1


def test_delete_expired_removes_rows_whose_expiry_is_not_a_number(
    store: SQLiteStore, db: Path
) -> None:
    live, forever = new_key(), new_key()
    store.save(live, b"x", 60, None)
    store.save(forever, b"x", None, None)
    for name in ("text-expiry", "blob-expiry", "empty-text-expiry"):
        insert_mangled(db, new_key(), name)
    assert store.delete_expired() == 3
    assert rows(db) == 2 and set(store.keys()) == {live, forever}


def test_keys_that_are_not_text_are_skipped_by_keys_and_count(
    store: SQLiteStore, db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(store, "BATCH", 2)
    saved = {new_key() for _ in range(3)}
    for key in saved:
        store.save(key, b"x", 60, None)
    with raw(db) as conn:
        for blob in (b"\xff", b"\x00" * 40):
            conn.execute("INSERT INTO sessions VALUES (?, x'00', 7, NULL, 0)", (blob,))
    assert set(store.keys()) == saved and store.count() == 3


def test_delete_expired_works_in_batches(
    store: SQLiteStore, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(store, "BATCH", 3)
    dead = [new_key() for _ in range(10)]
    live = {new_key() for _ in range(7)}
    for key in dead:
        store.save(key, b"x", 10, None)
    for key in live:
        store.save(key, b"x", 600, None)
    clock.now += 10 + 5  # the ttl and the slack
    assert set(store.keys()) == live  # paged by 3
    assert store.count() == 7
    assert store.delete_expired() == 10
    assert store.delete_expired() == 0
    assert store.count() == 7


def test_namespaces_are_tables_of_one_file(db: Path) -> None:
    one, two = SQLiteStore(path=db, table="one"), SQLiteStore(path=db, table="two")
    key = new_key()
    one.save(key, b"1", 60, None)
    assert two.load(key, 60) is None
    with raw(db) as conn:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"one", "two"} <= tables
    one.close()
    two.close()


# -- connections and locking ---------------------------------------------------------


def test_each_thread_has_its_own_connection(store: SQLiteStore) -> None:
    seen: list[object] = []
    thread = threading.Thread(target=lambda: seen.append(store._conn()))
    thread.start()
    thread.join()
    assert seen[0] is not store._conn()


def test_close_then_use_opens_new_connections(store: SQLiteStore) -> None:
    key = new_key()
    store.save(key, b"x", 60, None)
    before = store._conn()
    store.close()
    store.close()
    with pytest.raises(sqlite3.ProgrammingError):
        before.execute("SELECT 1")
    assert store.load(key, 60) is not None
    assert store._conn() is not before


def test_connection_inherited_through_fork_is_neither_used_nor_closed(
    store: SQLiteStore,
) -> None:
    inherited = store._conn()
    inherited.pid = -1  # as if this process were the child of the one that opened it
    fresh = store._conn()
    assert fresh is not inherited
    store.close()
    assert inherited.execute("SELECT 1").fetchone() == (1,)  # left open for its owner
    inherited.close()


def test_write_waits_for_a_lock_held_briefly(db: Path) -> None:
    store = SQLiteStore(path=db, busy_timeout=10)
    blocker = sqlite3.connect(db, isolation_level=None, check_same_thread=False)
    blocker.execute("BEGIN IMMEDIATE")
    timer = threading.Timer(0.3, blocker.rollback)
    timer.start()
    try:
        assert store.save(new_key(), b"x", 60, None)  # waited for the rollback
    finally:
        timer.join()
        blocker.close()
        store.close()


def test_write_past_busy_timeout_raises_unavailable(db: Path) -> None:
    store = SQLiteStore(path=db, busy_timeout=0.2)
    key = new_key()
    version = store.save(key, b"x", 60, None)
    blocker = sqlite3.connect(db, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(StoreUnavailableError, match="locked") as info:
            store.save(new_key(), b"x", 60, None)
        assert isinstance(info.value.__cause__, sqlite3.OperationalError)
        assert store.load(key, 60) == (b"x", version)  # a read with no refresh due: no wait
        with pytest.raises(StoreUnavailableError):
            store.load(key, 6000)  # a refresh due is a write: it waits like one
    finally:
        blocker.rollback()
        blocker.close()
        store.close()


def test_readers_do_not_block_writes_with_wal(store: SQLiteStore, db: Path) -> None:
    key = new_key()
    store.save(key, b"x", 60, None)
    reader = sqlite3.connect(db, isolation_level=None)
    reader.execute("BEGIN")
    reader.execute("SELECT * FROM sessions").fetchall()  # holds a read snapshot
    try:
        store.save(new_key(), b"y", 60, None)
        assert Path(f"{db}-wal").exists()
    finally:
        reader.rollback()
        reader.close()


# -- several processes ----------------------------------------------------------------


@pytest.mark.slow
def test_compare_and_set_increments_across_processes_are_exact(db: Path) -> None:
    store, key = SQLiteStore(path=db), new_key()
    store.save(key, b"0", 600, None)
    argv = [sys.executable, WORKERS, "sqlite", str(db), "increment", key, "50"]
    workers = [subprocess.Popen(argv) for _ in range(4)]
    assert [w.wait(timeout=120) for w in workers] == [0, 0, 0, 0]
    record = store.load(key, 600)
    assert record is not None and record.data == b"200"
    store.close()


@pytest.mark.slow
def test_writer_killed_mid_write_leaves_every_row_intact(db: Path) -> None:
    store = SQLiteStore(path=db)
    keys = [new_key() for _ in range(4)]
    for n, key in enumerate(keys):
        store.save(key, payload(n, 100), 600, None)
    zygote, rng = Zygote("sqlite", str(db), keys), random.Random(2)
    try:
        for _ in range(15):
            zygote.kill_writer_after(rng.uniform(0.002, 0.05))
            for key in keys:
                record = store.load(key, 600)
                assert record is not None and is_intact(record.data)
    finally:
        zygote.close()
        store.close()
    with raw(db) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)


def _open_at(path: str, start: float) -> None:
    """In a forked child: open a store on *path* at wall-clock *start*; exit 0 if it worked."""
    import os
    import time

    status = 1
    try:
        while time.time() < start:
            pass
        SQLiteStore(path=path).save("k" * 60 + str(os.getpid()), b"x", 60, None)
        status = 0
    finally:
        os._exit(status)


def test_processes_opening_a_new_file_together_all_start(tmp_path: Path) -> None:
    """Workers started without --preload on a new file: each switches it to WAL.

    SQLite answers that switch with "database is locked" at once, without its
    busy handler, while another connection holds the file; before, about one
    process in five failed at start-up (found by CI on the two-process test).
    """
    import os
    import time

    failed = 0
    for round_no in range(6):
        path, start = str(tmp_path / f"s{round_no}.sqlite"), time.time() + 0.3
        pids = []
        for _ in range(4):
            pid = os.fork()
            if pid == 0:  # the child: never returns into pytest
                _open_at(path, start)
            pids.append(pid)
        failed += sum(os.waitpid(pid, 0)[1] != 0 for pid in pids)
    assert failed == 0
