"""MemcachedStore passes the store contract (memcached expires and cannot list keys)."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from urllib.parse import unquote

import pytest
from pymemcache.client.base import Client
from pymemcache.client.base import normalize_server_spec

from pyramid_sessionstore.stores.memcached import MemcachedStore
from pyramid_sessionstore.testing import PeekContract
from pyramid_sessionstore.testing import StoreContract
from pyramid_sessionstore.testing import UnavailableContract
from pyramid_sessionstore.testing import eventually
from pyramid_sessionstore.testing.contract import RawContentsContract
from servers import MEMCACHED_SERVERS
from servers import closed_port
from servers import ensure_server

pytestmark = pytest.mark.memcached


def metadump(server: str) -> bytes | None:
    """Return what ``lru_crawler metadump all`` lists, or None while another crawl runs."""
    host, port = server.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall(b"lru_crawler metadump all\r\n")
        dump = b""
        while not dump.endswith(b"END\r\n"):
            if dump.startswith(b"BUSY") and dump.endswith(b"\r\n"):
                return None
            if not (chunk := sock.recv(1 << 16)):
                raise ConnectionError(f"memcached at {server} closed the connection: {dump[:80]!r}")
            dump += chunk
    return dump


def names_on(server: str, prefix: str) -> set[str]:
    """Return the keys under *prefix* on *server*, read behind the store's back."""
    lines = eventually(lambda: metadump(server)).split(b"\n")  # key=<url-quoted> exp=...
    names = [unquote(line[4:].split(b" ", 1)[0].decode()) for line in lines]
    return {name[len(prefix) :] for name in names if name.startswith(prefix)}


class TestMemcachedStore(StoreContract, PeekContract, UnavailableContract, RawContentsContract):
    capabilities = frozenset({"peek"})
    accepts_large_records = False  # memcached's item limit (-I) is 1 MiB by default

    @pytest.fixture
    def store_factory(self) -> Callable[[str], MemcachedStore]:
        ensure_server("memcached", MEMCACHED_SERVERS, 11211)
        return lambda namespace: MemcachedStore(servers=MEMCACHED_SERVERS.split(), prefix=namespace)

    @pytest.fixture
    def raw_names(self) -> Callable[[MemcachedStore], set[str]]:
        return lambda store: set().union(*(names_on(s, store.prefix) for s in store.servers))

    @pytest.fixture
    def unavailable_store(self) -> MemcachedStore:
        return MemcachedStore(servers=[f"127.0.0.1:{closed_port()}"])

    # MemcachedStore's own: peek reads the value, CAS and time left, and touches nothing.

    def test_peek_keeps_the_time_left_and_deletes_another_value(
        self, store: MemcachedStore, key: Callable[[], str]
    ) -> None:
        k, foreign = key(), key()
        version = store.save(k, b"data", 600, None)
        client = Client(normalize_server_spec(store.servers[0]), default_noreply=False)
        try:
            client.touch(store.prefix + k, 5)  # as if saved long ago
            client.set(store.prefix + foreign, b"not ours", 600)
            peeked = store.peek(k)
            assert peeked is not None and peeked[0] == (b"data", version)
            assert peeked[1] is not None and peeked[1] <= time.time() + 6
            assert store.peek(foreign) is None
            assert client.get(store.prefix + foreign) is None
        finally:
            client.close()
