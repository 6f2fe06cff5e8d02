"""RedisStore passes the store contract: standalone (db 15) and a 3-master Cluster."""

from __future__ import annotations

import pytest

import servers
from pyramid_sessionstore import testing
from pyramid_sessionstore.stores import RedisStore

pytestmark = pytest.mark.redis


class TestRedisStore(testing.StoreContract, testing.ScanContract, testing.UnavailableContract):
    capabilities = frozenset({"scan"})
    cluster = False  # True: against the Cluster the redis_cluster fixture starts

    @pytest.fixture
    def store_factory(self, request: pytest.FixtureRequest) -> object:
        url = request.getfixturevalue("redis_cluster" if self.cluster else "redis_url")
        return lambda ns: RedisStore(url=url, cluster=self.cluster, prefix=f"{ns}:")

    @pytest.fixture
    def unavailable_store(self) -> RedisStore:
        return RedisStore(url=f"redis://127.0.0.1:{servers.closed_port()}/0", cluster=self.cluster)


class TestRedisClusterStore(TestRedisStore):
    cluster = True
