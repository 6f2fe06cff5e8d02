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

from .report import fmt_us
from .report import machine_markdown
from .report import md_table

__all__ = ["evaluate", "render"]

#: Redis commands that do not write data (GETEX refreshes the TTL only).
READ_ONLY_REDIS = frozenset({"get", "getex", "mget", "exists", "ttl", "pttl"})


class Numbers:
    """Look-ups into one run's results."""

    def __init__(self, data: dict[str, Any]) -> None:
        self.subjects = {s["key"]: s for s in data["subjects"]}

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
    writes = {c for c, v in commands.items() if c not in READ_ONLY_REDIS and v >= 0.005}
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
    return targets


# -- Markdown --------------------------------------------------------------------


def _scenario_table(n: Numbers, data: dict[str, Any], scenario: str) -> str:
    rows = []
    for subject in data["subjects"]:
        key = subject["key"]
        result = n.result(key, scenario)
        if result is None:
            continue
        us = result["us"]
        median = us["median"]
        iqr_pct = 100 * (us["q3"] - us["q1"]) / median if median else 0.0
        rt = result["round_trips"]
        traffic = result["traffic"]
        cpu = result["cpu_us"]["median"]
        above = None if subject["role"] == "bare" else _over(n, key, "bare", scenario)
        over = "—" if above is None else f"{above:+.1f}"
        versus = "—"
        if subject["role"] == "ours":
            best = n.best_peer(subject["engine"], scenario)
            if best is not None:
                speed = _speedup(n, key, best[0], scenario) or 0.0
                speed_cpu = _speedup(n, key, best[0], scenario, "cpu_us") or 0.0
                versus = f"**{speed:.2f}x** (CPU {speed_cpu:.2f}x) vs {n.label(best[0])}"
        elif subject["role"] == "floor":
            ours_key = f"ours-{subject['engine']}"
            floor_speed = _speedup(n, key, ours_key, scenario)
            if floor_speed is not None:
                versus = f"{n.label(ours_key)} takes {floor_speed:.2f}x the floor"
        rows.append(
            [
                f"**{subject['label']}**" if subject["role"] == "ours" else subject["label"],
                subject["engine"],
                fmt_us(median),
                f"±{iqr_pct / 2:.1f}%",
                fmt_us(cpu),
                "—" if rt is None else _count(rt),
                "—" if traffic is None else _commands(traffic["commands"]),
                over,
                versus,
            ]
        )
    header = [
        "subject",
        "engine",
        "µs/request",
        "noise (IQR/2)",
        "CPU µs/request",
        "round trips",
        "store commands / request",
        "µs over bare",
        "ours vs best peer, same engine",
    ]
    return md_table(header, rows)


def _noise_section(n: Numbers, data: dict[str, Any]) -> str:
    spreads = []
    for subject in data["subjects"]:
        for result in (subject.get("results") or {}).values():
            us = result["us"]
            if us["median"]:
                spreads.append(100 * (us["q3"] - us["q1"]) / 2 / us["median"])
    lines = ["### Noise", ""]
    if spreads:
        lines.append(
            f"Half the inter-quartile range over rounds, as a share of the median: median"
            f" {statistics.median(spreads):.1f}%, worst {max(spreads):.1f}%"
            f" (over {len(spreads)} subject × scenario cells)."
        )
    aa = []
    for sc in data["scenarios"]:
        a, b = n.median("bare", sc["name"]), n.median("bare-aa", sc["name"])
        if a is not None and b is not None:
            aa.append(f"{sc['name']} {100 * (b - a) / a:+.1f}%")
    if aa:
        lines.append(
            "The same bare app timed twice (A/A) differed by " + ", ".join(aa) + ": differences"
            " of that size between other rows are not meaningful."
        )
    machine = data["machine"]
    start, end = machine.get("loadavg"), machine.get("loadavg_end")
    if start and end:
        lines.append(
            f"Load average {start[0]:.2f} at the start, {end[0]:.2f} at the end (other jobs"
            " shared this 2-core machine; rounds interleave all subjects so drift hits them"
            " alike)."
        )
    return "\n".join(lines)


def render(data: dict[str, Any]) -> str:
    """Return the ``run`` section of docs/benchmarks.md."""
    n = Numbers(data)
    opts = data["options"]
    out = [
        "## Per-request cost (`make bench`)",
        "",
        machine_markdown(data["machine"]),
        "",
        "The same minimal Pyramid app (four views, URL dispatch) is built with each session"
        " factory and called in-process through WSGI with prebuilt environs, carrying the"
        " cookie of the previous response. Each number is the median over"
        f" {opts['repeats']} rounds of the mean µs/request of a batch of about"
        f" {opts['batch_ms']:.0f} ms; every round runs every subject and scenario in a shuffled"
        f" order, after a warm-up of {opts['warmup_s']} s per scenario. `/read` and `/write` go"
        f" round-robin over a pool of {opts['pool']} sessions while the clock (`time.time`,"
        f" patched) moves {opts['step']} s per request, so each session is read again"
        f" {opts['pool'] * opts['step']:.0f} s after its previous request and time-based"
        " refresh logic (accessed times, `timeout_trigger`, reissue) runs as in production."
        " Store traffic is counted in separate, untimed passes: round trips on the client,"
        " commands from Redis `INFO commandstats` / memcached `stats` deltas (the quietest of"
        " up to three passes, since other clients share the servers) or SQLAlchemy events."
        f" The whole run took {data['seconds']:.0f} s.",
        "",
        'Every subject uses a 1200 s idle timeout. "ours vs best peer" is the best peer\'s'
        ' µs divided by ours (2.00x = ours takes half the time), and like "µs over bare"'
        " it is paired: the median over rounds of the value within each round, so drift that"
        " slows a whole round cancels out.",
        "",
    ]
    for sc in data["scenarios"]:
        out += [f"### {sc['title']}", "", _scenario_table(n, data, sc["name"]), ""]
    out += ["### Targets", ""]
    rows = []
    marks = {True: "met", False: "**missed**", None: "not measured"}
    for target in data["targets"]:
        rows.append(
            [target["text"], target["measured"], marks[target["met"]], marks[target["met_cpu"]]]
        )
    out += [md_table(["target", "measured", "wall clock", "CPU time"], rows), ""]
    others = [s for s in data["subjects"] if s["status"] != "ok"]
    if others:
        out += ["### Not timed", ""]
        rows = [[s["label"], s["status"], s["reason"].replace("|", "\\|")] for s in others]
        out += [md_table(["subject", "status", "why"], rows), ""]
    notes = [s for s in data["subjects"] if s["note"] and s["status"] == "ok"]
    if notes:
        out += [f"- {s['label']}: {s['note']}." for s in notes] + [""]
    out.append(_noise_section(n, data))
    return "\n".join(out)
