"""SQLiteStore passes the store contract; a namespace is a table."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from pyramid_sessionstore.stores import SQLiteStore
from pyramid_sessionstore.testing import ExpiryContract
from pyramid_sessionstore.testing import ScanContract
from pyramid_sessionstore.testing import StoreContract
from pyramid_sessionstore.testing import UnavailableContract


class TestSQLiteStore(StoreContract, ExpiryContract, ScanContract, UnavailableContract):
    capabilities = frozenset({"expiry", "scan"})

    @pytest.fixture
    def store_factory(self, tmp_path: Path) -> Callable[[str], SQLiteStore]:
        return lambda namespace: SQLiteStore(path=tmp_path / "sessions.sqlite", table=namespace)

    @pytest.fixture
    def unavailable_store(self, tmp_path: Path) -> SQLiteStore:
        store = SQLiteStore(path=tmp_path / "gone.sqlite")
        store.close()
        (tmp_path / "gone.sqlite").unlink()
        (tmp_path / "gone.sqlite").mkdir()  # a directory where the database was
        return store
