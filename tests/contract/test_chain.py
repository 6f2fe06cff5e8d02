"""ChainStore passes the store contract on a fake clock: a memory cache before memory, SQLite,
files; migrating."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from clocks import FakeClock
from pyramid_sessionstore.stores import ChainStore
from pyramid_sessionstore.stores import FileStore
from pyramid_sessionstore.stores import MemoryStore
from pyramid_sessionstore.stores import SQLiteStore
from pyramid_sessionstore.testing import ExpiryContract
from pyramid_sessionstore.testing import ScanContract
from pyramid_sessionstore.testing import StoreContract


def memory(p: Path, c: FakeClock) -> ChainStore:
    return ChainStore(stores=[MemoryStore(max_entries=50, clock=c), MemoryStore(clock=c)], clock=c)


def sqlite(p: Path, c: FakeClock) -> ChainStore:
    return ChainStore(stores=[MemoryStore(clock=c), SQLiteStore(path=p / "s.db", clock=c)], clock=c)


def file_from_sqlite(p: Path, c: FakeClock) -> ChainStore:
    return ChainStore(
        stores=[MemoryStore(clock=c), FileStore(path=p / "f", clock=c)],
        migrate_from=SQLiteStore(path=p / "o", clock=c),
        clock=c,
    )


class TestChainStore(StoreContract, ExpiryContract, ScanContract):
    capabilities = frozenset({"expiry", "scan"})

    @pytest.fixture
    def clock(self) -> FakeClock:
        return FakeClock()

    @pytest.fixture
    def wait(self, clock: FakeClock) -> Callable[[float], None]:
        def advance(seconds: float) -> None:
            clock.now += seconds

        return advance

    @pytest.fixture(params=[memory, sqlite, file_from_sqlite], ids=lambda f: f.__name__)
    def store_factory(
        self, request: pytest.FixtureRequest, tmp_path: Path, clock: FakeClock
    ) -> Callable[[str], ChainStore]:
        return lambda namespace: request.param(tmp_path / namespace, clock)
