"""SQLStore on SQLite (a file in tmp_path) passes the store contract."""

from __future__ import annotations

from pathlib import Path

import pytest

from pyramid_sessionstore.stores.sql import SQLStore
from pyramid_sessionstore.testing import ExpiryContract
from pyramid_sessionstore.testing import PeekContract
from pyramid_sessionstore.testing import ScanContract
from pyramid_sessionstore.testing import StoreContract
from pyramid_sessionstore.testing import UnavailableContract
from sqlstores import Factories
from sqlstores import tables

pytestmark = pytest.mark.sql


class TestSQLStoreSQLite(
    StoreContract, ExpiryContract, ScanContract, PeekContract, UnavailableContract
):
    capabilities = frozenset({"expiry", "scan", "peek"})
    peek_early = 30.0  # ttl 60 is kept 60 + 30; peek subtracts refresh_interval (60)

    @pytest.fixture
    def store_factory(self, tmp_path: Path) -> Factories:
        yield from tables(f"sqlite:///{tmp_path / 'sessions.sqlite'}")

    @pytest.fixture
    def unavailable_store(self, tmp_path: Path) -> SQLStore:
        return SQLStore(url=f"sqlite:///{tmp_path / 'no-such-dir' / 'sessions.sqlite'}")
