"""MemoryStore passes the store contract, on a fake clock (no test sleeps)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from clocks import FakeClock
from pyramid_sessionstore.stores import MemoryStore
from pyramid_sessionstore.stores import Store
from pyramid_sessionstore.testing import ExpiryContract
from pyramid_sessionstore.testing import PeekContract
from pyramid_sessionstore.testing import ScanContract
from pyramid_sessionstore.testing import StoreContract
from pyramid_sessionstore.testing.contract import RawContentsContract


class TestMemoryStore(
    StoreContract, ExpiryContract, ScanContract, PeekContract, RawContentsContract
):
    capabilities = frozenset({"expiry", "scan", "peek"})

    @pytest.fixture
    def clock(self) -> FakeClock:
        return FakeClock()

    @pytest.fixture
    def wait(self, clock: FakeClock) -> Callable[[float], None]:
        def advance(seconds: float) -> None:
            clock.now += seconds

        return advance

    @pytest.fixture
    def store_factory(self, clock: FakeClock) -> Callable[[str], Store]:
        return lambda namespace: MemoryStore(clock=clock)

    @pytest.fixture
    def raw_names(self) -> Callable[[MemoryStore], set[str]]:
        return lambda store: set(store._entries)
