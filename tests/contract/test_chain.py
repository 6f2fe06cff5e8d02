"""ChainStore passes the store contract: a memory cache before memory, SQLite, files; migrating."""

from __future__ import annotations

from pathlib import Path

import pytest

from pyramid_sessionstore.stores import ChainStore
from pyramid_sessionstore.stores import FileStore
from pyramid_sessionstore.stores import MemoryStore
from pyramid_sessionstore.stores import SQLiteStore
from pyramid_sessionstore.testing import ExpiryContract
from pyramid_sessionstore.testing import ScanContract
from pyramid_sessionstore.testing import StoreContract


class TestChainStore(StoreContract, ExpiryContract, ScanContract):
    capabilities = frozenset({"expiry", "scan"})
    chains = {  # namespace directory -> chain
        "memory": lambda p: ChainStore(stores=[MemoryStore(max_entries=50), MemoryStore()]),
        "sqlite": lambda p: ChainStore(stores=[MemoryStore(), SQLiteStore(path=p / "s.db")]),
        "file-from-sqlite": lambda p: ChainStore(
            stores=[MemoryStore(), FileStore(path=p / "f")], migrate_from=SQLiteStore(path=p / "o")
        ),
    }

    @pytest.fixture(params=list(chains))
    def store_factory(self, request: pytest.FixtureRequest, tmp_path: Path) -> object:
        return lambda namespace: self.chains[request.param](tmp_path / namespace)
