"""SQLiteStore passes the store contract; a namespace is a table."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from pyramid_sessionstore.stores import SQLiteStore
from pyramid_sessionstore.stores import Store
from pyramid_sessionstore.testing import ExpiryContract
from pyramid_sessionstore.testing import ScanContract
from pyramid_sessionstore.testing import StoreContract
from pyramid_sessionstore.testing import UnavailableContract


class TestSQLiteStore(StoreContract, ExpiryContract, ScanContract, UnavailableContract):
    capabilities = frozenset({"expiry", "scan"})

    @pytest.fixture
    def store_factory(self, tmp_path: Path) -> Callable[[str], Store]:
        return lambda namespace: SQLiteStore(path=tmp_path / "sessions.sqlite", table=namespace)

    @pytest.fixture
    def unavailable_store(self, tmp_path: Path) -> Store:
        store = SQLiteStore(path=tmp_path / "gone" / "sessions.sqlite")
        store.close()
        shutil.rmtree(tmp_path / "gone")
        (tmp_path / "gone").write_text("a file where the directory was")
        return store
