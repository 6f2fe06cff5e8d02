"""Store level: SQLStore next to its bare driver, on PostgreSQL and MariaDB, paired.

No Pyramid, no cookies, no serializer: ``SQLStore.load`` against the bare
driver's read of the same row shape (:meth:`bench.floors.RawSQL.read`: one
prepared ``SELECT data, version, expires_at … WHERE key = %s AND (live)`` by
the database's clock), and ``SQLStore.save`` of a loaded record against the
driver's conditional ``UPDATE … WHERE key = %s AND version = %s``
(:meth:`~bench.floors.RawSQL.update`). The store runs as configured by
default (the database's clock, its kept connections). In each round a batch
of each runs back to back, in alternating order; a ratio is the median over
rounds of the ratio within a round, so drift of the shared machine cancels.
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
    raw: Callable[[], Any], ours: Callable[[], Any], n: int, rounds: int
) -> dict[str, float]:
    raws, oursl, ratios = [], [], []
    for round_no in range(rounds):
        if round_no % 2:
            b, a = _batch(ours, n), _batch(raw, n)
        else:
            a, b = _batch(raw, n), _batch(ours, n)
        raws.append(a)
        oursl.append(b)
        ratios.append(b / a)
    return {
        "raw_us": statistics.median(raws),
        "ours_us": statistics.median(oursl),
        "ratio": statistics.median(ratios),
        "ratio_q1": statistics.quantiles(ratios, n=4)[0] if len(ratios) > 1 else ratios[0],
        "ratio_q3": statistics.quantiles(ratios, n=4)[2] if len(ratios) > 1 else ratios[0],
    }


def measure_engine(kind: str, url: str, rounds: int, reads: int, writes: int) -> dict[str, Any]:
    """Return the paired numbers of one engine (*kind*: postgresql or mariadb)."""
    from pyramid_sessionstore.stores import SQLStore

    store = SQLStore(url=url, table=TABLE)
    raw = RawSQL(kind, url, RAW_TABLE)
    raw.create()
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
            save()
            update()
        return {
            "load": _paired(
                lambda: raw.read(raw_key), lambda: store.load(key, 1200), reads, rounds
            ),
            "save": _paired(update, save, writes, rounds),
            "rounds": rounds,
            "batch": {"load": reads, "save": writes},
        }
    finally:
        store.close()
        store.table.drop(store.engine, checkfirst=True)
        store.engine.dispose()
        raw.drop()
        raw.close()


def measure(urls: dict[str, str], kinds: list[str], rounds: int, quick: bool) -> dict[str, Any]:
    """Return the store-level numbers of every engine in *kinds* (errors reported, not raised)."""
    reads, writes = (30, 5) if quick else (300, 40)
    results: dict[str, Any] = {}
    for kind in kinds:
        try:
            results[kind] = measure_engine(kind, urls[kind], rounds, reads, writes)
        except Exception as err:  # noqa: BLE001 - one engine down must not end the run
            results[kind] = {"error": f"{type(err).__name__}: {err}".splitlines()[0][:300]}
    return results


def render(results: dict[str, Any]) -> str:
    """Return the Markdown of the store-level comparison."""
    rows = []
    for kind, result in results.items():
        if "error" in result:
            rows.append([kind, "—", "—", result["error"], "—", "—", "—"])
            continue
        load, save = result["load"], result["save"]
        rows.append(
            [
                kind,
                fmt_us(load["raw_us"]),
                fmt_us(load["ours_us"]),
                f"**{load['ratio']:.2f}x** ({load['ratio_q1']:.2f}–{load['ratio_q3']:.2f})",
                fmt_us(save["raw_us"]),
                fmt_us(save["ours_us"]),
                f"**{save['ratio']:.2f}x** ({save['ratio_q1']:.2f}–{save['ratio_q3']:.2f})",
            ]
        )
    header = [
        "engine",
        "driver read µs",
        "SQLStore.load µs",
        f"load / read (target ≤ {TARGETS['load']}x; IQR)",
        "driver conditional UPDATE µs",
        "SQLStore.save µs",
        f"save / UPDATE (target ≤ {TARGETS['save']}x; IQR)",
    ]
    return md_table(header, rows)
