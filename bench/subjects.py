"""What is timed: the bare app, the peers, the floors, and ours on every store.

Each :class:`Subject` knows how to build its session factory for a
:class:`Context` (a work directory, the servers' URLs, the benchmark's clock).
Ours is built from settings (``session_factory_from_settings``), the way an
application configures it, and is included automatically when its store
module exists and its server answers. A peer that cannot be imported or built
is reported as broken, never a crash.

Every subject uses a 1200 s idle timeout (the default of ours, of Pyramid's
``SignedCookieSessionFactory`` and of ``pyramid_session_redis``; Beaker has
no default, so it is given the same) and the cookie name ``session``, except
the "tuned" Beaker rows: Beaker refuses an idle timeout without saving the
access time on every request, so its faster setting comes without one.

The clock: stores that take a ``clock=`` (memory, file, SQLite, cookie, and
SQL, which otherwise reads the database's clock) are built with the
benchmark's, so the time the harness moves reaches their expiry logic as it
reaches every library that calls ``time.time()``.

A floor is the least a session on that engine can cost: the same requests
made by a few lines on the driver itself (no signing, no versions beyond what
a conditional write needs), so "ours takes 1.3x the floor" says how close the
library comes to its engine.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import os
import socket
from collections.abc import Callable
from collections.abc import Iterator
from dataclasses import dataclass
from dataclasses import field
from typing import Any
from urllib.parse import urlsplit

__all__ = [
    "BEAKER_TABLE",
    "reset_servers",
    "server_address",
    "server_reachable",
    "FLOOR_TABLE",
    "SECRET",
    "SERVERS",
    "SQL_TABLE",
    "Built",
    "Context",
    "Subject",
    "Unavailable",
    "all_subjects",
    "default_urls",
]

#: Per server kind: the environment variable, the default URL, the wire protocol
#: (for counting, see :mod:`bench.wire`) and the default port.
SERVERS: dict[str, tuple[str, str, str, int]] = {
    # Redis db 14 is the benchmarks' own: it is emptied before and after a run.
    "redis": ("BENCH_REDIS_URL", "redis://127.0.0.1:6379/14", "redis", 6379),
    "postgresql": (
        "BENCH_POSTGRES_URL",
        "postgresql+psycopg://postgres@127.0.0.1:5432/test",
        "postgresql",
        5432,
    ),
    "mariadb": (
        "BENCH_MARIADB_URL",
        "mysql+pymysql://root@127.0.0.1:3306/test",
        "mysql",
        3306,
    ),
    "memcached": ("BENCH_MEMCACHED", "127.0.0.1:11211", "memcached", 11211),
}
#: Tables the benchmark keeps sessions in (dropped before and after a run).
SQL_TABLE = "bench_sessions"
FLOOR_TABLE = "bench_floor"
BEAKER_TABLE = "bench_beaker"

SECRET = "bench-secret-" + "0123456789abcdef" * 4
#: The cookie store's own encryption secret.
COOKIE_SECRET = "bench-cookie-" + "fedcba9876543210" * 4
TIMEOUT = 1200


def default_urls() -> dict[str, str]:
    """Return each server's URL (``host:port`` for memcached), from the environment."""
    return {kind: os.environ.get(env, url) for kind, (env, url, _, _) in SERVERS.items()}


@dataclass
class Context:
    """Where a subject is built: its work directory, the servers, the clock."""

    workdir: str
    #: Server kind -> URL (the counting passes point these at :mod:`bench.wire` proxies).
    urls: dict[str, str] = field(default_factory=default_urls)
    #: The benchmark's clock, for stores that take ``clock=`` (None: their default).
    clock: Callable[[], float] | None = None

    def format(self, value: str) -> str:
        """Fill ``{workdir}`` and ``{<server kind>}`` placeholders in *value*."""
        return value.format(workdir=self.workdir, **self.urls)


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
    #: ``(subscriber, event type)`` pairs the app registers (``config.add_subscriber``).
    subscribers: tuple[tuple[Callable[[Any], None], type], ...] = ()


@dataclass
class Subject:
    """One session factory under test."""

    #: Short id, used on the command line (``--only``).
    key: str
    #: Name in the tables.
    label: str
    #: What keeps the sessions: none, memory, cookie, file, sqlite, redis, postgresql, memcached.
    engine: str
    #: bare | ours | peer | floor | variant (ours with the app changed, not the store).
    role: str
    build: Callable[[Context], Built]
    #: Server it needs (a key of :data:`SERVERS`), checked before building.
    server: str | None = None
    note: str = ""
    #: For a floor: the subject of ours it is the floor of.
    pair: str = ""


# -- servers --------------------------------------------------------------------


def server_address(kind: str, urls: dict[str, str] | None = None) -> tuple[str, int]:
    """Return (host, port) of the benchmark server of *kind*."""
    url = (urls or default_urls())[kind]
    parts = urlsplit(url if "//" in url else f"tcp://{url}")
    return parts.hostname or "127.0.0.1", parts.port or SERVERS[kind][3]


def server_reachable(kind: str) -> bool:
    """Return whether the server of *kind* accepts a TCP connection."""
    try:
        with socket.create_connection(server_address(kind), timeout=1.0):
            return True
    except OSError:
        return False


def reset_servers(kinds: set[str], urls: dict[str, str] | None = None) -> list[str]:
    """Empty the benchmark's Redis db, drop its SQL tables, delete its memcached keys
    (:mod:`bench.mcclean`); return what failed."""
    urls = urls or default_urls()
    failed = []
    for kind in sorted(kinds):
        try:
            if kind == "redis":
                import redis

                client = redis.Redis.from_url(urls[kind])
                try:
                    client.flushdb()
                finally:
                    client.close()
            elif kind in ("postgresql", "mariadb"):
                import sqlalchemy as sa

                engine = sa.create_engine(urls[kind], isolation_level="AUTOCOMMIT")
                try:
                    with engine.connect() as conn:
                        for table in (SQL_TABLE, FLOOR_TABLE, BEAKER_TABLE):
                            conn.execute(sa.text(f"DROP TABLE IF EXISTS {table}"))
                finally:
                    engine.dispose()
            elif kind == "memcached":
                from .mcclean import clean_memcached

                clean_memcached(urls[kind])
        except Exception as err:  # noqa: BLE001 - report, keep cleaning the others
            failed.append(f"cleanup of {kind} failed: {type(err).__name__}: {err}")
    return failed


# -- ours -----------------------------------------------------------------------


def _ours(store: str, wanted: dict[str, str], **factory: str) -> Callable[[Context], Built]:
    """Build our factory on *store* from settings; *wanted* store options are filtered.

    The stores are being written while this harness is: options a store does
    not (yet) declare are left out rather than failing the build.
    """

    def build(ctx: Context) -> Built:
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
                settings[f"session.{store}.{option}"] = ctx.format(value)
        with _clock_default(cls, ctx.clock):
            made = session_factory_from_settings(settings)
        shown = {k: v for k, v in settings.items() if k != "session.secret"}
        if ctx.clock is not None and "clock" in _kwdefaults(cls):
            shown["clock="] = "the benchmark's (code only)"
        return Built(made, made.cookie_name, made.store.close, shown)

    return build


def _kwdefaults(cls: type[Any]) -> dict[str, Any]:
    defaults: dict[str, Any] | None = getattr(cls.__init__, "__kwdefaults__", None)
    return defaults if defaults is not None else {}


@contextlib.contextmanager
def _clock_default(cls: type[Any], clock: Callable[[], float] | None) -> Iterator[None]:
    """Make *clock* the default of ``cls(clock=...)`` while the factory builds it.

    Settings cannot carry a function, and the store keeps the function it is
    given (``time.time`` as imported), so patching ``time.time`` later would
    not reach it.
    """
    defaults = _kwdefaults(cls)
    if clock is None or "clock" not in defaults:
        yield
        return
    saved = defaults["clock"]
    defaults["clock"] = clock
    try:
        yield
    finally:
        defaults["clock"] = saved


# -- peers ----------------------------------------------------------------------


def _bare(ctx: Context) -> Built:
    return Built(None)


def _signed_cookie(ctx: Context) -> Built:
    from pyramid.session import JSONSerializer
    from pyramid.session import SignedCookieSessionFactory

    factory = SignedCookieSessionFactory(SECRET, cookie_name="session", serializer=JSONSerializer())
    return Built(factory, "session", config={"serializer": "JSONSerializer", "timeout": 1200})


def _session_redis(**options: Any) -> Callable[[Context], Built]:
    def build(ctx: Context) -> Built:
        from pyramid_session_redis import RedisSessionFactory

        url = ctx.urls["redis"]
        factory = RedisSessionFactory(SECRET, redis_url=url, **options)
        return Built(factory, "session", config={"redis_url": url, **options})

    return build


def _redis_sessions(ctx: Context) -> Built:
    module = importlib.import_module("pyramid_redis_sessions")
    url = ctx.urls["redis"]
    factory = module.RedisSessionFactory(SECRET, url=url, timeout=TIMEOUT)
    return Built(factory, "session", config={"url": url, "timeout": TIMEOUT})


def _beaker(kind: str, tuned: bool = False, **options: str) -> Callable[[Context], Built]:
    """Build pyramid_beaker's factory; *tuned*: without saving the access time per read."""

    def build(ctx: Context) -> Built:
        from pyramid_beaker import session_factory_from_settings

        settings = {"session.type": kind, "session.key": "session", "session.secret": SECRET}
        if tuned:  # Beaker: "timeout requires save_accessed_time"
            settings["session.save_accessed_time"] = "false"
        else:
            settings["session.timeout"] = str(TIMEOUT)
        settings.update({f"session.{k}": ctx.format(v) for k, v in options.items()})
        factory = session_factory_from_settings(settings)
        shown = {k: v for k, v in settings.items() if k != "session.secret"}
        return Built(factory, "session", config=shown)

    return build


def _floor_memory(ctx: Context) -> Built:
    from .floors import memory_floor

    return Built(memory_floor(), "session", config={"records": "a dict of JSON strings"})


def _floor_redis(ctx: Context) -> Built:
    from .floors import redis_floor

    factory, close = redis_floor(ctx.urls["redis"])
    config = {"redis_url": ctx.urls["redis"], "path": "one kept redis-py Connection"}
    return Built(factory, "session", close, config)


def _floor_sql(kind: str) -> Callable[[Context], Built]:
    def build(ctx: Context) -> Built:
        from .floors import RawSQL

        raw = RawSQL(kind, ctx.urls[kind], FLOOR_TABLE)
        raw.ensure()  # reset_servers drops it before and after the run

        driver = "psycopg, prepared" if kind == "postgresql" else "PyMySQL"
        config = {"url": ctx.urls[kind], "table": FLOOR_TABLE, "driver": driver}
        return Built(raw.session_factory(), "session", raw.close, config)

    return build


# -- the list -------------------------------------------------------------------


def all_subjects() -> list[Subject]:
    """Return every subject, in table order (bare first, then by engine)."""
    from .lineup import lineup

    return lineup()
