"""SQLiteStore passes the store contract on a fake clock; a namespace is a table."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from contextlib import closing
from pathlib import Path
from unittest.mock import ANY

import pytest

from clocks import FakeClock
from pyramid_sessionstore.stores import SQLiteStore
from pyramid_sessionstore.testing import ExpiryContract
from pyramid_sessionstore.testing import PeekContract
from pyramid_sessionstore.testing import ScanContract
from pyramid_sessionstore.testing import StoreContract
from pyramid_sessionstore.testing import UnavailableContract
from pyramid_sessionstore.testing.contract import RawContentsContract


class TestSQLiteStore(
    StoreContract,
    ExpiryContract,
    ScanContract,
    PeekContract,
    UnavailableContract,
    RawContentsContract,
):
    capabilities = frozenset({"expiry", "scan", "peek"})
    # ttl 60 is stored with a slack of 30 and peek subtracts refresh_interval (60).
    peek_early = 30.0

    @pytest.fixture
    def clock(self) -> FakeClock:
        return FakeClock()

    @pytest.fixture
    def wait(self, clock: FakeClock) -> Callable[[float], None]:
        def advance(seconds: float) -> None:
            clock.now += seconds

        return advance

    @pytest.fixture
    def store_factory(self, tmp_path: Path, clock: FakeClock) -> Callable[[str], SQLiteStore]:
        return lambda ns: SQLiteStore(path=tmp_path / "sessions.sqlite", table=ns, clock=clock)

    @pytest.fixture
    def raw_names(self) -> Callable[[SQLiteStore], set[str]]:
        def names(store: SQLiteStore) -> set[str]:
            with sqlite3.connect(store.path) as conn:
                return {row[0] for row in conn.execute(f'SELECT key FROM "{store.table}"')}

        return names

    @pytest.fixture
    def unavailable_store(self, tmp_path: Path) -> SQLiteStore:
        store = SQLiteStore(path=tmp_path / "gone.sqlite")
        store.close()
        (tmp_path / "gone.sqlite").unlink()
        (tmp_path / "gone.sqlite").mkdir()  # a directory where the database was
        return store

    # SQLiteStore's own: what peek reports of the stored expiry, and that it only reads.

    def test_peek_is_exact_when_the_ttl_is_twice_the_refresh_interval(
        self, store: SQLiteStore, key: Callable[[], str], clock: FakeClock
    ) -> None:
        k = key()
        store.save(k, b"data", 1200, None)  # stored: now + 1200 + 60
        assert store.peek(k) == ((b"data", ANY), clock.now + 1200)
        clock.now += 100  # less than the ttl left: the next load rewrites the expiry
        assert store.load(k, 1200) is not None
        assert store.peek(k) == ((b"data", ANY), clock.now + 1200)

    def test_peek_changes_nothing_and_removes_a_malformed_row(
        self, store: SQLiteStore, key: Callable[[], str], clock: FakeClock
    ) -> None:
        def rows(k: str) -> list[tuple[object, ...]]:
            with closing(sqlite3.connect(store.path)) as conn:
                return conn.execute(f'SELECT * FROM "{store.table}" WHERE key = ?', (k,)).fetchall()

        k, bad = key(), key()
        store.save(k, b"data", 60, None)
        with closing(sqlite3.connect(store.path)) as conn, conn:
            conn.execute(f'INSERT INTO "{store.table}" VALUES (?, ?, 1, NULL, 0)', (bad, "text"))
        before = rows(k)
        clock.now += 50  # a load would rewrite the expiry now
        assert store.peek(k) is not None
        assert store.peek(bad) is None
        assert rows(k) == before
        assert rows(bad) == []
