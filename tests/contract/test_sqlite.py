"""SQLiteStore passes the store contract on a fake clock; a namespace is a table."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest

from clocks import FakeClock
from pyramid_sessionstore.stores import SQLiteStore
from pyramid_sessionstore.testing import ExpiryContract
from pyramid_sessionstore.testing import ScanContract
from pyramid_sessionstore.testing import StoreContract
from pyramid_sessionstore.testing import UnavailableContract
from pyramid_sessionstore.testing.contract import RawContentsContract


class TestSQLiteStore(
    StoreContract, ExpiryContract, ScanContract, UnavailableContract, RawContentsContract
):
    capabilities = frozenset({"expiry", "scan"})

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
