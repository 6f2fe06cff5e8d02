"""The speed targets, checked against one run's numbers, and the run's Markdown.

Ratios are "times faster": the other's µs/request divided by ours, so 2.0
means ours takes half the time. They are paired: every round times every
subject, so a ratio is the median over rounds of the ratio within a round,
which cancels drift that slows a whole round (another job on this shared
machine); the same goes for "µs over bare". "Equal within noise" means the difference of
the medians is no larger than the noise measured in the same run: the larger
of either subject's inter-quartile range over rounds and the difference
between two copies of the bare app (the A/A check).
"""

from __future__ import annotations

import statistics
from typing import Any

from .storelevel import TARGETS as STORE_TARGETS

__all__ = ["Numbers", "evaluate"]

#: Redis commands that do not write data (GETEX refreshes the TTL only).
READ_ONLY_REDIS = frozenset({"get", "getex", "mget", "exists", "ttl", "pttl"})


class Numbers:
    """Look-ups into one run's results."""

    def __init__(self, data: dict[str, Any]) -> None:
        self.subjects = {s["key"]: s for s in data["subjects"]}
        self.options: dict[str, Any] = data.get("options") or {}

    def ok(self, key: str) -> bool:
        subject = self.subjects.get(key)
        return subject is not None and subject["status"] == "ok" and "results" in subject

    def result(self, key: str, scenario: str) -> dict[str, Any] | None:
        if not self.ok(key):
            return None
        found: dict[str, Any] | None = self.subjects[key]["results"].get(scenario)
        return found

    def median(self, key: str, scenario: str, metric: str = "us") -> float | None:
        """Return the median µs/request; *metric* ``us`` is wall clock, ``cpu_us`` CPU."""
        result = self.result(key, scenario)
        return None if result is None else float(result[metric]["median"])

    def samples(self, key: str, scenario: str, metric: str = "us") -> list[float]:
        """Return the per-round µs/request, in round order."""
        result = self.result(key, scenario)
        name = "samples_us" if metric == "us" else "cpu_samples_us"
        return [] if result is None else [float(v) for v in result.get(name, [])]

    def paired(
        self, a: str, b: str, scenario: str, metric: str = "us"
    ) -> list[tuple[float, float]]:
        """Return (a, b) per round, or [] when the rounds do not pair up."""
        first, second = self.samples(a, scenario, metric), self.samples(b, scenario, metric)
        if not first or len(first) != len(second):
            return []
        return list(zip(first, second, strict=True))

    def iqr(self, key: str, scenario: str, metric: str = "us") -> float:
        result = self.result(key, scenario)
        return 0.0 if result is None else float(result[metric]["q3"] - result[metric]["q1"])

    def round_trips(self, key: str, scenario: str) -> float | None:
        result = self.result(key, scenario)
        return None if result is None else result["round_trips"]

    def commands(self, key: str, scenario: str) -> dict[str, float]:
        result = self.result(key, scenario)
        if result is None or result["traffic"] is None:
            return {}
        commands: dict[str, float] = result["traffic"]["commands"]
        return commands

    def label(self, key: str) -> str:
        subject = self.subjects.get(key)
        return key if subject is None else str(subject["label"])

    def noise(self, a: str, b: str, scenario: str, metric: str = "us") -> float:
        """Return the noise bound for comparing *a* and *b* on *scenario*."""
        bound = max(self.iqr(a, scenario, metric), self.iqr(b, scenario, metric))
        base = self.median("bare", scenario, metric)
        copy = self.median("bare-aa", scenario, metric)
        if base is not None and copy is not None:
            bound = max(bound, abs(base - copy))
        return bound

    def best_peer(self, engine: str, scenario: str) -> tuple[str, float] | None:
        """Return the fastest peer on *engine* for *scenario*."""
        found: tuple[str, float] | None = None
        for key, subject in self.subjects.items():
            if subject["role"] != "peer" or subject["engine"] != engine:
                continue
            value = self.median(key, scenario)
            if value is not None and (found is None or value < found[1]):
                found = (key, value)
        return found


def _speedup(n: Numbers, ours: str, other: str, scenario: str, metric: str = "us") -> float | None:
    """Return how many times faster *ours* is: the median of the per-round ratios."""
    pairs = n.paired(ours, other, scenario, metric)
    if pairs and all(mine > 0 for mine, _ in pairs):
        return statistics.median(theirs / mine for mine, theirs in pairs)
    mine_median, theirs_median = n.median(ours, scenario, metric), n.median(other, scenario, metric)
    if mine_median is None or theirs_median is None or mine_median <= 0:
        return None
    return theirs_median / mine_median


def _over(n: Numbers, key: str, base: str, scenario: str, metric: str = "us") -> float | None:
    """Return µs/request of *key* above *base*: the median of the per-round differences."""
    pairs = n.paired(key, base, scenario, metric)
    if pairs:
        return statistics.median(mine - theirs for mine, theirs in pairs)
    mine, theirs = n.median(key, scenario, metric), n.median(base, scenario, metric)
    return None if mine is None or theirs is None else mine - theirs


def _count(value: float) -> str:
    return f"{value:.0f}" if abs(value - round(value)) < 0.005 else f"{value:.2f}"


def _commands(commands: dict[str, float]) -> str:
    shown = [f"{name.upper()} {_count(v)}" for name, v in commands.items() if v >= 0.005]
    return ", ".join(shown) or "none"


def _target(
    tid: str, text: str, met: bool | None, measured: str, met_cpu: bool | None = None
) -> dict[str, Any]:
    return {"id": tid, "text": text, "met": met, "measured": measured, "met_cpu": met_cpu}


def _cpu(n: Numbers, ours: str, other: str, scenario: str) -> str:
    speed = _speedup(n, ours, other, scenario, "cpu_us")
    return "" if speed is None else f" (CPU time: {speed:.2f}x)"


def _missing(tid: str, text: str, *keys: str) -> dict[str, Any]:
    return _target(tid, text, None, "not measured: " + ", ".join(keys) + " did not run")


def _redis_target(
    n: Numbers, tid: str, scenario: str, max_trips: float, factor: float, no_write: bool
) -> dict[str, Any]:
    path = "/read" if scenario == "read" else f"/{scenario}"
    trips = "1 round trip" if max_trips == 1 else f"at most {max_trips:.0f} round trips"
    text = (
        f"Redis `{path}`: {trips}{', no write' if no_write else ''},"
        f" at least {factor}x faster than pyramid_session_redis (defaults)"
    )
    speed = _speedup(n, "ours-redis", "session-redis", scenario)
    rt = n.round_trips("ours-redis", scenario)
    if speed is None or rt is None:
        return _missing(tid, text, "ours-redis", "session-redis")
    commands = n.commands("ours-redis", scenario)
    writes = {c for c, v in commands.items() if c.lower() not in READ_ONLY_REDIS and v >= 0.005}
    shape = rt <= max_trips + 0.005 and not (no_write and writes)
    cpu = _speedup(n, "ours-redis", "session-redis", scenario, "cpu_us")
    measured = f"{_count(rt)} round trip(s) ({_commands(commands)}), {speed:.2f}x faster"
    measured += _cpu(n, "ours-redis", "session-redis", scenario)
    met_cpu = None if cpu is None else shape and cpu >= factor
    return _target(tid, text, shape and speed >= factor, measured, met_cpu)


def evaluate(data: dict[str, Any]) -> list[dict[str, Any]]:
    """Return every target with whether this run met it (None: not measured)."""
    n = Numbers(data)
    targets = [
        _redis_target(n, "redis-read", "read", 1, 2.0, True),
        _redis_target(n, "redis-write", "write", 2, 1.25, False),
        _redis_target(n, "redis-new", "new", 1, 3.0, False),
    ]
    text = "Memory store `/read` and `/write`: faster than Beaker's memory backend"
    speeds = [_speedup(n, "ours-memory", "beaker-memory", sc) for sc in ("read", "write")]
    if None in speeds:
        targets.append(_missing("memory-vs-beaker", text, "ours-memory", "beaker-memory"))
    else:
        r, w = speeds
        assert r is not None and w is not None
        rc = _speedup(n, "ours-memory", "beaker-memory", "read", "cpu_us") or 0.0
        wc = _speedup(n, "ours-memory", "beaker-memory", "write", "cpu_us") or 0.0
        measured = f"/read {r:.2f}x, /write {w:.2f}x faster (CPU time: {rc:.2f}x, {wc:.2f}x)"
        targets.append(
            _target("memory-vs-beaker", text, r > 1 and w > 1, measured, rc > 1 and wc > 1)
        )
    text = "Memory store: session cost above the bare app at most 25 µs on `/read`"
    cost = _over(n, "ours-memory", "bare", "read")
    if cost is None:
        targets.append(_missing("memory-cost", text, "ours-memory", "bare"))
    else:
        cpu_cost = _over(n, "ours-memory", "bare", "read", "cpu_us") or 0.0
        measured = f"{cost:.1f} µs over bare (CPU time: {cpu_cost:.1f} µs)"
        targets.append(_target("memory-cost", text, cost <= 25, measured, cpu_cost <= 25))
    text = "Cookie store `/read`: faster than Pyramid's SignedCookieSessionFactory"
    speed = _speedup(n, "ours-cookie", "signedcookie", "read")
    if speed is None:
        targets.append(_missing("cookie-read", text, "ours-cookie", "signedcookie"))
    else:
        cpu = _speedup(n, "ours-cookie", "signedcookie", "read", "cpu_us")
        measured = f"{speed:.2f}x faster" + _cpu(n, "ours-cookie", "signedcookie", "read")
        met_cpu = None if cpu is None else cpu > 1
        targets.append(_target("cookie-read", text, speed > 1, measured, met_cpu))
    text = "`/nosession`: equal to the bare app within noise, for every store"
    ours_keys = [k for k, s in n.subjects.items() if s["role"] == "ours" and n.ok(k)]
    if not ours_keys or n.median("bare", "nosession") is None:
        targets.append(_missing("nosession", text, "bare", "ours-*"))
    else:
        parts, met, met_cpu = [], True, True
        for key in ours_keys:
            for metric in ("us", "cpu_us"):
                bare_us = n.median("bare", "nosession", metric)
                value = n.median(key, "nosession", metric)
                assert value is not None and bare_us is not None
                delta, bound = value - bare_us, n.noise(key, "bare", "nosession", metric)
                if metric == "us":
                    met = met and abs(delta) <= bound
                    parts.append(f"{key.removeprefix('ours-')} {delta:+.1f} (noise ±{bound:.1f})")
                else:
                    met_cpu = met_cpu and abs(delta) <= bound
        measured = "µs vs bare: " + ", ".join(parts)
        targets.append(_target("nosession", text, met, measured, met_cpu))
    for engine, label, ours, floor in SQL:
        targets += _sql_targets(n, data, engine, label, ours, floor)
    from .features import feature_targets  # it imports this module

    return targets + feature_targets(data)


# -- SQL ---------------------------------------------------------------------------

#: (engine, name, ours, floor) per SQL engine.
SQL = (
    ("postgresql", "PostgreSQL", "ours-sql", "floor-postgresql"),
    ("mariadb", "MariaDB", "ours-sql-mariadb", "floor-mariadb"),
)
#: Seconds of slack SQLStore's default refresh_interval gives a 1200 s timeout.
SQL_SLACK = 60.0
SQL_WRITES = ("UPDATE", "INSERT", "DELETE")


def _refresh_cost(level: dict[str, Any] | None) -> str:
    """Say what the driver's expiry refresh UPDATE costs alone, from the store-level numbers."""
    touch = (level or {}).get("touch")
    if not touch:
        return ""
    versus = touch["versus"]
    said = f"; the driver's refresh UPDATE alone costs {versus['lean']['raw_us']:.0f} µs"
    if "unflushed" in versus:
        flush = versus["lean"]["raw_us"] - versus["unflushed"]["raw_us"]
        said += f", {flush:.0f} µs of it the WAL flush at commit"
    return said


def _sql_targets(
    n: Numbers, data: dict[str, Any], engine: str, label: str, ours: str, floor: str
) -> list[dict[str, Any]]:
    targets = []
    level = (data.get("store_level") or {}).get(engine)
    text = (
        f"{label}: `SQLStore.load` at most {STORE_TARGETS['load']}x the driver's read,"
        f" `save` at most {STORE_TARGETS['save']}x its conditional UPDATE (store level)"
    )
    if not level or "error" in level:
        targets.append(_missing(f"{engine}-store", text, "store level"))
    else:
        load = level["load"]["versus"]["lean"]["ratio"]
        save = level["save"]["versus"]["lean"]["ratio"]
        met = load <= STORE_TARGETS["load"] and save <= STORE_TARGETS["save"]
        measured = f"load {load:.2f}x, save {save:.2f}x"
        targets.append(_target(f"{engine}-store", text, met, measured))
    for scenario, factor in (("read", 1.5), ("write", 1.3)):
        text = (
            f"{label} `/{scenario}`: session cost above the bare app at most {factor}x the floor's"
        )
        mine, least = _over(n, ours, "bare", scenario), _over(n, floor, "bare", scenario)
        if mine is None or least is None or least <= 0:
            targets.append(_missing(f"{engine}-{scenario}", text, ours, floor))
            continue
        measured = f"{mine:.0f} µs vs the floor's {least:.0f} µs: {mine / least:.2f}x"
        if scenario == "read":
            updates = n.commands(ours, "read").get("UPDATE", 0.0)
            measured += f" ({updates:.2f} expiry refresh UPDATE per read)"
            hot, hot_floor = _over(n, ours, "bare", "read-hot"), _over(n, floor, "bare", "read-hot")
            if hot is not None and hot_floor:
                measured += f"; read-hot, no refresh due: {hot / hot_floor:.2f}x"
            measured += _refresh_cost(level)
        targets.append(_target(f"{engine}-{scenario}", text, mine / least <= factor, measured))
    targets.append(_sql_shape(n, engine, label, ours))
    text = f"{label}: faster than Beaker's SQLAlchemy backend (defaults and tuned), every scenario"
    slower = []
    speeds = []
    for peer in (f"beaker-{engine}", f"beaker-{engine}-tuned"):
        for sc in ("read", "read-cold", "read-hot", "write", "new"):
            speed = _speedup(n, ours, peer, sc)
            if speed is None:
                continue
            speeds.append(speed)
            if speed <= 1:
                slower.append(f"{sc} vs {n.label(peer)} ({speed:.2f}x)")
    if not speeds:
        targets.append(_missing(f"{engine}-beaker", text, ours, f"beaker-{engine}"))
    else:
        measured = f"{min(speeds):.2f}x to {max(speeds):.2f}x faster"
        if slower:
            measured += "; slower: " + ", ".join(slower)
        targets.append(_target(f"{engine}-beaker", text, not slower, measured))
    return targets


def _sql_shape(n: Numbers, engine: str, label: str, ours: str) -> dict[str, Any]:
    """One statement per request; a read writes only when the expiry refresh is due."""
    text = (
        f"{label}: `/new` one statement; a read one `SELECT`, plus an `UPDATE` only when the"
        " expiry refresh is due; nothing else on the wire (no BEGIN/COMMIT/ROLLBACK)"
    )
    new, hot, read = (n.commands(ours, sc) for sc in ("new", "read-hot", "read"))
    trips = [n.round_trips(ours, sc) for sc in ("new", "read-hot", "read")]
    if not new or not hot or not read or None in trips:
        return _missing(f"{engine}-shape", text, ours)
    # Each session of the pool is read every pool x step seconds of clock; a
    # refresh is due once per slack of its reads.
    due = 1.0
    if n.options:
        due = min(1.0, n.options["pool"] * n.options["step"] / SQL_SLACK)
    others = {c for c in (*new, *hot, *read) if c not in ("SELECT", *SQL_WRITES)}
    met = (
        new == {"INSERT": 1.0}
        and hot == {"SELECT": 1.0}
        and abs(read.get("SELECT", 0) - 1) < 0.005
        and set(read) <= {"SELECT", "UPDATE"}
        and read.get("UPDATE", 0) <= due + 0.05
        and not others
        and abs((trips[0] or 0) - 1) < 0.005
    )
    measured = (
        f"/new {_commands(new)}; read-hot {_commands(hot)}; /read {_commands(read)}"
        f" (a refresh is due on at most {due:.2f} of reads at this clock step);"
        f" round trips {', '.join(_count(t or 0) for t in trips)}"
    )
    return _target(f"{engine}-shape", text, met, measured)
