"""ChainStore passes the store contract on a fake clock: a memory cache before memory, SQLite,
files; migrating."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from unittest.mock import ANY

import pytest

from clocks import FakeClock
from pyramid_sessionstore.stores import ChainStore
from pyramid_sessionstore.stores import FileStore
from pyramid_sessionstore.stores import MemoryStore
from pyramid_sessionstore.stores import SQLiteStore
from pyramid_sessionstore.stores.base import SupportsPeek
from pyramid_sessionstore.testing import ExpiryContract
from pyramid_sessionstore.testing import PeekContract
from pyramid_sessionstore.testing import ScanContract
from pyramid_sessionstore.testing import StoreContract
from pyramid_sessionstore.testing import new_key


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


class TestChainStore(StoreContract, ExpiryContract, ScanContract, PeekContract):
    capabilities = frozenset({"expiry", "scan", "peek"})
    # Over SQLite, ttl 60 is kept 60 + 30 (the chain's margin) + 45 (SQLite's
    # slack); peek subtracts 30 and refresh_interval (60): 15 s early.
    peek_early = 15.0

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


# ChainStore's own: peek asks the store of record (or the old store), never a cache.


class _NoPeek:
    """A store with the five methods only."""

    def __init__(self) -> None:
        self.inner = MemoryStore()
        self.load, self.save, self.touch = self.inner.load, self.inner.save, self.inner.touch
        self.delete, self.close = self.inner.delete, self.inner.close


def test_peek_reads_the_store_of_record_and_fills_no_cache() -> None:
    c = FakeClock()
    cache, record, old = MemoryStore(clock=c), MemoryStore(clock=c), MemoryStore(clock=c)
    chain = ChainStore(stores=[cache, record], migrate_from=old, clock=c)
    fresh, stale, moving, saved = new_key(), new_key(), new_key(), new_key()
    chain.save(saved, b"x", 600, None)  # kept 600 + 30 (the margin) in the store of record
    assert chain.peek(saved) == ((b"x", ANY), c.now + 600)
    record.save(fresh, b"new", 600, None)
    chain.save(stale, b"cached", 600, None)
    record.delete(stale)  # ended elsewhere; this process's cache still has a copy
    old.save(moving, b"old", 600, None)
    assert chain.peek(fresh) == ((b"new", ANY), ANY)
    assert chain.peek(stale) is None
    assert chain.peek(moving) == ((b"old", ANY), ANY)
    assert cache.peek(fresh) is None and old.peek(moving) is not None  # nothing filled or moved


def test_a_chain_peeks_only_when_every_store_holding_records_can() -> None:
    assert not isinstance(ChainStore(stores=[MemoryStore(), _NoPeek()]), SupportsPeek)
    with_old = ChainStore(stores=[MemoryStore()], migrate_from=_NoPeek())
    assert not isinstance(with_old, SupportsPeek)
    assert isinstance(ChainStore(stores=[_NoPeek(), MemoryStore()]), SupportsPeek)
