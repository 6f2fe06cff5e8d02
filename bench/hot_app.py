"""The app and the subjects of the hot-session scenario (:mod:`bench.hot`).

Gunicorn serves :func:`served_app` (``bench.hot_app:served_app()``): one
session factory, chosen by ``BENCH_HOT_ROW``, behind four routes:

- ``/start`` creates a session holding one key;
- ``/set/{key}`` sets one key of it;
- ``/keys`` lists its keys;
- ``/whoami`` says which worker process answered (no session).

Every response names its worker process (header ``X-Bench-Worker``), and a
write of ours that lost compare-and-sets before it succeeded says how many
attempts it took (``X-Bench-Attempts``, from the ``SessionWriteConflict``
event; without the header a write took one). The peers have no such event:
they never retry.

This is not the app of ``make bench`` (:mod:`bench.app`): it is served over
HTTP by a multi-process server, and its only job is to show what concurrent
writers of one session leave behind.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .loadgen import PID_HEADER
from .loadgen import stop_after
from .subjects import Built
from .subjects import Context
from .subjects import _beaker
from .subjects import _ours
from .subjects import _session_redis
from .subjects import default_urls

__all__ = [
    "ATTEMPTS_HEADER",
    "HOT_TABLE",
    "ROWS",
    "WORKER_HEADER",
    "Row",
    "hot_urls",
    "make_hot_app",
    "served_app",
]

ATTEMPTS_HEADER = "X-Bench-Attempts"
WORKER_HEADER = PID_HEADER  # the load generator's: it pins connections by it
#: The SQL table ours keeps the hot sessions in (dropped before and after a run).
HOT_TABLE = "bench_hot"
#: Redis db 13 is this scenario's own (``make bench`` and ``make load`` empty db 14).
HOT_REDIS_URL = "redis://127.0.0.1:6379/13"


def hot_urls() -> dict[str, str]:
    """Return the servers' URLs; Redis is ``BENCH_HOT_REDIS_URL`` (db 13 by default)."""
    urls = default_urls()
    urls["redis"] = os.environ.get("BENCH_HOT_REDIS_URL", HOT_REDIS_URL)
    return urls


@dataclass(frozen=True)
class Row:
    """One session factory the writers hammer."""

    key: str
    label: str
    #: ours | peer.
    role: str
    #: Server it needs (a key of :data:`bench.subjects.SERVERS`), or None.
    server: str | None
    build: Callable[[Context], Built]
    note: str = ""


_REDIS = {"url": "{redis}", "prefix": "bench:hot:"}
_MEMCACHED = {"servers": "{memcached}", "prefix": "bench:hot:"}

ROWS: tuple[Row, ...] = (
    Row("ours-sqlite", "ours: sqlite", "ours", None, _ours("sqlite", {"path": "{workdir}/s.db"})),
    Row("ours-file", "ours: file", "ours", None, _ours("file", {"path": "{workdir}/sessions"})),
    Row("ours-redis", "ours: redis", "ours", "redis", _ours("redis", _REDIS)),
    Row(
        "ours-sql",
        "ours: sql (PostgreSQL)",
        "ours",
        "postgresql",
        _ours("sql", {"url": "{postgresql}", "table": HOT_TABLE}),
    ),
    Row(
        "ours-sql-mariadb",
        "ours: sql (MariaDB)",
        "ours",
        "mariadb",
        _ours("sql", {"url": "{mariadb}", "table": HOT_TABLE}),
    ),
    Row("ours-memcached", "ours: memcached", "ours", "memcached", _ours("memcached", _MEMCACHED)),
    Row("session-redis", "pyramid_session_redis", "peer", "redis", _session_redis()),
    Row(
        "beaker-memory",
        "pyramid_beaker memory",
        "peer",
        None,
        _beaker("memory"),
        note="each worker process has its own memory",
    ),
    Row(
        "beaker-file",
        "pyramid_beaker file",
        "peer",
        None,
        _beaker("file", data_dir="{workdir}/beaker", lock_dir="{workdir}/bl"),
    ),
    Row(
        "beaker-redis",
        "pyramid_beaker ext:redis",
        "peer",
        "redis",
        _beaker("ext:redis", url="{redis}"),
    ),
    Row(
        "beaker-memcached",
        "pyramid_beaker ext:memcached (python-memcached)",
        "peer",
        "memcached",
        _beaker("ext:memcached", url="{memcached}", memcache_module="memcache"),
    ),
)


def _on_conflict(event: Any) -> None:
    """Put the attempts a write of ours took on the response the view returned."""
    if event.request is not None:
        event.request.response.headers[ATTEMPTS_HEADER] = str(event.attempts)


def _answer(request: Any, body: str, content_type: str = "text/plain") -> Any:
    response = request.response  # the one _on_conflict writes into
    response.content_type = content_type
    response.text = body
    response.headers[WORKER_HEADER] = str(os.getpid())
    return response


def make_hot_app(factory: Any) -> Any:
    """Return the WSGI app of the scenario, with session *factory*."""
    from pyramid.config import Configurator

    from pyramid_sessionstore.events import SessionWriteConflict

    def start(request: Any) -> Any:
        request.session["base"] = 0
        return _answer(request, "ok")

    def set_key(request: Any) -> Any:
        request.session[request.matchdict["key"]] = 1
        return _answer(request, "ok")

    def keys(request: Any) -> Any:
        return _answer(request, json.dumps(sorted(request.session.keys())), "application/json")

    def whoami(request: Any) -> Any:
        return _answer(request, str(os.getpid()))

    config = Configurator()
    config.set_session_factory(factory)
    config.add_subscriber(_on_conflict, SessionWriteConflict)
    for name, pattern, view in (
        ("start", "/start", start),
        ("set", "/set/{key}", set_key),
        ("keys", "/keys", keys),
        ("whoami", "/whoami", whoami),
    ):
        config.add_route(name, pattern)
        config.add_view(view, route_name=name)
    return config.make_wsgi_app()


def served_app() -> Any:
    """Return the app gunicorn serves, for the row named by ``BENCH_HOT_ROW``.

    Called in gunicorn's master (``--preload``); it arms a watchdog there, so
    the server ends by itself after ``BENCH_HOT_MAX_SECONDS`` if the benchmark
    dies or hangs (the workers follow their master).
    """
    logging.basicConfig(level=logging.ERROR)
    stop_after(float(os.environ["BENCH_HOT_MAX_SECONDS"]))
    row = {r.key: r for r in ROWS}[os.environ["BENCH_HOT_ROW"]]
    made = row.build(Context(os.environ["BENCH_HOT_WORKDIR"], hot_urls()))
    return make_hot_app(made.factory)
