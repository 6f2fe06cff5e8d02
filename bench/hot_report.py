"""The ``hot`` section of docs/benchmarks.md, from one run of :mod:`bench.hot`."""

from __future__ import annotations

from typing import Any

from .report import machine_markdown
from .report import md_table

__all__ = ["render"]

HEADER = [
    "subject",
    "writes answered 200 / sent",
    "requests/s",
    "p50 ms",
    "p99 ms",
    "retries per write",
    "503 (not saved, writer told)",
    "errors",
    "lost keys",
    "requests per worker process",
]


def _lost(phase: dict[str, Any]) -> str:
    if not phase["lost"]:
        return "0"
    share = 100 * phase["lost"] / max(phase["saved"], 1)
    return f"**{phase['lost']:,}** ({share:.0f}% of saved)"


def _row(result: dict[str, Any], phase: dict[str, Any]) -> list[str]:
    ours = result["role"] == "ours"
    retries = f"{phase['retries_per_write']:.2f} (max {phase['max_attempts']} attempts)"
    split = " / ".join(f"{n:,}" for n in sorted(phase["workers"].values(), reverse=True))
    return [
        f"**{result['label']}**" if ours else result["label"],
        f"{phase['saved']:,} / {phase['writes_sent']:,}",
        f"{phase['requests_per_s']:,.0f}",
        f"{phase['p50_ms']:.1f}",
        f"{phase['p99_ms']:.1f}",
        retries if ours else "— (no compare-and-set)",
        str(phase["refused"]),
        str(phase["errors"]) if not phase["errors"] else f"**{phase['errors']}**",
        _lost(phase),
        split,
    ]


def _target(data: dict[str, Any]) -> str:
    ours = [r for r in data["results"] if r["role"] == "ours" and "phases" in r]
    skipped = [r["label"] for r in data["results"] if r["role"] == "ours" and "phases" not in r]
    if not ours:
        return "Target, 0 lost keys for every store of ours: not measured (no store of ours ran)."
    lost = sum(p["lost"] for r in ours for p in r["phases"])
    errors = sum(p["errors"] for r in ours for p in r["phases"])
    counts = " and ".join(str(n) for n in data["options"]["writers"])
    verdict = "**met**" if not lost and not errors else "**missed**"
    text = (
        f"Target, 0 lost keys for every store of ours at {counts} writers: {verdict}"
        f" ({lost} lost, {errors} errors over {len(ours)} stores"
    )
    if skipped:
        text += "; not run: " + ", ".join(skipped)
    return text + ")."


def render(data: dict[str, Any]) -> str:
    """Return the ``hot`` section of docs/benchmarks.md."""
    opts = data["options"]
    lines = [
        "## Hot session: parallel writers of one session (`make hot`)",
        "",
        machine_markdown(data["machine"]),
        "",
        f"The app of `bench/hot_app.py` served by {opts['server']}, {opts['threads']} threads"
        " each, on a loopback port. Per subject and number of writers: one session is"
        " created, then every writer thread gets one keep-alive connection to each worker"
        " process (it opens connections until `/whoami` has named both), and the writers,"
        f" released together, each set {opts['writes']} new keys `k{{writer}}_{{n}}`, one"
        " request per key, alternating between the two processes, as fast as the answers"
        " come. Afterwards the session's keys are read back through each worker process; a"
        " key whose write was answered 200 but that either process does not show is lost."
        " Retries per write are the compare-and-set attempts beyond the first that ours"
        " reports (`SessionWriteConflict.attempts`, put on the response by a subscriber),"
        " over the writes answered 200. A 503 is ours giving up after its conflict budget"
        " (`session.conflict_timeout`, 3 s): the writer is told the key was not saved. The"
        " peers write the whole session back with no version check, so concurrent writers"
        " overwrite each other's keys without an error: their losses show only in the last"
        " column. Memory stores are left out for ours (one dict per process); Beaker's"
        " memory row shows what that gives on a pre-fork server. Ours on a chain with a"
        " memory cache in each process is left out too: a read through one process may not"
        " show the other's latest writes for up to `session.chain.revalidate_after` (30 s),"
        " as docs/stores/chain.md says, and this read-back would count those keys as lost"
        " although the store of record holds them.",
        "",
    ]
    for writers in opts["writers"]:
        rows = [
            _row(r, p)
            for r in data["results"]
            for p in r.get("phases", [])
            if p["writers"] == writers
        ]
        lines += [f"### {writers} writers", "", md_table(HEADER, rows), ""]
    notes = [f"- {r['label']}: {r['note']}." for r in data["results"] if r.get("note")]
    notes += [
        f"- {r['label']}, {p['writers']} writers: only {p['writers_on_both']} writers found a"
        " connection to each process; the others sent every request to one."
        for r in data["results"]
        for p in r.get("phases", [])
        if p["writers_on_both"] < p["writers"]
    ]
    if notes:
        lines += [*notes, ""]
    skipped = [r["label"] for r in data["results"] if "phases" not in r]
    if skipped:
        lines += ["Not run (server unreachable): " + ", ".join(skipped) + ".", ""]
    lines.append(_target(data))
    machine = data["machine"]
    start, end = machine.get("loadavg"), machine.get("loadavg_end")
    noise = (
        "Each subject ran once per number of writers; the writers and the server share this"
        " machine's 2 cores (with other jobs"
        + (f": load average {start[0]:.2f} at the start, {end[0]:.2f} at the end" if end else "")
        + "), so requests/s and latencies are indicative: compare rows of one run, not"
        " runs. Lost keys, 503s and errors are counts, not timings. Ours keeps every key, so"
        " its session ends a phase 6 or 32 times larger than the peers' (which dropped"
        " most of theirs), and each of its writes serializes and compares a larger session."
        f" The whole run took {data['seconds']:.0f} s."
    )
    lines += ["", noise]
    samples = [
        f"- {r['label']}, {p['writers']} writers: {e}"
        for r in data["results"]
        for p in r.get("phases", [])
        for e in p["error_samples"][:2]
    ]
    if samples:
        lines += ["", "First errors:", "", *samples[:12]]
    return "\n".join(lines)
