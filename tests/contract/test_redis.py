"""RedisStore passes the store contract: standalone (db 15) and a 3-master Cluster."""

from __future__ import annotations

from collections.abc import Callable
from unittest.mock import ANY

import pytest
import redis

import servers
from pyramid_sessionstore import StoreError
from pyramid_sessionstore import StoreUnavailableError
from pyramid_sessionstore import testing
from pyramid_sessionstore.stores import RedisStore
from pyramid_sessionstore.testing import new_key
from pyramid_sessionstore.testing.contract import RawContentsContract
from redis_procs import RedisProcess

pytestmark = pytest.mark.redis


class TestRedisStore(
    testing.StoreContract,
    testing.ScanContract,
    testing.PeekContract,
    testing.UnavailableContract,
    RawContentsContract,
):
    capabilities = frozenset({"scan", "peek"})
    cluster = False  # True: against the Cluster the redis_cluster fixture starts

    @pytest.fixture
    def store_factory(self, request: pytest.FixtureRequest) -> object:
        url = request.getfixturevalue("redis_cluster" if self.cluster else "redis_url")
        return lambda ns: RedisStore(url=url, cluster=self.cluster, prefix=f"{ns}:")

    @pytest.fixture
    def raw_names(self) -> Callable[[RedisStore], set[str]]:
        """Scan every primary with a client of our own (the namespace has no glob character)."""

        def names(store: RedisStore) -> set[str]:
            kind = redis.RedisCluster if store.cluster else redis.Redis
            with kind.from_url(store.url) as client:
                found = client.scan_iter(match=f"{store.prefix}*", count=1000)
                return {name.decode()[len(store.prefix) :] for name in found}

        return names

    @pytest.fixture
    def unavailable_store(self) -> RedisStore:
        return RedisStore(url=f"redis://127.0.0.1:{servers.closed_port()}/0", cluster=self.cluster)


class TestRedisClusterStore(TestRedisStore):
    cluster = True

    # RedisStore's own: peek's script reads one key, whatever is there.

    def test_peek_of_another_type_is_a_miss_and_deletes_it(
        self, store: RedisStore, key: Callable[[], str]
    ) -> None:
        k = key()
        kind = redis.RedisCluster if store.cluster else redis.Redis
        with kind.from_url(store.url) as client:
            client.rpush(store.prefix + k, b"not a record")
            assert store.peek(k) is None
            assert client.exists(store.prefix + k) == 0
            client.set(store.prefix + k, b"pss1 but not a header")
            assert store.peek(k) is None
            assert client.exists(store.prefix + k) == 0

    def test_peek_keeps_the_time_left(self, store: RedisStore, key: Callable[[], str]) -> None:
        k = key()
        store.save(k, b"data", 600, None)
        kind = redis.RedisCluster if store.cluster else redis.Redis
        with kind.from_url(store.url) as client:
            client.pexpire(store.prefix + k, 5000)  # as if saved long ago
            assert store.peek(k) is not None
            assert 4000 < client.pttl(store.prefix + k) <= 5000


def test_peek_without_the_commands_it_needs_fails_and_deletes_nothing(
    private_redis: RedisProcess,
) -> None:
    """A user whose ACL lacks GET (see docs/stores/redis.md) gets an error, not a miss."""
    commands = ["-@all", "+getex", "+set", "+evalsha", "+script|load", "+getrange"]
    commands += ["+expire", "+del", "+scan", "+ping", "+pttl"]  # no +get
    with private_redis.client() as admin:
        admin.acl_setuser("app", enabled=True, passwords=["+pw"], keys=["s:*"], commands=commands)
        store = RedisStore(url=f"redis://app:pw@127.0.0.1:{private_redis.port}/0", prefix="s:")
        key = new_key()
        store.save(key, b"x", 60, None)
        with pytest.raises(StoreError) as info:
            store.peek(key)
        assert not isinstance(info.value, StoreUnavailableError)
        assert admin.exists(f"s:{key}") == 1
        admin.acl_setuser("app", commands=["+get"])  # as documented: peek works
        assert store.peek(key) == ((b"x", ANY), ANY)
        store.close()
