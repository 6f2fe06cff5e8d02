"""MemoryStore passes the store contract."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from pyramid_sessionstore.stores import MemoryStore
from pyramid_sessionstore.stores import Store
from pyramid_sessionstore.testing import ExpiryContract
from pyramid_sessionstore.testing import ScanContract
from pyramid_sessionstore.testing import StoreContract


class TestMemoryStore(StoreContract, ExpiryContract, ScanContract):
    capabilities = frozenset({"expiry", "scan"})

    @pytest.fixture
    def store_factory(self) -> Callable[[str], Store]:
        return lambda namespace: MemoryStore()
