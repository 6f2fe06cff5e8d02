"""RedisStore's own behaviour: settings, errors, corrupt records, round trips, failures.

The contract suite (``tests/contract/test_redis.py``) covers what every store
does; this module covers what is particular to Redis, against real servers:
the shared one (db 15), private ones started by ``redis_procs``, a Cluster
and a Sentinel set.
"""

from __future__ import annotations

import functools
import logging
import os
import signal
import time
import uuid
from collections.abc import Iterator
from typing import TYPE_CHECKING
from typing import Any

import pytest
import redis
import redis.cluster
import redis.sentinel

from pyramid_sessionstore.exceptions import ConfigurationError
from pyramid_sessionstore.exceptions import ConflictError
from pyramid_sessionstore.exceptions import MissingDependencyError
from pyramid_sessionstore.exceptions import StoreError
from pyramid_sessionstore.exceptions import StoreUnavailableError
from pyramid_sessionstore.stores import RedisStore
from pyramid_sessionstore.stores import redis as redis_module
from pyramid_sessionstore.stores.registry import build_store
from pyramid_sessionstore.testing import eventually
from pyramid_sessionstore.testing import new_key
from servers import closed_port

if TYPE_CHECKING:  # registered by conftest.py (pytest_plugins), after assertion rewriting
    from redis_procs import RedisProcess
    from redis_procs import SentinelSet

pytestmark = pytest.mark.redis


def build(**options: Any) -> Any:
    return build_store("redis", {f"session.redis.{k}": v for k, v in options.items()})


@pytest.fixture
def prefix() -> str:
    return f"tr{uuid.uuid4().hex[:10]}:"


@pytest.fixture
def store(redis_url: str, prefix: str) -> Iterator[RedisStore]:
    store = RedisStore(url=redis_url, prefix=prefix)
    yield store
    for key in list(store.keys()):
        store.delete(key)
    store.close()


@pytest.fixture
def raw(redis_url: str) -> Iterator[redis.Redis]:
    with redis.Redis.from_url(redis_url) as client:
        yield client


# -- settings ------------------------------------------------------------------------


def test_every_setting_reaches_the_client(redis_cluster: str) -> None:
    """Build from string settings, as an .ini gives them, covering every OPTIONS key."""
    covered: set[str] = set()

    plain = dict(url="redis://app@127.0.0.1:1/15", prefix="p:", password="s3cret")
    plain.update(socket_timeout="0.5", socket_connect_timeout="1.5", max_connections="7")
    store = build(**plain)
    pool = store._client.connection_pool
    assert (store.url, store.prefix, pool.max_connections) == (plain["url"], "p:", 7)
    kwargs = pool.connection_kwargs
    assert (kwargs["db"], kwargs["username"], kwargs["password"]) == (15, "app", "s3cret")
    assert (kwargs["socket_timeout"], kwargs["socket_connect_timeout"]) == (0.5, 1.5)
    assert kwargs["retry"].get_retries() == 1  # not redis-py's 10: fail fast
    covered |= plain.keys()

    sentinel = dict(sentinels="127.0.0.1:26379\n127.0.0.1:26380", service_name="main")
    sentinel.update(sentinel_password="watch", url="rediss://:pw@ignored:1/3")
    store = build(**sentinel)
    assert store.sentinels == ["127.0.0.1:26379", "127.0.0.1:26380"]
    assert store._sentinel.sentinel_kwargs["password"] == "watch"
    assert [s.connection_pool.connection_kwargs["port"] for s in store._sentinel.sentinels] == [
        26379,
        26380,
    ]
    kwargs = store._client.connection_pool.connection_kwargs
    assert (kwargs["db"], kwargs["password"]) == (3, "pw")
    assert store._client.connection_pool.connection_class is (
        redis.sentinel.SentinelManagedSSLConnection
    )
    assert store.service_name == "main"
    covered |= sentinel.keys()

    store = build(url=redis_cluster, cluster="true")
    key = new_key()
    store.save(key, b"on the cluster", 60, None)
    assert isinstance(store._client, redis.cluster.RedisCluster)
    assert store.load(key, 60).data == b"on the cluster"
    store.delete(key)
    store.close()
    covered |= {"url", "cluster"}

    assert covered == set(RedisStore.OPTIONS)


@pytest.mark.parametrize(
    ("setting", "value"),
    [
        ("socket_timeout", "0"),
        ("socket_timeout", "soon"),
        ("socket_connect_timeout", "-1"),
        ("max_connections", "0"),
        ("max_connections", "many"),
        ("cluster", "maybe"),
        ("sentinels", "nohost"),
        ("sentinels", "127.0.0.1:port"),
    ],
)
def test_bad_value_names_the_setting(setting: str, value: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        build(**{setting: value})
    assert info.value.setting == f"session.redis.{setting}"
    assert f"session.redis.{setting}" in str(info.value)


def test_unknown_setting_suggests_the_right_one() -> None:
    with pytest.raises(ConfigurationError, match="did you mean .*sentinels"):
        build(sentinel="127.0.0.1:26379")


@pytest.mark.parametrize(
    ("options", "named"),
    [
        ({"url": "http://127.0.0.1/0"}, "schemes"),
        ({"url": "redis://127.0.0.1:notaport/0"}, "Port"),
        ({"cluster": "true", "sentinels": "127.0.0.1:26379"}, "cluster"),
        ({"url": "redis://:hunter2@127.0.0.1/15", "cluster": "true"}, "db 0"),
        ({"sentinels": "127.0.0.1:26379"}, "service_name"),
    ],
)
def test_inconsistent_settings_fail_at_start_up(options: dict[str, str], named: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        build(**options)
    assert named in str(info.value)
    assert "hunter2" not in str(info.value)


def test_errors_and_repr_mask_the_password() -> None:
    store = RedisStore(url=f"redis://app:hunter2@127.0.0.1:{closed_port()}/0")
    with pytest.raises(StoreUnavailableError) as info:
        store.load(new_key(), 60)
    assert "app:***@127.0.0.1" in str(info.value)
    assert "hunter2" not in str(info.value) + repr(store)
    assert isinstance(info.value.__cause__, redis.ConnectionError)


def test_missing_driver_raises_missing_dependency(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(redis_module, "redis", None)
    assert "url" in RedisStore.OPTIONS  # the table is readable without the driver
    with pytest.raises(MissingDependencyError, match=r"pyramid_sessionstore\[redis\]"):
        build(url="redis://127.0.0.1/0")


def test_a_given_client_is_used_and_not_closed(redis_url: str, prefix: str) -> None:
    with redis.Redis.from_url(redis_url) as client:
        store = RedisStore(client=client, prefix=prefix)
        key = new_key()
        version = store.save(key, b"x", 60, None)
        assert store.load(key, 60) == (b"x", version)
        store.delete(key)
        store.close()
        assert client.ping()
    with redis.Redis.from_url(redis_url, decode_responses=True) as text_client:
        with pytest.raises(ValueError, match="decode_responses"):
            RedisStore(client=text_client)


# -- records -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [b"", b"garbage", b"pss1", b"pss1abc", b"pss1" + b"X" * 16 + b"data", b"\x80\x04pickle"],
    ids=["empty", "foreign", "magic-only", "truncated", "bad-version", "pickle"],
)
def test_unreadable_record_is_logged_deleted_and_a_miss(
    store: RedisStore, raw: redis.Redis, caplog: pytest.LogCaptureFixture, value: bytes
) -> None:
    key = new_key()
    raw.set(store.prefix + key, value)
    with caplog.at_level(logging.WARNING, logger="pyramid_sessionstore.security"):
        assert store.load(key, 60) is None
    assert [r.name for r in caplog.records] == ["pyramid_sessionstore.security"]
    assert raw.exists(store.prefix + key) == 0
    raw.set(store.prefix + key, value)
    with pytest.raises(ConflictError):  # nor is it overwritten by an update
        store.save(key, b"mine", 60, "0" * 16)
    assert raw.get(store.prefix + key) == value


def test_value_of_another_type_is_logged_deleted_and_a_miss(
    store: RedisStore, raw: redis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    key = new_key()
    raw.hset(store.prefix + key, "field", "value")
    with pytest.raises(ConflictError):
        store.save(key, b"mine", 60, "0" * 16)
    with pytest.raises(ConflictError):
        store.save(key, b"mine", 60, None)
    assert store.touch(key, None) is False  # GETEX answers WRONGTYPE: not a record
    with caplog.at_level(logging.WARNING, logger="pyramid_sessionstore.security"):
        assert store.load(key, 60) is None
    assert caplog.records and raw.exists(store.prefix + key) == 0


def test_ttl_is_native_and_at_least_one_second(store: RedisStore, raw: redis.Redis) -> None:
    key = new_key()
    store.save(key, b"x", 0, None)
    assert raw.ttl(store.prefix + key) == 1
    store.load(key, 300)
    assert 299 <= raw.ttl(store.prefix + key) <= 300
    store.load(key, None)
    assert raw.ttl(store.prefix + key) == -1
    assert store.touch(key, None) is True  # no expiry to remove is still "there"
    assert store.touch(key, 50) and raw.ttl(store.prefix + key) <= 50


def test_glob_characters_in_the_prefix_match_literally(redis_url: str, raw: redis.Redis) -> None:
    tag = uuid.uuid4().hex[:8]
    odd = RedisStore(url=redis_url, prefix=f"{tag}[a]*?:")
    plain = RedisStore(url=redis_url, prefix=f"{tag}a-x:")  # matches "{tag}[a]*?:*" unescaped
    keys = {odd: new_key(), plain: new_key()}
    for store, key in keys.items():
        store.save(key, b"x", 60, None)
    for store, key in keys.items():  # both exist now: each sees only its own
        assert list(store.keys()) == [key]
    for store, key in keys.items():
        store.delete(key)
        store.close()


def test_other_redis_errors_are_store_errors(private_redis: RedisProcess) -> None:
    store = RedisStore(url=private_redis.url)
    with private_redis.client() as admin:
        admin.config_set("maxmemory", "1")  # with noeviction, every write is refused
    with pytest.raises(StoreError) as info:
        store.save(new_key(), b"x", 60, None)
    assert not isinstance(info.value, StoreUnavailableError)
    assert isinstance(info.value.__cause__, redis.ResponseError)


def test_the_documented_acl_is_enough(private_redis: RedisProcess) -> None:
    """docs/stores/redis.md lists exactly these commands for a least-privilege user."""
    commands = ["-@all", "+getex", "+set", "+evalsha", "+script|load", "+getrange"]
    commands += ["+expire", "+del", "+scan", "+ping", "+get", "+pttl"]
    with private_redis.client() as admin:
        admin.acl_setuser(
            "app", enabled=True, passwords=["+pw"], keys=["session:*"], commands=commands
        )
    store = RedisStore(url=f"redis://app:pw@127.0.0.1:{private_redis.port}/0")
    key = new_key()
    version = store.save(key, b"x", 60, store.save(key, b"w", 60, None))
    assert store.load(key, None) == (b"x", version)
    assert store.peek(key) == ((b"x", version), None)
    assert store.touch(key, 60) and store.touch(key, None)
    assert list(store.keys()) == [key] and store.count() == 1
    store.delete(key)
    store.close()


def test_a_flushed_script_cache_is_filled_again(private_redis: RedisProcess) -> None:
    store = RedisStore(url=private_redis.url)  # SCRIPT FLUSH empties a whole server's cache
    key = new_key()
    version = store.save(key, b"x", 60, None)
    with private_redis.client() as admin:
        admin.script_flush()  # as after a restart or a failover to a fresh replica
    newer = store.save(key, b"y", 60, version)
    assert store.load(key, 60) == (b"y", newer)
    with pytest.raises(ConflictError):
        store.save(key, b"z", 60, version)
    store.close()


def test_a_version_this_store_cannot_have_written_is_a_conflict(
    store: RedisStore, raw: redis.Redis
) -> None:
    key = new_key()
    version = store.save(key, b"x", 60, None)
    for bogus in ("", "0" * 15, version.upper(), version + "0", "\ud800" * 16, "\u0663" * 16):
        with pytest.raises(ConflictError):
            store.save(key, b"y", 60, bogus)
    assert store.load(key, 60) == (b"x", version)


def _our_connections(admin: redis.Redis, name: str) -> int:
    return sum(1 for c in admin.client_list() if c["name"] == name)


def test_connections_are_kept_reused_and_given_back(private_redis: RedisProcess) -> None:
    pool = redis.ConnectionPool(port=private_redis.port, client_name="ours")
    store = RedisStore(client=redis.Redis(connection_pool=pool), prefix="reuse:")
    key = new_key()
    version = store.save(key, b"x", 60, None)
    for _ in range(50):
        assert store.load(key, 60) == (b"x", version)
    with private_redis.client() as admin:
        assert _our_connections(admin, "ours") == 1  # one request at a time: one connection
        store.close()  # a given client: its connection goes back to its pool, still open
        assert _our_connections(admin, "ours") == 1
        assert redis.Redis(connection_pool=pool).get("reuse:" + key) is not None
    pool.disconnect()


def test_tracing_and_subclasses_keep_the_client_path(
    redis_url: str, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[str] = []

    class Instrumented(redis.Redis):
        def execute_command(self, *args: Any, **options: Any) -> Any:
            seen.append(args[0])
            return super().execute_command(*args, **options)

    original = redis.Redis.execute_command

    @functools.wraps(original)
    def traced(self: redis.Redis, *args: Any, **options: Any) -> Any:  # as tracers wrap it
        seen.append(args[0])
        return original(self, *args, **options)

    for client in (Instrumented.from_url(redis_url), redis.Redis.from_url(redis_url)):
        with monkeypatch.context() as patch:
            if type(client) is redis.Redis:
                patch.setattr(redis.Redis, "execute_command", traced)
            seen.clear()
            store = RedisStore(client=client, prefix=prefix)
            key = new_key()
            version = store.save(key, b"x", 60, None)
            assert store.load(key, 60) == (b"x", version)
            store.save(key, b"y", 60, version)
            store.delete(key)
            assert seen[:2] == ["SET", "GETEX"] and seen[-1] == "DEL"
            store.close()
        client.close()


def test_a_command_that_timed_out_never_answers_the_next(private_redis: RedisProcess) -> None:
    store = RedisStore(url=private_redis.url, socket_timeout=0.2)
    first, second = new_key(), new_key()
    store.save(first, b"first", 60, None)
    version = store.save(second, b"second", 60, None)
    with private_redis.client() as admin:
        admin.execute_command("CLIENT", "PAUSE", 600, "ALL")
        with pytest.raises(StoreUnavailableError, match="Timeout"):
            store.load(first, 60)  # its reply comes once the pause ends
        time.sleep(0.6)
    assert store.load(second, 60) == (b"second", version)
    store.close()


def test_a_forked_worker_opens_its_own_connections(private_redis: RedisProcess) -> None:
    store = RedisStore(url=private_redis.url, prefix="fork:")
    key = new_key()
    version = store.save(key, b"parent", 60, None)  # the parent holds a connection now
    pid = os.fork()
    if pid == 0:  # the child: its replies must not be read by the parent, nor the reverse
        ok = all(store.load(key, 60) == (b"parent", version) for _ in range(200))
        os._exit(0 if ok else 1)
    for _ in range(200):
        assert store.load(key, 60) == (b"parent", version)
    assert os.waitpid(pid, 0)[1] == 0
    store.close()


def test_scan_covers_every_cluster_primary(redis_cluster: str, prefix: str) -> None:
    store = RedisStore(url=redis_cluster, cluster=True, prefix=prefix)
    keys = {new_key() for _ in range(30)}
    for key in keys:
        store.save(key, b"x", 60, None)
    client = store._client
    assert len({client.get_node_from_key(prefix + k).name for k in keys}) == 3
    assert set(store.keys()) == keys and store.count() == 30
    for key in keys:
        store.delete(key)
    store.close()


# -- round trips ---------------------------------------------------------------------


class CountingConnection(redis.Connection):
    """A connection that counts what it sends: one send is one round trip."""

    sends = 0

    def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        CountingConnection.sends += 1
        super().send_packed_command(command, check_health)


def _round_trips(store: RedisStore) -> dict[str, int]:
    """Run each operation once (after a warm-up) and count its round trips."""
    key, missing = new_key(), new_key()
    # Warm up: connect to the node(s) of both keys and load the script there.
    store.save(key, b"warm", 60, store.save(key, b"up", 60, None))
    store.delete(key)
    store.load(missing, 60)
    counts = {}
    operations = {
        "create": lambda: store.save(key, b"v1", 60, None),
        "load": lambda: store.load(key, 60),
        "update": lambda: store.save(key, b"v2", 60, store.load(key, 60).version),
        "touch": lambda: store.touch(key, 60),
        "load-miss": lambda: store.load(missing, 60),
        "delete": lambda: store.delete(key),
    }
    for name, operation in operations.items():
        before = CountingConnection.sends
        operation()
        counts[name] = CountingConnection.sends - before
    counts["update"] -= counts["load"]
    return counts


def test_every_operation_is_one_round_trip(private_redis: RedisProcess) -> None:
    pool = redis.ConnectionPool(port=private_redis.port, connection_class=CountingConnection)
    store = RedisStore(client=redis.Redis(connection_pool=pool), prefix="rt:")
    assert set(_round_trips(store).values()) == {1}

    # And on the server: exactly the commands we claim, no SCRIPT LOAD, no extra GET.
    admin = private_redis.client()
    expected = {
        "create": {"set": 1},
        "load": {"getex": 1},
        "update": {"evalsha": 1, "getrange": 1, "set": 1},  # GETRANGE, SET: inside the script
        "touch": {"expire": 1},
        "delete": {"del": 1},
    }
    key = new_key()
    store.save(key, b"x", 60, None)
    version = store.load(key, 60).version
    calls = {
        "create": lambda: store.save(new_key(), b"x", 60, None),
        "load": lambda: store.load(key, 60),
        "update": lambda: store.save(key, b"y", 60, version),
        "touch": lambda: store.touch(key, 60),
        "delete": lambda: store.delete(key),
    }
    for name, call in calls.items():
        admin.config_resetstat()
        call()
        stats = admin.info("commandstats")
        seen = {k[8:]: v["calls"] for k, v in stats.items() if not k.startswith("cmdstat_config")}
        assert seen == expected[name], name
    admin.close()
    pool.disconnect()


def test_every_operation_is_one_round_trip_on_cluster(redis_cluster: str) -> None:
    client = redis.cluster.RedisCluster.from_url(redis_cluster, connection_class=CountingConnection)
    store = RedisStore(client=client, prefix="rt:")
    assert set(_round_trips(store).values()) == {1}
    client.close()


# -- failures ------------------------------------------------------------------------


@pytest.mark.slow
def test_server_restart_raises_unavailable_then_recovers(private_redis: RedisProcess) -> None:
    store = RedisStore(url=private_redis.url, socket_timeout=1, socket_connect_timeout=1)
    key = new_key()
    store.save(key, b"x", 60, None)
    private_redis.stop()
    for call in (
        lambda: store.load(key, 60),
        lambda: store.save(new_key(), b"x", 60, None),
        lambda: store.save(key, b"y", 60, "0" * 16),
        lambda: store.touch(key, 60),
        lambda: store.delete(key),
        lambda: store.count(),
    ):
        with pytest.raises(StoreUnavailableError, match=f"127.0.0.1:{private_redis.port}"):
            call()
    private_redis.start()  # same port, empty: nothing was persisted
    assert store.load(key, 60) is None
    version = store.save(key, b"again", 60, None)
    assert store.load(key, 60) == (b"again", version)
    store.close()


@pytest.mark.slow
def test_sentinel_failover_raises_unavailable_then_recovers(redis_sentinel: SentinelSet) -> None:
    s = redis_sentinel
    store = RedisStore(
        sentinels=s.sentinels,
        service_name=s.service_name,
        prefix="failover:",
        socket_timeout=1,
        socket_connect_timeout=1,
    )
    saved = {}
    for _ in range(10):
        key = new_key()
        saved[key] = store.save(key, b"before", 600, None)
    with s.replica.client() as replica:  # what the replica has will survive
        eventually(lambda: replica.exists(*(store.prefix + k for k in saved)) == len(saved))
    unavailable, recovered_at, killed_at = 0, None, 0.0
    for step in range(2000):
        if step == 5:
            s.master.stop(signal.SIGKILL)
            killed_at = time.monotonic()
        try:
            key = new_key()
            version = store.save(key, b"during", 600, None)
            assert store.load(key, 600) == (b"during", version)
        except StoreUnavailableError:
            unavailable += 1  # any other exception fails the test
            assert time.monotonic() - killed_at < 20, "no failover within 20 s"
            time.sleep(0.05)
            continue
        if killed_at:
            recovered_at = time.monotonic()
            break
    assert unavailable > 0 and recovered_at is not None
    for key, version in saved.items():  # replicated before the crash: still there
        assert store.load(key, 600) == (b"before", version)
        assert store.save(key, b"after", 600, version) != version
    store.close()
