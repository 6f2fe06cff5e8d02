"""MemcachedStore passes the store contract (memcached expires and cannot list keys)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from pyramid_sessionstore.stores.memcached import MemcachedStore
from pyramid_sessionstore.testing import StoreContract
from pyramid_sessionstore.testing import UnavailableContract
from servers import MEMCACHED_SERVERS
from servers import closed_port
from servers import ensure_server

pytestmark = pytest.mark.memcached


class TestMemcachedStore(StoreContract, UnavailableContract):
    capabilities = frozenset()
    accepts_large_records = False  # memcached's item limit (-I) is 1 MiB by default

    @pytest.fixture
    def store_factory(self) -> Callable[[str], MemcachedStore]:
        ensure_server("memcached", MEMCACHED_SERVERS, 11211)
        return lambda namespace: MemcachedStore(servers=MEMCACHED_SERVERS.split(), prefix=namespace)

    @pytest.fixture
    def unavailable_store(self) -> MemcachedStore:
        return MemcachedStore(servers=[f"127.0.0.1:{closed_port()}"])
