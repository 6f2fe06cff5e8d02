"""Build each store for the functional tests, isolated by a fresh namespace."""

from __future__ import annotations

import importlib.util
import uuid
from pathlib import Path
from typing import Any

import pytest

from servers import MEMCACHED_SERVERS
from servers import MYSQL_URL
from servers import POSTGRES_URL
from servers import REDIS_URL
from servers import ensure_server

#: Every store the functional tests run against; "cookie" keeps sessions client-side.
STORE_KINDS = [
    "memory",
    "sqlite",
    "file",
    "redis",
    "postgresql",
    "mariadb",
    "memcached",
    "chain",
    "cookie",
]
SERVER_SIDE_KINDS = [kind for kind in STORE_KINDS if kind != "cookie"]

_MARKS = {
    "redis": pytest.mark.redis,
    "postgresql": pytest.mark.sql,
    "mariadb": pytest.mark.sql,
    "memcached": pytest.mark.memcached,
}


def params(kinds: list[str]) -> list[Any]:
    """Return pytest params for *kinds*, with the server markers."""
    return [pytest.param(k, marks=[_MARKS[k]] if k in _MARKS else [], id=k) for k in kinds]


def _module_exists(name: str) -> bool:
    return importlib.util.find_spec(f"pyramid_sessionstore.stores.{name}") is not None


def build(kind: str, tmp_path: Path) -> Any:
    """Return a new, empty store of *kind*; skip (or fail) when its server is down."""
    ns = f"ft{uuid.uuid4().hex[:10]}"
    module = {"postgresql": "sql", "mariadb": "sql"}.get(kind, kind)
    if not _module_exists(module):
        pytest.fail(f"store module pyramid_sessionstore.stores.{module} is missing")
    if kind == "memory":
        from pyramid_sessionstore.stores import MemoryStore

        return MemoryStore()
    if kind == "sqlite":
        from pyramid_sessionstore.stores import SQLiteStore

        return SQLiteStore(path=str(tmp_path / "sessions.sqlite"))
    if kind == "file":
        from pyramid_sessionstore.stores import FileStore

        return FileStore(path=str(tmp_path / "sessions"))
    if kind == "redis":
        from pyramid_sessionstore.stores import RedisStore

        ensure_server("redis", REDIS_URL, 6379)
        return RedisStore(url=REDIS_URL, prefix=f"{ns}:")
    if kind in ("postgresql", "mariadb"):
        from pyramid_sessionstore.stores import SQLStore

        url = POSTGRES_URL if kind == "postgresql" else MYSQL_URL
        if kind == "postgresql":
            ensure_server("postgresql", url, 5432)
        else:
            ensure_server("mysql", url, 3306)
        return SQLStore(url=url, table=ns)
    if kind == "memcached":
        from pyramid_sessionstore.stores import MemcachedStore

        ensure_server("memcached", MEMCACHED_SERVERS, 11211)
        return MemcachedStore(servers=MEMCACHED_SERVERS.split(), prefix=f"{ns}:")
    if kind == "chain":
        from pyramid_sessionstore.stores import ChainStore
        from pyramid_sessionstore.stores import MemoryStore
        from pyramid_sessionstore.stores import SQLiteStore

        return ChainStore(stores=[MemoryStore(), SQLiteStore(path=str(tmp_path / "chain.sqlite"))])
    if kind == "cookie":
        from pyramid_sessionstore.stores import CookieStore

        return CookieStore(secret="tests-cookie-secret-" + "Rt5yH8pW" * 6)
    raise AssertionError(kind)


def drop(kind: str, store: Any) -> None:
    """Close *store* and remove what the test created on a server."""
    if kind == "redis":  # user indexes have no TTL: leave nothing behind
        for key in list(store.keys()):
            store.delete(key)
    engine = getattr(store, "engine", None)
    table = getattr(store, "table", None)
    store.close()  # first: it gives its kept connections back to the pool
    if kind in ("postgresql", "mariadb") and engine is not None and table is not None:
        table.drop(engine, checkfirst=True)
        engine.dispose()
