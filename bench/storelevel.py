"""Store level: SQLStore and RedisStore next to their bare drivers, paired.

No Pyramid, no cookies, no serializer: ``SQLStore.load`` against the bare
driver's read of the same row shape (one prepared ``SELECT data, version,
expires_at … WHERE key = %s AND (live)`` by the database's clock), and
``SQLStore.save`` of a loaded record against the driver's conditional
``UPDATE … WHERE key = %s AND version = %s`` (:class:`bench.floors.RawSQL`),
and ``SQLStore.touch`` (the ``UPDATE`` an expiry refresh sends) against the
driver's ``UPDATE … SET expires_at`` of the same shape: no target, it says
what a refresh costs; on PostgreSQL also against that ``UPDATE`` committed
with ``synchronous_commit = off`` (which no store uses), to show how much of
a write is the WAL flush at commit.
On PostgreSQL the driver runs both ways: on the lean path ours takes
(libpq through ``psycopg.pq``: the floor) and through psycopg's cursor (what
the issue measured). The store runs as configured by default (the
database's clock, its kept connections), with a pool of one connection,
which the bare driver shares: both talk to the same server process (on two
connections, the scheduler's placing of two server processes on the 2
cores alone moved a round trip between about 20 and 60 µs). The
``synchronous_commit = off`` row has a connection of its own. Redis: see
:func:`measure_redis`. In each round a batch of each runs,
in rotating order; a ratio is the median over rounds of the ratio within a
round, so drift of the shared machine cancels.
"""

from __future__ import annotations

import secrets
import statistics
import time
from collections.abc import Callable
from typing import Any

from .floors import RawSQL
from .report import fmt_us
from .report import md_table

__all__ = ["TARGETS", "measure", "render"]

#: The most each store operation may cost, as a multiple of the bare driver's.
TARGETS = {"load": 1.5, "save": 1.3}
TABLE, RAW_TABLE = "bench_store_level", "bench_store_level_raw"
DATA = b"x" * 150  # a session row of 150 bytes


def _batch(call: Callable[[], Any], n: int) -> float:
    start = time.perf_counter_ns()
    for _ in range(n):
        call()
    return (time.perf_counter_ns() - start) / n / 1000


def _paired(
    raws: dict[str, Callable[[], Any]], ours: Callable[[], Any], n: int, rounds: int
) -> dict[str, Any]:
    """Time *ours* and each of *raws* in every round, in rotating order; pair the ratios."""
    subjects = {**raws, "ours": ours}
    times: dict[str, list[float]] = {name: [] for name in subjects}
    names = list(subjects)
    for round_no in range(rounds):
        shift = round_no % len(names)
        for name in names[shift:] + names[:shift]:
            times[name].append(_batch(subjects[name], n))
    result: dict[str, Any] = {"ours_us": statistics.median(times["ours"]), "versus": {}}
    for name in raws:
        ratios = [b / a for a, b in zip(times[name], times["ours"], strict=True)]
        quartiles = statistics.quantiles(ratios, n=4) if len(ratios) > 1 else ratios * 3
        result["versus"][name] = {
            "raw_us": statistics.median(times[name]),
            "ratio": statistics.median(ratios),
            "ratio_q1": quartiles[0],
            "ratio_q3": quartiles[2],
        }
    return result


def measure_engine(kind: str, url: str, rounds: int, reads: int, writes: int) -> dict[str, Any]:
    """Return the paired numbers of one engine (*kind*: postgresql or mariadb)."""
    from pyramid_sessionstore.stores import SQLStore

    # One connection at most: the store keeps it, and the bare driver runs on the
    # same one, so both talk to the same server process. (On two connections the
    # two server processes may sit on different cores, and a loopback round trip
    # then costs 20 or 60 µs by where the scheduler put them, not by the code.)
    store = SQLStore(url=url, table=TABLE, pool_size=1, max_overflow=0)
    store.save(secrets.token_hex(32), DATA, 1200, None)  # the table made, a connection kept
    raw = RawSQL(kind, url, RAW_TABLE, conn=store._conns._idle[-1][0].driver_connection)
    raw.create()
    unflushed = RawSQL(kind, url, RAW_TABLE) if kind == "postgresql" else None
    try:
        key, raw_key = secrets.token_hex(32), secrets.token_hex(32)
        versions = [store.save(key, DATA, 1200, None)]
        raw_versions = [secrets.token_hex(16)]
        raw.insert(raw_key, DATA, raw_versions[0])

        def save() -> None:
            versions.append(store.save(key, DATA, 1200, versions.pop()))

        def update() -> None:
            new = secrets.token_hex(16)
            if not raw.update(raw_key, DATA, raw_versions.pop(), new):
                raise RuntimeError("the raw conditional UPDATE lost")
            raw_versions.append(new)

        for _ in range(3):  # connections made, statements prepared
            _batch(lambda: store.load(key, 1200), 20)
            _batch(lambda: raw.read(raw_key), 20)
            if kind == "postgresql":
                _batch(lambda: raw.read_cursor(raw_key), 20)
            save()
            update()
        reads_raw: dict[str, Callable[[], Any]] = {"lean": lambda: raw.read(raw_key)}
        updates_raw: dict[str, Callable[[], Any]] = {"lean": update}
        if kind == "postgresql":  # the cursor path too, the one the issue measured

            def update_cursor() -> None:
                new = secrets.token_hex(16)
                if not raw.update_cursor(raw_key, DATA, raw_versions.pop(), new):
                    raise RuntimeError("the raw conditional UPDATE lost")
                raw_versions.append(new)

            reads_raw["cursor"] = lambda: raw.read_cursor(raw_key)
            updates_raw["cursor"] = update_cursor
        touches_raw: dict[str, Callable[[], Any]] = {"lean": lambda: raw.touch(raw_key)}
        if unflushed is not None:
            unflushed.skip_commit_flush()
            touches_raw["unflushed"] = lambda: unflushed.touch(raw_key)
        for touch in touches_raw.values():
            _batch(touch, 5)
        return {
            "load": _paired(reads_raw, lambda: store.load(key, 1200), reads, rounds),
            "save": _paired(updates_raw, save, writes, rounds),
            "touch": _paired(touches_raw, lambda: store.touch(key, 1200), writes, rounds),
            "rounds": rounds,
            "batch": {"load": reads, "save": writes},
        }
    finally:
        raw.drop()  # on the store's connection: before the store closes it
        raw.close()
        if unflushed is not None:
            unflushed.close()
        store.close()
        store.table.drop(store.engine, checkfirst=True)
        store.engine.dispose()


def measure_redis(url: str, rounds: int, reads: int, writes: int) -> dict[str, Any]:
    """``RedisStore.load`` and ``save`` next to a bare ``GET`` and ``SET … EX``, paired.

    The bare commands go over the store's own kept connection (one redis-py
    ``Connection``, no client wrapper). ``SET … EX`` is what a store without a
    compare-and-set sends (pyramid_session_redis); ``save`` is the
    compare-and-set script, so the difference is what keeping concurrent
    writes costs. A key of ``bench:`` prefix holds the bare value.
    """
    from pyramid_sessionstore.stores import RedisStore

    store = RedisStore(url=url)
    key, raw_key = secrets.token_hex(32), f"bench:storelevel:{secrets.token_hex(16)}"
    versions = [store.save(key, DATA, 1200, None)]
    store.load(key, 1200)  # the store keeps its connection: the bare commands use it too
    conn = store._commands._idle[-1]  # type: ignore[union-attr]

    def command(*args: Any) -> Any:
        conn.send_command(*args)
        return conn.read_response()

    def save() -> None:
        versions.append(store.save(key, DATA, 1200, versions.pop()))

    try:
        command("SET", raw_key, DATA, "EX", 1200)
        for _ in range(3):
            _batch(lambda: store.load(key, 1200), 20)
            _batch(lambda: command("GET", raw_key), 20)
            _batch(save, 5)
            _batch(lambda: command("SET", raw_key, DATA, "EX", 1200), 5)
        get = {"lean": lambda: command("GET", raw_key)}
        set_ex = {"lean": lambda: command("SET", raw_key, DATA, "EX", 1200)}
        return {
            "load": _paired(get, lambda: store.load(key, 1200), reads, rounds),
            "save": _paired(set_ex, save, writes, rounds),
            "rounds": rounds,
            "batch": {"load": reads, "save": writes},
        }
    finally:
        command("DEL", raw_key)
        store.delete(key)
        store.close()


def measure(urls: dict[str, str], kinds: list[str], rounds: int, quick: bool) -> dict[str, Any]:
    """Return the store-level numbers of every engine in *kinds* (errors reported, not raised)."""
    reads, writes = (30, 5) if quick else (300, 40)
    results: dict[str, Any] = {}
    for kind in kinds:
        try:
            if kind == "redis":
                results[kind] = measure_redis(urls[kind], rounds, reads, writes)
                continue
            results[kind] = measure_engine(kind, urls[kind], rounds, reads, writes)
        except Exception as err:  # noqa: BLE001 - one engine down must not end the run
            results[kind] = {"error": f"{type(err).__name__}: {err}".splitlines()[0][:300]}
    return results


def render(results: dict[str, Any]) -> str:
    """Return the Markdown of the store-level comparison."""
    rows = []
    for kind, result in results.items():
        if "error" in result:
            rows.append([kind, result["error"], "—", "—", "—"])
            continue
        store, ops = ("RedisStore", _REDIS_OPS) if kind == "redis" else ("SQLStore", _OPS)
        for op, driver in ops:
            if op not in result:
                continue
            measured = result[op]
            for path, versus in measured["versus"].items():
                how = _PATHS[kind][path]
                sql = kind != "redis" and op in TARGETS
                target = f"target ≤ {TARGETS[op]}x" if sql else "no target"
                rows.append(
                    [
                        kind,
                        f"`{store}.{op}` vs the driver's {driver} ({how})",
                        fmt_us(versus["raw_us"]),
                        fmt_us(measured["ours_us"]),
                        f"**{versus['ratio']:.2f}x** ({versus['ratio_q1']:.2f}–"
                        f"{versus['ratio_q3']:.2f}), {target}" + _NOTES.get(path, ""),
                    ]
                )
    header = ["engine", "comparison", "driver µs", "store µs", "ours / driver (IQR)"]
    return md_table(header, rows)


#: What is compared: SQLStore's method, the driver's statement it is timed against.
_OPS = (
    ("load", "read"),
    ("save", "conditional UPDATE"),
    ("touch", "UPDATE of expires_at (an expiry refresh)"),
)
#: The same for RedisStore.
_REDIS_OPS = (
    ("load", "`GET`"),
    ("save", "`SET … EX`, which a store without compare-and-set sends"),
)
#: How each driver path runs, per engine.
_PATHS = {
    "redis": {"lean": "the store's own kept redis-py Connection"},
    "postgresql": {
        "lean": "psycopg.pq: prepared, libpq, binary",
        "cursor": "psycopg cursor, prepare=True, binary",
        "unflushed": "psycopg.pq, committed with synchronous_commit = off",
    },
    "mariadb": {"lean": "PyMySQL cursor"},
}
_NOTES = {
    "cursor": " (the lean path is the floor)",
    "unflushed": " (no store commits so: the difference is the WAL flush)",
}
