"""The ``run`` section of docs/benchmarks.md: one table per scenario, the targets, the noise."""

from __future__ import annotations

import statistics
from typing import Any

from pyramid_sessionstore.policy import VERIFIED_CACHE_SIZE

from . import features
from . import storelevel
from .report import fmt_us
from .report import machine_markdown
from .report import md_table
from .targets import Numbers
from .targets import _commands
from .targets import _count
from .targets import _over
from .targets import _speedup

__all__ = ["render"]


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
            ours_key = subject.get("pair") or f"ours-{subject['engine']}"
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
        f" round-robin over a pool of {opts['pool']} sessions while the clock moves"
        f" {opts['step']} s per request, so each session is read again"
        f" {opts['pool'] * opts['step']:.0f} s after its previous request and time-based"
        " refresh logic (accessed times, `timeout_trigger`, reissue, expiry refresh) runs as"
        " in production. The clock reaches every subject: libraries that call `time.time()`"
        " see it patched, and our stores that keep a clock (memory, file, SQLite, cookie, and"
        " SQL, instead of the database's) are built with it. "
        + _cold_text(opts)
        + " Store traffic is counted in separate, untimed passes on a twin of each subject that"
        " talks to its server through a counting proxy: round trips and commands as the server"
        " receives them (a driver's own BEGIN, ROLLBACK or ping included; one proxy per"
        " server, with one subject counted at a time, so other clients of the shared servers"
        " and the other subjects are excluded), and SQLite statements by trace callbacks."
        f" The whole run took {data['seconds']:.0f} s.",
        "",
        "Every subject uses a 1200 s idle timeout (the tuned Beaker rows excepted, see their"
        ' labels). "ours vs best peer" is the best peer\'s µs divided by ours (2.00x = ours'
        ' takes half the time), and like "µs over bare" it is paired: the median over rounds'
        " of the value within each round, so drift that slows a whole round cancels out.",
        "",
    ]
    for sc in data["scenarios"]:
        title = sc["title"]
        if sc["name"] == "read-cold":
            title = f"`/read` cold: {opts.get('cold_pool', 0):,} browsers round-robin"
        out += [f"### {title}", "", _scenario_table(n, data, sc["name"]), ""]
    if data.get("store_level"):
        out += [
            "### Store level: SQLStore and RedisStore next to their bare drivers",
            "",
            " ".join(storelevel.__doc__.split("\n\n", 1)[1].split()),
            "",
            storelevel.render(data["store_level"]),
            "",
        ]
    out += features.render(data)
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


def _cold_text(opts: dict[str, Any]) -> str:
    """Say what the cold scenario did in this run: cold only past the cache's size."""
    browsers, pool = opts.get("cold_pool", 0), opts["pool"]
    said = f"`/read` cold goes round {browsers:,} browsers with the clock still (each"
    said += " browser's sessions must outlive the round), "
    if browsers > VERIFIED_CACHE_SIZE:
        said += (
            f"more than our verified-cookie cache holds ({VERIFIED_CACHE_SIZE:,}), so every"
            " cookie is verified, as the peers verify every cookie;"
        )
    else:
        said += (
            f"no more than our verified-cookie cache holds ({VERIFIED_CACHE_SIZE:,}): in this"
            " short run that scenario is not cold;"
        )
    return said + f" `/read` ({pool} browsers) shows the cache warm."
