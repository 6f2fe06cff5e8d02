"""Scale: a million sessions in Redis, and gc of a million expired rows in SQL.

``python -m bench.scale`` (``make scale``; ``--n`` for fewer):

- **redis**: ``--n`` sessions written through ``RedisStore.save`` on a
  pipeline (so each record is byte for byte what the store writes, ``SET NX
  EX`` with our framing), 1000 per round trip, into db 14; memory per session
  from ``INFO memory`` before and after (and ``MEMORY USAGE`` of one key); a
  sample is read back through a normal store; then the db is emptied.
- **sqlite**, **postgresql**: ``--n`` expired rows bulk-inserted next to
  1000 live sessions saved through the store, then ``delete_expired()``
  timed, while a probe in another process (a web worker, as ``psessions gc``
  runs from cron) loads a live session in a loop: the longest load during gc
  is the stall gc caused, next to the longest before it. Afterwards exactly the
  live rows must remain.

Results go to the ``scale`` section of ``docs/benchmarks.md``.
"""

from __future__ import annotations

import argparse
import array
import hashlib
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from .app import PAYLOAD
from .report import DOCS
from .report import describe_machine
from .report import machine_markdown
from .report import md_table
from .report import update_docs
from .subjects import default_urls
from .subjects import server_reachable

REDIS_URL = default_urls()["redis"]
POSTGRES_URL = default_urls()["postgresql"]

__all__ = ["main"]

PG_TABLE = "bench_scale_sessions"
LIVE = 1000
TTL = 1200


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _payload() -> bytes:
    """Return the stored bytes of a typical session (what ``/new`` of bench.run stores)."""
    from pyramid_sessionstore.payload import Header
    from pyramid_sessionstore.payload import encode
    from pyramid_sessionstore.serializers import JSONSerializer

    now = time.time()
    return encode(Header(int(now), now, None, None), JSONSerializer().dumps(PAYLOAD))


def _key(i: int, salt: bytes = b"") -> str:
    # The shape of a real store key: 64 hex digits (sha256 of the session id).
    return hashlib.sha256(salt + i.to_bytes(8, "big")).hexdigest()


# -- Redis ---------------------------------------------------------------------


def _used_memory(client: Any) -> int:
    return int(client.info("memory")["used_memory"])


def scale_redis(n: int) -> dict[str, Any]:
    """Write *n* sessions to Redis db 14 through the store; return the numbers."""
    import redis

    from pyramid_sessionstore.stores.redis import RedisStore

    client = redis.Redis.from_url(REDIS_URL)
    prefix = "bench:scale:"
    payload = _payload()
    client.flushdb()
    try:
        before = _used_memory(client)
        pipe = client.pipeline(transaction=False)
        # The store's own save() queues SET NX EX on the pipeline: our exact format.
        store = RedisStore(client=pipe, prefix=prefix)
        batch = 1000
        started = time.perf_counter()
        for first in range(0, n, batch):
            for i in range(first, min(first + batch, n)):
                store.save(_key(i), payload, TTL, None)
            pipe.execute()
        write_s = time.perf_counter() - started
        after = _used_memory(client)
        count = int(client.dbsize())
        reader = RedisStore(url=REDIS_URL, prefix=prefix)
        sample = random.Random(1).sample(range(n), min(n, 20))
        read_back = sum(
            1 for i in sample if (r := reader.load(_key(i), TTL)) is not None and r.data == payload
        )
        reader.close()
        usage = client.memory_usage(prefix + _key(0)) or 0
        value_len = int(client.strlen(prefix + _key(0)))
    finally:
        started = time.perf_counter()
        client.flushdb()
        cleanup_s = time.perf_counter() - started
        client.close()
    return {
        "n": n,
        "keys": count,
        "write_seconds": round(write_s, 2),
        "sessions_per_s": round(n / write_s),
        "used_memory_before": before,
        "used_memory_after": after,
        "bytes_per_session": round((after - before) / n, 1),
        "memory_usage_one_key": usage,
        "key_bytes": len(prefix) + 64,
        "value_bytes": value_len,
        "read_back": f"{read_back}/{len(sample)}",
        "cleanup_seconds": round(cleanup_s, 2),
    }


# -- SQL gc ----------------------------------------------------------------------


def _settings(engine: str, workdir: str) -> tuple[str, dict[str, str]]:
    if engine == "sqlite":
        return "sqlite", {"session.sqlite.path": f"{workdir}/scale.sqlite"}
    return "sql", {"session.sql.url": POSTGRES_URL, "session.sql.table": PG_TABLE}


def _build(engine: str, workdir: str) -> Any:
    from pyramid_sessionstore.stores.registry import build_store

    name, settings = _settings(engine, workdir)
    return build_store(name, settings)


def _bulk_expired(engine: str, store: Any, n: int, payload: bytes) -> None:
    """Insert *n* rows that expired 10 s ago, bypassing the store (it only writes live ones)."""
    now = time.time()
    if engine == "sqlite":
        import sqlite3

        conn = sqlite3.connect(store.path, isolation_level=None)
        try:
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany(
                f'INSERT INTO "{store.table}" VALUES (?, ?, ?, ?, ?)',
                ((_key(i, b"x"), payload, 1, now - 10, now - 2000) for i in range(n)),
            )
            conn.execute("COMMIT")
        finally:
            conn.close()
        return
    from sqlalchemy import text

    with store.engine.connect() as conn:
        conn.execute(
            text(
                f"INSERT INTO {PG_TABLE} (key, data, version, expires_at, created)"
                " SELECT md5(i::text || 'a') || md5(i::text || 'b'), :data, '1',"
                " extract(epoch from now()) - 10, extract(epoch from now()) - 2000"
                " FROM generate_series(1, :n) AS i"
            ),
            {"data": payload, "n": n},
        )


def _count(engine: str, store: Any) -> int:
    if engine == "sqlite":
        import sqlite3

        conn = sqlite3.connect(store.path)
        try:
            return int(conn.execute(f'SELECT count(*) FROM "{store.table}"').fetchone()[0])
        finally:
            conn.close()
    from sqlalchemy import text

    with store.engine.connect() as conn:
        return int(conn.execute(text(f"SELECT count(*) FROM {PG_TABLE}")).scalar_one())


def _drop(engine: str, store: Any) -> None:
    if engine == "postgresql":
        store.table.drop(store.engine, checkfirst=True)


def probe(engine: str, workdir: str, key: str, stop: str, result: str, limit: float) -> None:
    """Load *key* in a loop until *stop* exists; write (start, seconds) pairs to *result*."""
    store = _build(engine, workdir)
    samples = array.array("d")
    perf, mono = time.perf_counter, time.monotonic
    deadline = mono() + limit
    try:
        while mono() < deadline and not os.path.exists(stop):
            t0, p0 = mono(), perf()
            if store.load(key, TTL) is None:
                raise SystemExit(f"probe: the live session {key[:12]}… is gone")
            samples.extend((t0, perf() - p0))
    finally:
        store.close()
        with open(result, "wb") as out:
            samples.tofile(out)


def _window(pairs: array.array[float], start: float, end: float) -> list[float]:
    return [pairs[i + 1] for i in range(0, len(pairs), 2) if start <= pairs[i] < end]


def _stats_ms(latencies: list[float]) -> dict[str, float]:
    if not latencies:
        return {"n": 0, "p50_ms": 0.0, "p99_ms": 0.0, "max_ms": 0.0}
    ordered = sorted(latencies)
    return {
        "n": len(ordered),
        "p50_ms": round(1000 * statistics.median(ordered), 2),
        "p99_ms": round(1000 * ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))], 2),
        "max_ms": round(1000 * ordered[-1], 2),
    }


def scale_gc(engine: str, n: int) -> dict[str, Any]:
    """Time ``delete_expired`` of *n* expired rows under a concurrent loader."""
    workdir = tempfile.mkdtemp(prefix="bench-scale-")
    store = _build(engine, workdir)
    payload = _payload()
    proc: subprocess.Popen[bytes] | None = None
    try:
        if engine == "postgresql":
            _drop(engine, store)
            store.close()
            store = _build(engine, workdir)
        live = [_key(i, b"live") for i in range(LIVE)]
        for key in live:
            store.save(key, payload, TTL, None)
        started = time.perf_counter()
        _bulk_expired(engine, store, n, payload)
        insert_s = time.perf_counter() - started
        rows_before = _count(engine, store)
        stop, result = f"{workdir}/stop", f"{workdir}/probe.bin"
        command = [sys.executable, "-m", "bench.scale", "--probe", engine, "--workdir", workdir]
        command += ["--key", live[0], "--stop", stop, "--result", result]
        proc = subprocess.Popen(command, cwd=Path(__file__).resolve().parent.parent)
        time.sleep(3)  # the probe starts, then runs alone: the baseline
        gc_start = time.monotonic()
        removed = store.delete_expired()
        gc_end = time.monotonic()
        time.sleep(1)
        Path(stop).touch()
        proc.wait(timeout=60)
        if proc.returncode:
            raise RuntimeError(f"the probe failed with status {proc.returncode}")
        pairs: array.array[float] = array.array("d")
        with open(result, "rb") as src:
            pairs.frombytes(src.read())
        rows_after = _count(engine, store)
    finally:
        if proc is not None and proc.poll() is None:
            Path(f"{workdir}/stop").touch()
            proc.wait(timeout=30)
        _drop(engine, store)
        store.close()
        shutil.rmtree(workdir, ignore_errors=True)
    return {
        "engine": engine,
        "n": n,
        "insert_seconds": round(insert_s, 2),
        "rows_before": rows_before,
        "removed": removed,
        "rows_after": rows_after,
        "live": LIVE,
        "gc_seconds": round(gc_end - gc_start, 2),
        "rows_per_s": round(removed / max(gc_end - gc_start, 1e-9)),
        "probe_before": _stats_ms(_window(pairs, gc_start - 2.5, gc_start)),
        "probe_during": _stats_ms(_window(pairs, gc_start, gc_end)),
    }


# -- report --------------------------------------------------------------------


def render(data: dict[str, Any]) -> str:
    """Return the ``scale`` section of docs/benchmarks.md."""
    lines = ["## Scale (`make scale`)", "", machine_markdown(data["machine"]), ""]
    redis = data.get("redis")
    if redis and "skipped" not in redis:
        lines += [
            f"**Redis, {redis['n']:,} sessions** written through `RedisStore.save` on a"
            " pipeline (1000 per round trip; byte for byte the store's own `SET NX EX` with"
            " its framing), a typical session of"
            f" {redis['value_bytes']} bytes under a {redis['key_bytes']}-byte key, 1200 s TTL.",
            "",
            md_table(
                ["sessions", "written in", "sessions/s", "memory per session", "one key"],
                [
                    [
                        f"{redis['keys']:,}",
                        f"{redis['write_seconds']} s",
                        f"{redis['sessions_per_s']:,}",
                        f"{redis['bytes_per_session']:.0f} bytes (`INFO memory` delta / n)",
                        f"{redis['memory_usage_one_key']} bytes (`MEMORY USAGE`)",
                    ]
                ],
            ),
            "",
            f"Read back through a normal store: {redis['read_back']} sampled sessions intact."
            f" Emptying the db took {redis['cleanup_seconds']} s.",
            "",
        ]
    elif redis:
        lines += [f"Redis: skipped ({redis['skipped']}).", ""]
    rows = []
    for r in data.get("gc", []):
        if "skipped" in r:
            rows.append([r["engine"], "skipped: " + r["skipped"]] + [""] * 5)
            continue
        before, during = r["probe_before"], r["probe_during"]
        ok = r["removed"] == r["n"] and r["rows_after"] == r["live"]
        rows.append(
            [
                r["engine"],
                f"{r['removed']:,} of {r['n']:,}" + ("" if ok else " **(mismatch)**"),
                f"{r['gc_seconds']} s ({r['rows_per_s']:,} rows/s)",
                f"{r['rows_after']:,} (live: {r['live']:,})",
                f"{during['max_ms']:.1f} ms",
                f"{during['p99_ms']:.1f} / {during['p50_ms']:.2f} ms ({during['n']:,} loads)",
                f"{before['max_ms']:.1f} / {before['p99_ms']:.1f} / {before['p50_ms']:.2f} ms",
            ]
        )
    if rows:
        lines += [
            "**Garbage collection** (`delete_expired()`, as `psessions gc` runs it) of expired"
            " rows bulk-inserted next to live sessions; meanwhile a probe process loads a live"
            " session in a loop, as a web worker would.",
            "",
            md_table(
                [
                    "store",
                    "removed",
                    "gc took",
                    "rows left",
                    "longest load during gc (stall)",
                    "load p99 / p50 during gc",
                    "before gc: max / p99 / p50",
                ],
                rows,
            ),
        ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run the scale benchmarks (or, with ``--probe``, be the concurrent loader)."""
    parser = argparse.ArgumentParser(prog="python -m bench.scale", description=__doc__)
    parser.add_argument("--n", type=int, default=1_000_000, help="sessions / expired rows")
    parser.add_argument("--parts", default="redis,sqlite,postgresql")
    parser.add_argument("--out", default=None, help="directory of benchmarks.md/.json")
    parser.add_argument("--probe", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--workdir", default="", help=argparse.SUPPRESS)
    parser.add_argument("--key", default="", help=argparse.SUPPRESS)
    parser.add_argument("--stop", default="", help=argparse.SUPPRESS)
    parser.add_argument("--result", default="", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.probe:
        probe(args.probe, args.workdir, args.key, args.stop, args.result, limit=1800)
        return 0
    parts = [p for p in args.parts.split(",") if p]
    data: dict[str, Any] = {"machine": describe_machine(), "n": args.n, "gc": []}
    if "redis" in parts:
        if server_reachable("redis"):
            _log(f"scale: redis, {args.n:,} sessions ...")
            data["redis"] = scale_redis(args.n)
            _log(f"scale: redis: {data['redis']}")
        else:
            data["redis"] = {"skipped": "redis unreachable"}
    for engine in ("sqlite", "postgresql"):
        if engine not in parts:
            continue
        if engine == "postgresql" and not server_reachable("postgresql"):
            data["gc"].append({"engine": engine, "skipped": "postgresql unreachable"})
            continue
        _log(f"scale: {engine} gc of {args.n:,} expired rows ...")
        result = scale_gc(engine, args.n)
        _log(f"scale: {engine}: {result}")
        data["gc"].append(result)
    path = update_docs("scale", render(data), data, Path(args.out) if args.out else DOCS)
    _log(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
