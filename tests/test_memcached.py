"""MemcachedStore's own behaviour: settings, CAS versions, expiry, several servers, errors."""

from __future__ import annotations

import functools
import logging
import os
import pickle
import shutil
import socket
import subprocess
import time
import traceback
import uuid
from collections.abc import Callable
from collections.abc import Iterator
from typing import Any

import pymemcache.serde
import pytest
from pymemcache.client.base import Client
from pymemcache.client.base import PooledClient
from pymemcache.client.hash import HashClient

import servers as servers_module
from pyramid_sessionstore.exceptions import ConfigurationError
from pyramid_sessionstore.exceptions import ConflictError
from pyramid_sessionstore.exceptions import MissingDependencyError
from pyramid_sessionstore.exceptions import SessionTooLargeError
from pyramid_sessionstore.exceptions import StoreUnavailableError
from pyramid_sessionstore.stores import memcached as memcached_module
from pyramid_sessionstore.stores.memcached import MemcachedStore
from pyramid_sessionstore.stores.registry import build_store
from pyramid_sessionstore.testing import eventually
from pyramid_sessionstore.testing import new_key
from servers import MEMCACHED_SERVERS
from servers import closed_port
from servers import ensure_server
from servers import free_port
from servers import reachable
from servers import unavailable

pytestmark = pytest.mark.memcached

MONTH = 30 * 24 * 3600


@pytest.fixture
def servers() -> list[str]:
    ensure_server("memcached", MEMCACHED_SERVERS, 11211)
    return MEMCACHED_SERVERS.split()


@pytest.fixture
def store(servers: list[str]) -> Iterator[MemcachedStore]:
    store = MemcachedStore(servers=servers, prefix=f"t{uuid.uuid4().hex[:12]}:")
    yield store
    store.close()


class PrivateServers:
    """Private memcached servers on free loopback ports, each stopped by its own handle."""

    def __init__(self) -> None:
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, *args: str) -> str:
        """Start a server with extra *args*; return its ``host:port``."""
        port = free_port()
        user = ["-u", "root"] if os.geteuid() == 0 else []
        argv = ["memcached", *user, "-l", "127.0.0.1", "-p", str(port), "-U", "0", *args]
        server = f"127.0.0.1:{port}"
        self.procs[server] = subprocess.Popen(
            argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        eventually(lambda: reachable("127.0.0.1", port, 0.2), timeout=10)
        return server

    def stop(self, server: str) -> None:
        proc = self.procs.pop(server)
        proc.kill()
        proc.wait(10)


@pytest.fixture
def private() -> Iterator[PrivateServers]:
    if shutil.which("memcached") is None:
        unavailable("memcached is not installed: cannot start a private server")
    servers = PrivateServers()
    yield servers
    for server in list(servers.procs):
        servers.stop(server)


@pytest.fixture
def raw() -> Iterator[Callable[[str], Client]]:
    """Return plain clients of a server, to look behind the store's back."""
    made: dict[str, Client] = {}

    def client(server: str) -> Client:
        host, port = server.rsplit(":", 1)
        if server not in made:
            made[server] = Client((host, int(port)), default_noreply=False, timeout=2)
        return made[server]

    yield client
    for one in made.values():
        one.close()


# -- settings ------------------------------------------------------------------


def test_every_setting_round_trips_through_build_store() -> None:
    settings = {
        "session.memcached.servers": "127.0.0.1:11211\n127.0.0.1:11212",
        "session.memcached.prefix": "app:",
        "session.memcached.connect_timeout": "0.5",
        "session.memcached.timeout": "1.5",
        "session.memcached.no_delay": "false",
        "session.memcached.max_pool_size": "7",
    }
    assert {k.rsplit(".", 1)[1] for k in settings} == set(MemcachedStore.OPTIONS)
    store = build_store("memcached", settings)
    assert isinstance(store, MemcachedStore)
    assert store.servers == ["127.0.0.1:11211", "127.0.0.1:11212"] and store.prefix == "app:"
    for client in store._clients.values():
        assert (client.connect_timeout, client.timeout, client.no_delay) == (0.5, 1.5, False)
        assert client.client_pool.max_size == 7 and client.default_noreply is False
    assert (
        repr(store) == "MemcachedStore(memcached at 127.0.0.1:11211 127.0.0.1:11212, prefix='app:')"
    )
    store.close()


def test_defaults() -> None:
    store = MemcachedStore()
    assert store.servers == ["127.0.0.1:11211"] and store.prefix == "session:"
    (client,) = store._clients.values()
    assert (client.connect_timeout, client.timeout, client.no_delay) == (2.0, 2.0, True)


@pytest.mark.parametrize(
    ("setting", "value", "fragment"),
    [
        ("servers", "localhost", "session.memcached.servers"),
        ("servers", "127.0.0.1:99999", "session.memcached.servers"),
        ("servers", "", "session.memcached.servers"),
        ("timeout", "fast", "session.memcached.timeout"),
        ("timeout", "0", "timeout"),
        ("no_delay", "maybe", "session.memcached.no_delay"),
        ("max_pool_size", "0", "session.memcached.max_pool_size"),
        ("prefix", "my app:", "prefix"),
        ("server", "127.0.0.1:11211", "did you mean"),
    ],
)
def test_bad_setting_names_it(setting: str, value: str, fragment: str) -> None:
    with pytest.raises(ConfigurationError, match=fragment):
        build_store("memcached", {f"session.memcached.{setting}": value})


def test_missing_pymemcache_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(memcached_module, "pymemcache", None)
    assert "servers" in MemcachedStore.OPTIONS  # still readable
    with pytest.raises(MissingDependencyError, match=r"pymemcache.*\[memcached\]"):
        MemcachedStore()


# -- versions and round trips --------------------------------------------------


def test_version_is_the_cas_value_and_touch_keeps_it(
    store: MemcachedStore, servers: list[str], raw: Callable[[str], Client]
) -> None:
    key = new_key()
    version = store.save(key, b"data", 60, None)
    _, cas = raw(servers[0]).gets(store.prefix + key)
    assert version == cas.decode()
    assert store.touch(key, 120) and store.load(key, 30) == (b"data", version)
    newer = store.save(key, b"more", 60, version)
    assert int(newer) > int(version)
    with pytest.raises(ConflictError):
        store.save(key, b"x", 60, "not-a-cas")
    store.delete(key)


def test_each_operation_is_one_command(servers: list[str]) -> None:
    class CountingSockets:
        """A socket module whose sockets count their sendall calls."""

        sends = 0

        def __getattr__(self, name: str) -> Any:
            return getattr(socket, name)

        def socket(self, *args: Any) -> Any:
            sock, counter = socket.socket(*args), self

            class Counted:
                def __getattr__(self, name: str) -> Any:
                    return getattr(sock, name)

                def sendall(self, data: bytes) -> None:
                    counter.sends += 1
                    sock.sendall(data)

            return Counted()

    sockets = CountingSockets()
    host, port = servers[0].rsplit(":", 1)
    client = Client((host, int(port)), socket_module=sockets, default_noreply=False)
    store = MemcachedStore(client=client, prefix=f"t{uuid.uuid4().hex[:12]}:")
    key = new_key()

    def sends(call: Callable[[], Any]) -> int:
        before = sockets.sends
        call()
        return sockets.sends - before

    version = store.save(key, b"a", 60, None)
    assert sends(lambda: store.save(new_key(), b"a", 60, None)) == 1  # create
    assert sends(lambda: store.load(key, 60)) == 1  # load and refresh
    assert sends(lambda: store.save(key, b"b", 60, version)) == 1  # update
    assert sends(lambda: store.touch(key, 60)) == 1
    assert sends(lambda: store.delete(key)) == 1
    store.close()  # not ours: the client stays usable
    assert client.get("nothing") is None
    client.close()


# -- expiry --------------------------------------------------------------------


def remaining(client: Client, name: str) -> int:
    """Return memcached's remaining TTL of *name* (-1: never), via a meta get."""
    reply = client.raw_command(f"mg {name} t", "\r\n").split()
    assert reply[0] == b"HD", reply
    return int(reply[1][1:])


def test_ttl_over_30_days_is_sent_as_a_unix_time(
    store: MemcachedStore, servers: list[str], raw: Callable[[str], Client]
) -> None:
    key = new_key()
    store.save(key, b"long", MONTH + 3600, None)
    assert abs(remaining(raw(servers[0]), store.prefix + key) - (MONTH + 3600)) < 5
    store.load(key, 2 * MONTH)
    assert abs(remaining(raw(servers[0]), store.prefix + key) - 2 * MONTH) < 5
    store.load(key, None)
    assert remaining(raw(servers[0]), store.prefix + key) == -1
    assert store.touch(key, MONTH)  # exactly 30 days: still relative
    assert abs(remaining(raw(servers[0]), store.prefix + key) - MONTH) < 5
    store.delete(key)


def test_ttl_zero_expires_at_once_not_never(store: MemcachedStore) -> None:
    key = new_key()
    store.save(key, b"gone", 0, None)
    assert store.load(key, 60) is None


def test_foreign_value_is_deleted_with_a_warning(
    store: MemcachedStore,
    servers: list[str],
    raw: Callable[[str], Client],
    caplog: pytest.LogCaptureFixture,
) -> None:
    key = new_key()
    raw(servers[0]).set(store.prefix + key, b"written by someone else")
    with caplog.at_level(logging.WARNING, logger="pyramid_sessionstore.security"):
        assert store.load(key, 60) is None
    assert "unreadable record" in caplog.text
    assert raw(servers[0]).get(store.prefix + key) is None


def test_foreign_value_with_flags_is_deleted_never_deserialized(
    store: MemcachedStore, servers: list[str], raw: Callable[[str], Client]
) -> None:
    key = new_key()
    pickled = pickle.dumps(("not", "ours"))
    raw(servers[0]).set(store.prefix + key, pickled, flags=1)  # pymemcache's pickle flag
    assert store.load(key, 60) is None
    assert raw(servers[0]).get(store.prefix + key) is None


def test_a_client_that_would_deserialize_values_is_refused(servers: list[str]) -> None:
    host, port = servers[0].rsplit(":", 1)
    for client in (
        Client((host, int(port)), serde=pymemcache.serde.pickle_serde),
        PooledClient((host, int(port)), deserializer=lambda key, value, flags: value),
    ):
        with pytest.raises(ValueError, match="serde"):
            MemcachedStore(client=client)
    plain = Client((host, int(port)), serializer=lambda key, value: (value, 0))
    MemcachedStore(client=plain).close()  # a serializer alone changes nothing read back


def test_a_version_that_is_not_a_cas_value_is_a_conflict(store: MemcachedStore) -> None:
    key = new_key()
    version = store.save(key, b"x", 60, None)
    for bogus in ("0", "9" * 30, str(2**64), "\u00b2", "\u0663", "12 34", "\ud800", ""):
        with pytest.raises(ConflictError):
            store.save(key, b"y", 60, bogus)
    assert store.load(key, 60) == (b"x", version)
    store.delete(key)


def test_too_large_record_names_the_server_limit(store: MemcachedStore) -> None:
    with pytest.raises(SessionTooLargeError) as info:
        store.save(new_key(), b"x" * (1 << 20), 60, None)
    assert (info.value.size, info.value.limit) == ((1 << 20) + 4, 1 << 20)


def test_larger_item_limit_is_honoured(private: PrivateServers) -> None:
    store = MemcachedStore(servers=[private.start("-I", "2m")])
    key, payload = new_key(), os.urandom(3 << 19)  # 1.5 MiB
    version = store.save(key, payload, 60, None)
    assert store.load(key, 60) == (payload, version)
    store.close()


# -- several servers -------------------------------------------------------------


def test_keys_spread_over_servers_and_never_move(
    servers: list[str], private: PrivateServers, raw: Callable[[str], Client]
) -> None:
    second = private.start()
    store = MemcachedStore(servers=[servers[0], second], prefix=f"t{uuid.uuid4().hex[:12]}:")
    keys = [new_key() for _ in range(40)]
    versions = {key: store.save(key, key.encode(), 60, None) for key in keys}
    held = {s: {k for k in keys if raw(s).get(store.prefix + k)} for s in (servers[0], second)}
    assert held[servers[0]] and held[second]  # both used
    assert held[servers[0]] | held[second] == set(keys) and not held[servers[0]] & held[second]
    for key in keys:
        assert store.load(key, 60) == (key.encode(), versions[key])
    private.stop(second)
    for key in keys:
        if key in held[second]:  # no failover: an error, not a miss on the other server
            with pytest.raises(StoreUnavailableError, match=second):
                store.load(key, 60)
            with pytest.raises(StoreUnavailableError):
                store.save(key, b"moved?", 60, None)
        else:
            assert store.load(key, 60) == (key.encode(), versions[key])
            store.delete(key)
    store.close()


# -- fork (issue 10, item 11) -----------------------------------------------------

ROUNDS = 300


def hammer(store: MemcachedStore, key: str, tag: bytes, rounds: int = ROUNDS) -> None:
    """Update *key* *rounds* times by compare-and-set, checking each reply is *key*'s own."""
    for n in range(rounds):
        record = store.load(key, 60)
        assert record is not None and record.data == tag + b"%d" % n, (tag, n, record)
        assert store.save(key, tag + b"%d" % (n + 1), 60, record.version) != record.version


def in_child(work: Callable[[], None]) -> int:
    """Fork; run *work* in the child, which exits 0 when it returned; return the child's pid."""
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            work()
            code = 0
        except BaseException:
            traceback.print_exc()  # then exit 1: never back into the parent's test run
            raise
        finally:
            os._exit(code)
    return pid


@pytest.mark.parametrize("given", [None, "client", "pooled-client"])
def test_forked_children_never_share_the_parents_connections(
    servers: list[str], given: str | None
) -> None:
    host, port = servers[0].rsplit(":", 1)
    client = {
        None: None,
        "client": Client((host, int(port)), default_noreply=False, timeout=5),
        "pooled-client": PooledClient((host, int(port)), default_noreply=False, timeout=5),
    }[given]
    prefix = f"t{uuid.uuid4().hex[:12]}:"
    store = MemcachedStore(servers=servers, prefix=prefix, timeout=5, client=client)
    keys = [new_key() for _ in range(4)]
    tags = [b"process-%d:" % n for n in range(4)]
    for key, tag in zip(keys, tags, strict=True):
        store.save(key, tag + b"0", 60, None)  # the parent holds a connection now
    children = [in_child(functools.partial(hammer, store, keys[n], tags[n])) for n in range(1, 4)]
    hammer(store, keys[0], tags[0])  # at the same time, on the parent's connection
    assert [os.waitpid(pid, 0)[1] for pid in children] == [0, 0, 0]
    # Every write landed, and the parent's connections still work.
    for key, tag in zip(keys, tags, strict=True):
        record = store.load(key, 60)
        assert record is not None and record.data == tag + b"%d" % ROUNDS
        store.delete(key)
    store.close()
    if client is not None:
        client.close()


def test_a_child_that_closes_the_store_leaves_the_parents_connections_open(
    store: MemcachedStore,
) -> None:
    key = new_key()
    version = store.save(key, b"parent", 60, None)
    (pooled,) = store._clients.values()
    sockets = [one.sock for one in pooled.client_pool.free]
    assert sockets and all(sockets)
    child = in_child(store.close)
    assert os.waitpid(child, 0)[1] == 0
    assert [one.sock for one in pooled.client_pool.free] == sockets
    assert store.load(key, 60) == (b"parent", version)  # on the same connection
    assert [one.sock for one in pooled.client_pool.free] == sockets


def test_a_server_the_tests_start_is_stopped_when_they_end(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """tests/servers.py stops what it started itself (issue 10, item 17), nothing else."""
    if shutil.which("memcached") is None:
        unavailable("memcached is not installed: cannot start a private server")
    monkeypatch.setattr(servers_module, "_tried", set())
    monkeypatch.setattr(servers_module, "_started", [])
    port = free_port()
    assert servers_module.ensure_server("memcached", f"127.0.0.1:{port}", port)
    assert servers_module.ensure_server("memcached", MEMCACHED_SERVERS, 11211)  # found running
    assert len(servers_module._started) == 1
    servers_module.stop_started_servers()  # what atexit runs
    assert not reachable("127.0.0.1", port)
    host, main_port = MEMCACHED_SERVERS.split()[0].rsplit(":", 1)
    assert reachable(host, int(main_port))  # the one found running is left alone


# -- errors --------------------------------------------------------------------


def test_unreachable_server_is_named() -> None:
    server = f"127.0.0.1:{closed_port()}"
    store = MemcachedStore(servers=[server])
    with pytest.raises(StoreUnavailableError, match=f"memcached at {server}") as info:
        store.load(new_key(), 60)
    assert isinstance(info.value.__cause__, OSError) and info.value.store is store


def test_server_that_does_not_answer_times_out() -> None:
    with socket.socket() as listener:  # accepts connections (backlog), never replies
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        server = f"127.0.0.1:{listener.getsockname()[1]}"
        store = MemcachedStore(servers=[server], timeout=0.2, connect_timeout=0.2)
        started = time.monotonic()
        with pytest.raises(StoreUnavailableError, match="timed out"):
            store.load(new_key(), 60)
        assert time.monotonic() - started < 2


def test_exhausted_pool_is_unavailable(servers: list[str]) -> None:
    store = MemcachedStore(servers=servers, max_pool_size=1)
    (pooled,) = store._clients.values()
    taken = pooled.client_pool.get()  # the only connection, as another thread would hold it
    with pytest.raises(StoreUnavailableError, match="Too many"):
        store.load(new_key(), 60)
    pooled.client_pool.release(taken)
    assert store.load(new_key(), 60) is None
    store.close()


def test_server_without_cas_is_refused(private: PrivateServers) -> None:
    store = MemcachedStore(servers=[private.start("-C")])
    with pytest.raises(StoreUnavailableError, match="CAS disabled"):
        store.save(new_key(), b"x", 60, None)
    store.close()


def test_client_must_be_a_plain_or_pooled_client(servers: list[str]) -> None:
    host, port = servers[0].rsplit(":", 1)
    with pytest.raises(ValueError, match="client"):
        MemcachedStore(client=HashClient([(host, int(port))]))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="ignore_exc"):
        MemcachedStore(client=Client((host, int(port)), ignore_exc=True))
