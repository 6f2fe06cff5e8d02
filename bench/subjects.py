"""What is timed: the bare app, the peers, the Redis floor, and ours on every store.

Each :class:`Subject` knows how to build its session factory. Ours is built
from settings (``session_factory_from_settings``), the way an application
configures it, and is included automatically when its store module exists
and its server answers. A peer that cannot be imported or built is reported
as broken, never a crash.

Every subject uses a 1200 s idle timeout (the default of ours, of Pyramid's
``SignedCookieSessionFactory`` and of ``pyramid_session_redis``; Beaker has
no default, so it is given the same) and the cookie name ``session``.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
import secrets
import socket
from collections.abc import Callable
from dataclasses import dataclass
from dataclasses import field
from typing import Any
from urllib.parse import urlsplit

__all__ = [
    "MEMCACHED_SERVER",
    "POSTGRES_URL",
    "REDIS_URL",
    "SECRET",
    "Built",
    "Subject",
    "Unavailable",
    "all_subjects",
]

#: Redis db 14 is the benchmarks' own: it is emptied before and after a run.
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/14")
POSTGRES_URL = os.environ.get(
    "BENCH_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
MEMCACHED_SERVER = os.environ.get("BENCH_MEMCACHED", "127.0.0.1:11211")
#: The table our SQL store keeps benchmark sessions in (dropped afterwards).
SQL_TABLE = "bench_sessions"

SECRET = "bench-secret-" + "0123456789abcdef" * 4
#: The cookie store's own encryption secret.
COOKIE_SECRET = "bench-cookie-" + "fedcba9876543210" * 4
TIMEOUT = 1200


class Unavailable(Exception):
    """The subject cannot run here (no module yet, server down): skipped, not broken."""


@dataclass
class Built:
    """A ready session factory (None for the bare app) and how to release it."""

    factory: Any | None
    cookie_name: str = "session"
    close: Callable[[], None] = lambda: None
    #: Settings or options it was built with, for the report.
    config: dict[str, Any] = field(default_factory=dict)


@dataclass
class Subject:
    """One session factory under test."""

    #: Short id, used on the command line (``--only``).
    key: str
    #: Name in the tables.
    label: str
    #: What keeps the sessions: none, memory, cookie, file, sqlite, redis, postgresql, memcached.
    engine: str
    #: bare | ours | peer | floor.
    role: str
    build: Callable[[str], Built]
    #: Server it needs (redis, postgresql, memcached), checked before building.
    server: str | None = None
    note: str = ""


# -- servers --------------------------------------------------------------------


def _host_port(url: str, default_port: int) -> tuple[str, int]:
    parts = urlsplit(url if "//" in url else f"tcp://{url}")
    return parts.hostname or "127.0.0.1", parts.port or default_port


def server_address(kind: str) -> tuple[str, int]:
    """Return (host, port) of the benchmark server of *kind*."""
    if kind == "redis":
        return _host_port(REDIS_URL, 6379)
    if kind == "postgresql":
        return _host_port(POSTGRES_URL, 5432)
    return _host_port(MEMCACHED_SERVER, 11211)


def server_reachable(kind: str) -> bool:
    """Return whether the server of *kind* accepts a TCP connection."""
    try:
        with socket.create_connection(server_address(kind), timeout=1.0):
            return True
    except OSError:
        return False


# -- ours -----------------------------------------------------------------------


def _ours(store: str, wanted: dict[str, str], **factory: str) -> Callable[[str], Built]:
    """Build our factory on *store* from settings; *wanted* store options are filtered.

    The stores are being written while this harness is: options a store does
    not (yet) declare are left out rather than failing the build.
    """

    def build(workdir: str) -> Built:
        module = f"pyramid_sessionstore.stores.{store}"
        if importlib.util.find_spec(module) is None:
            raise Unavailable(f"no module {module} yet")
        from pyramid_sessionstore import session_factory_from_settings
        from pyramid_sessionstore.stores.registry import resolve_store

        cls = resolve_store(store)
        declared = getattr(cls, "OPTIONS", {})
        settings: dict[str, str] = {"session.secret": SECRET, "session.store": store}
        settings.update({f"session.{k}": v for k, v in factory.items()})
        for option, value in wanted.items():
            if option in declared:
                settings[f"session.{store}.{option}"] = value.format(workdir=workdir)
        made = session_factory_from_settings(settings)
        shown = {k: v for k, v in settings.items() if k != "session.secret"}
        return Built(made, made.cookie_name, made.store.close, shown)

    return build


# -- peers ----------------------------------------------------------------------


def _bare(workdir: str) -> Built:
    return Built(None)


def _signed_cookie(workdir: str) -> Built:
    from pyramid.session import JSONSerializer
    from pyramid.session import SignedCookieSessionFactory

    factory = SignedCookieSessionFactory(SECRET, cookie_name="session", serializer=JSONSerializer())
    return Built(factory, "session", config={"serializer": "JSONSerializer", "timeout": 1200})


def _session_redis(**options: Any) -> Callable[[str], Built]:
    def build(workdir: str) -> Built:
        from pyramid_session_redis import RedisSessionFactory

        factory = RedisSessionFactory(SECRET, redis_url=REDIS_URL, **options)
        return Built(factory, "session", config={"redis_url": REDIS_URL, **options})

    return build


def _redis_sessions(workdir: str) -> Built:
    module = importlib.import_module("pyramid_redis_sessions")
    factory = module.RedisSessionFactory(SECRET, url=REDIS_URL, timeout=TIMEOUT)
    return Built(factory, "session", config={"url": REDIS_URL, "timeout": TIMEOUT})


def _beaker(kind: str, **options: str) -> Callable[[str], Built]:
    def build(workdir: str) -> Built:
        from pyramid_beaker import session_factory_from_settings

        settings = {
            "session.type": kind,
            "session.key": "session",
            "session.secret": SECRET,
            "session.timeout": str(TIMEOUT),
        }
        settings.update({f"session.{k}": v.format(workdir=workdir) for k, v in options.items()})
        factory = session_factory_from_settings(settings)
        shown = {k: v for k, v in settings.items() if k != "session.secret"}
        return Built(factory, "session", config=shown)

    return build


class _FloorSession(dict[str, Any]):
    """The least a Redis session can do: a dict, GET on load, SET EX when changed."""

    def __init__(self, key: str | None, data: dict[str, Any]) -> None:
        super().__init__(data)
        self.key = key
        self.dirty = False

    def __setitem__(self, key: str, value: Any) -> None:
        super().__setitem__(key, value)
        self.dirty = True


def _floor(workdir: str) -> Built:
    import redis

    client = redis.Redis.from_url(REDIS_URL)

    def factory(request: Any) -> _FloorSession:
        key = request.cookies.get("session")
        raw = client.get(f"bench:floor:{key}") if key else None
        session = _FloorSession(key if raw is not None else None, json.loads(raw) if raw else {})
        request.add_response_callback(lambda request, response: _floor_save(session, response))
        return session

    def _floor_save(session: _FloorSession, response: Any) -> None:
        if not session.dirty:
            return
        if session.key is None:
            session.key = secrets.token_hex(32)
            response.set_cookie("session", session.key, httponly=True, samesite="Lax")
        client.set(f"bench:floor:{session.key}", json.dumps(session), ex=TIMEOUT)

    return Built(factory, "session", client.close, {"redis_url": REDIS_URL})


def _floor_memory(workdir: str) -> Built:
    records: dict[str, str] = {}

    def factory(request: Any) -> _FloorSession:
        key = request.cookies.get("session")
        raw = records.get(key) if key else None
        session = _FloorSession(key if raw is not None else None, json.loads(raw) if raw else {})
        request.add_response_callback(lambda request, response: _save(session, response))
        return session

    def _save(session: _FloorSession, response: Any) -> None:
        if not session.dirty:
            return
        if session.key is None:
            session.key = secrets.token_hex(32)
            response.set_cookie("session", session.key, httponly=True, samesite="Lax")
        records[session.key] = json.dumps(session)

    return Built(factory, "session", config={"records": "a dict of JSON strings"})


# -- the list -------------------------------------------------------------------


def all_subjects() -> list[Subject]:
    """Return every subject, in table order (bare first, then by engine)."""
    pg = {"url": POSTGRES_URL, "table": SQL_TABLE}
    return [
        Subject("bare", "bare app (no session factory)", "none", "bare", _bare),
        Subject(
            "bare-aa",
            "bare app, second copy (A/A noise check)",
            "none",
            "bare",
            _bare,
            note="the same app timed twice: its difference is the noise of this run",
        ),
        Subject("ours-memory", "ours: memory", "memory", "ours", _ours("memory", {})),
        Subject("beaker-memory", "pyramid_beaker memory", "memory", "peer", _beaker("memory")),
        Subject(
            "floor-memory",
            "floor: a dict of JSON strings",
            "memory",
            "floor",
            _floor_memory,
            note="unsigned cookie, no expiry, no versions: the least a memory session costs",
        ),
        Subject(
            "ours-cookie",
            "ours: cookie",
            "cookie",
            "ours",
            _ours("cookie", {"secret": COOKIE_SECRET}),
        ),
        Subject(
            "signedcookie",
            "Pyramid SignedCookieSessionFactory (JSON)",
            "cookie",
            "peer",
            _signed_cookie,
        ),
        Subject(
            "ours-file", "ours: file", "file", "ours", _ours("file", {"path": "{workdir}/file"})
        ),
        Subject(
            "ours-file-nofsync",
            "ours: file, fsync = false (Beaker does not fsync either)",
            "file",
            "ours",
            _ours("file", {"path": "{workdir}/file-nofsync", "fsync": "false"}),
        ),
        Subject(
            "beaker-file",
            "pyramid_beaker file",
            "file",
            "peer",
            _beaker("file", data_dir="{workdir}/beaker", lock_dir="{workdir}/beaker-lock"),
        ),
        Subject(
            "ours-sqlite",
            "ours: sqlite",
            "sqlite",
            "ours",
            _ours("sqlite", {"path": "{workdir}/sessions.sqlite"}),
        ),
        Subject(
            "ours-redis",
            "ours: redis",
            "redis",
            "ours",
            _ours("redis", {"url": REDIS_URL, "prefix": "bench:ours:"}),
            server="redis",
        ),
        Subject(
            "session-redis",
            "pyramid_session_redis (defaults)",
            "redis",
            "peer",
            _session_redis(),
            server="redis",
        ),
        Subject(
            "session-redis-trigger",
            "pyramid_session_redis (timeout_trigger=600)",
            "redis",
            "peer",
            _session_redis(timeout_trigger=600),
            server="redis",
        ),
        Subject(
            "redis-sessions",
            "pyramid_redis_sessions",
            "redis",
            "peer",
            _redis_sessions,
            server="redis",
        ),
        Subject(
            "beaker-redis",
            "pyramid_beaker ext:redis",
            "redis",
            "peer",
            _beaker("ext:redis", url=REDIS_URL),
            server="redis",
        ),
        Subject(
            "floor-redis",
            "floor: redis-py GET / GET+SET EX",
            "redis",
            "floor",
            _floor,
            server="redis",
            note="no signing, no timestamps, no compare-and-set: the least a Redis session costs",
        ),
        Subject(
            "ours-sql",
            "ours: sql (PostgreSQL)",
            "postgresql",
            "ours",
            _ours("sql", pg),
            server="postgresql",
        ),
        Subject(
            "ours-memcached",
            "ours: memcached",
            "memcached",
            "ours",
            _ours("memcached", {"servers": MEMCACHED_SERVER, "prefix": "bench:"}),
            server="memcached",
        ),
        Subject(
            "beaker-memcached",
            "pyramid_beaker ext:memcached (python-memcached)",
            "memcached",
            "peer",
            _beaker("ext:memcached", url=MEMCACHED_SERVER, memcache_module="memcache"),
            server="memcached",
        ),
    ]
