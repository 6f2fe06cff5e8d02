"""The subjects of ``make bench``, in table order: the bare app, then engine by engine.

Per engine: ours, the peers (each with its defaults, then, where its docs
offer a faster setting, tuned), and the floor. A subject's key is what
``--only``/``--skip`` take (``python -m bench.run --list``).
"""

from __future__ import annotations

from .features import with_features
from .subjects import BEAKER_TABLE
from .subjects import COOKIE_SECRET
from .subjects import SQL_TABLE
from .subjects import Subject
from .subjects import _bare
from .subjects import _beaker
from .subjects import _floor_memory
from .subjects import _floor_redis
from .subjects import _floor_sql
from .subjects import _ours
from .subjects import _redis_sessions
from .subjects import _session_redis
from .subjects import _signed_cookie

__all__ = ["lineup"]

#: What a tuned Beaker row changes (Beaker: "timeout requires save_accessed_time").
TUNED = "save_accessed_time=false (so no idle timeout)"


def _rows(engine: str, server: str | None, *subjects: Subject) -> list[Subject]:
    for subject in subjects:
        subject.engine, subject.server = engine, server
    return list(subjects)


def _beakers(engine: str, kind: str, label: str, **options: str) -> list[Subject]:
    """Beaker on *kind*, with its defaults and tuned."""
    key = f"beaker-{engine}"
    return [
        Subject(key, f"pyramid_beaker {label}", "", "peer", _beaker(kind, **options)),
        Subject(
            f"{key}-tuned",
            f"pyramid_beaker {label}, {TUNED}",
            "",
            "peer",
            _beaker(kind, tuned=True, **options),
        ),
    ]


def lineup() -> list[Subject]:
    """Return every subject."""
    rows = [
        Subject("bare", "bare app (no session factory)", "none", "bare", _bare),
        Subject(
            "bare-aa",
            "bare app, second copy (A/A noise check)",
            "none",
            "bare",
            _bare,
            note="the same app timed twice: its difference is the noise of this run",
        ),
    ]
    rows += _rows(
        "memory",
        None,
        Subject("ours-memory", "ours: memory", "", "ours", _ours("memory", {})),
        *_beakers("memory", "memory", "memory"),
        Subject(
            "floor-memory",
            "floor: a dict of JSON strings",
            "",
            "floor",
            _floor_memory,
            note="unsigned cookie, no expiry, no versions: the least a memory session costs",
            pair="ours-memory",
        ),
    )
    cookie = _ours("cookie", {"secret": COOKIE_SECRET})
    rows += _rows(
        "cookie",
        None,
        Subject("ours-cookie", "ours: cookie", "", "ours", cookie),
        Subject(
            "signedcookie", "Pyramid SignedCookieSessionFactory (JSON)", "", "peer", _signed_cookie
        ),
    )
    nofsync = {"path": "{workdir}/file-nofsync", "fsync": "false"}
    rows += _rows(
        "file",
        None,
        Subject("ours-file", "ours: file", "", "ours", _ours("file", {"path": "{workdir}/file"})),
        Subject(
            "ours-file-nofsync",
            "ours: file, fsync = false (Beaker does not fsync either)",
            "",
            "ours",
            _ours("file", nofsync),
        ),
        *_beakers("file", "file", "file", data_dir="{workdir}/beaker", lock_dir="{workdir}/bl"),
    )
    sqlite = _ours("sqlite", {"path": "{workdir}/sessions.sqlite"})
    rows += _rows("sqlite", None, Subject("ours-sqlite", "ours: sqlite", "", "ours", sqlite))
    rows += _rows(
        "redis",
        "redis",
        Subject(
            "ours-redis",
            "ours: redis",
            "",
            "ours",
            _ours("redis", {"url": "{redis}", "prefix": "bench:ours:"}),
        ),
        Subject("session-redis", "pyramid_session_redis (defaults)", "", "peer", _session_redis()),
        Subject(
            "session-redis-trigger",
            "pyramid_session_redis (timeout_trigger=600)",
            "",
            "peer",
            _session_redis(timeout_trigger=600),
        ),
        Subject("redis-sessions", "pyramid_redis_sessions", "", "peer", _redis_sessions),
        *_beakers("redis", "ext:redis", "ext:redis", url="{redis}"),
        Subject(
            "floor-redis",
            "floor: one kept redis-py Connection, GET / GET + SET EX",
            "",
            "floor",
            _floor_redis,
            note="no signing, no timestamps, no compare-and-set, on the lean connection path"
            " ours uses: the least a Redis session costs",
            pair="ours-redis",
        ),
    )
    for engine, key, label, driver in (
        ("postgresql", "ours-sql", "PostgreSQL", "psycopg.pq (libpq), prepared, binary"),
        ("mariadb", "ours-sql-mariadb", "MariaDB", "PyMySQL"),
    ):
        url = f"{{{engine}}}"
        rows += _rows(
            engine,
            engine,
            Subject(
                key,
                f"ours: sql ({label})",
                "",
                "ours",
                _ours("sql", {"url": url, "table": SQL_TABLE}),
            ),
            *_beakers(
                engine,
                "ext:database",
                f"ext:database ({label})",
                url=url,
                table_name=BEAKER_TABLE,
                lock_dir="{workdir}/beaker-sql-lock",
            ),
            Subject(
                f"floor-{engine}",
                f"floor: {driver} SELECT / SELECT + conditional UPDATE",
                "",
                "floor",
                _floor_sql(engine),
                note=f"the bare driver ({driver}, autocommit), the row shape of ours, no expiry"
                " refresh: the least a session on this engine costs",
                pair=key,
            ),
        )
    memcached = {"servers": "{memcached}", "prefix": "bench:"}
    rows += _rows(
        "memcached",
        "memcached",
        Subject("ours-memcached", "ours: memcached", "", "ours", _ours("memcached", memcached)),
        *_beakers(
            "memcached",
            "ext:memcached",
            "ext:memcached (python-memcached)",
            url="{memcached}",
            memcache_module="memcache",
        ),
    )
    return with_features(rows)
