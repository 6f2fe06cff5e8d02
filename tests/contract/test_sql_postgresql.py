"""SQLStore on PostgreSQL (psycopg 3) passes the store contract."""

from __future__ import annotations

import pytest

from pyramid_sessionstore.stores.sql import SQLStore
from pyramid_sessionstore.testing import ExpiryContract
from pyramid_sessionstore.testing import PeekContract
from pyramid_sessionstore.testing import ScanContract
from pyramid_sessionstore.testing import StoreContract
from pyramid_sessionstore.testing import UnavailableContract
from sqlstores import Factories
from sqlstores import closed_url
from sqlstores import server_url
from sqlstores import tables

pytestmark = pytest.mark.sql


class TestSQLStorePostgreSQL(
    StoreContract, ExpiryContract, ScanContract, PeekContract, UnavailableContract
):
    capabilities = frozenset({"expiry", "scan", "peek"})
    peek_early = 30.0  # ttl 60 is kept 60 + 30; peek subtracts refresh_interval (60)

    @pytest.fixture
    def store_factory(self) -> Factories:
        yield from tables(server_url("postgresql"))

    @pytest.fixture
    def unavailable_store(self) -> SQLStore:
        return SQLStore(url=closed_url("postgresql"))
