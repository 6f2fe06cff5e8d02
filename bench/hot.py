"""Hot session (issue 11): parallel writers of one session on a two-process server.

``python -m bench.hot`` (``make hot``; ``make bench`` runs it too) serves the
app of :mod:`bench.hot_app` with gunicorn, two worker processes (``gthread``,
``--preload``), on a free loopback port, once per row: ours on every
server-side store (memory is left out: it is private to one process), then
the peers, pyramid_session_redis and pyramid_beaker on memory, file, Redis and
memcached. For each number of writers (``--writers``, default 6, a browser's
connection limit, and 32) it

1. creates one session (``/start``);
2. gives every writer thread one keep-alive connection to *each* worker
   process (it opens connections until ``/whoami`` has named both), so a
   writer's requests alternate between the processes and their
   compare-and-sets really race through the store;
3. releases the writers together; writer *t* sets ``--writes`` new keys
   ``k{t}_{n}``, one request each, as fast as the answers come;
4. reads the session's keys back through each worker process and counts
   the keys whose write was answered 200 but that are missing (lost keys).

Requests/s counts every write request over the wall time of the phase;
p50/p99 are per request, as the writers saw them. Retries per write are the
compare-and-set attempts beyond the first that ours reported
(:class:`~pyramid_sessionstore.events.SessionWriteConflict`, on the response)
over the writes answered 200; the peers do not compare-and-set, so they have
no retries and nothing to tell them they overwrote another write. A write
ours gave up on after its conflict budget answers 503 (counted apart: the
writer knows it was not saved, it is not lost). The exit status is 1 if ours
lost a key or answered anything else than 200 or 503.

Results go to the ``hot`` section of ``docs/benchmarks.md``.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass
from dataclasses import field
from pathlib import Path
from typing import Any

from .hot_app import ATTEMPTS_HEADER
from .hot_app import HOT_TABLE
from .hot_app import ROWS
from .hot_app import WORKER_HEADER
from .hot_app import Row
from .hot_app import hot_urls
from .loadgen import empty_servers
from .loadgen import free_port
from .loadgen import percentile
from .loadgen import pin
from .loadgen import wait_for_port
from .loadgen import wait_for_workers
from .report import DOCS
from .report import describe_machine
from .report import update_docs
from .subjects import server_reachable

__all__ = ["Writer", "hammer", "main", "run_row"]

ROOT = Path(__file__).resolve().parent.parent
#: Seconds the server's worker processes have to all answer after it listens.
BOOT_LIMIT = 30.0
#: Seconds one phase (one row, one number of writers) may take before it is cut short.
PHASE_LIMIT = 120.0


@dataclass
class Writer:
    """One writer thread: its keys, answers and latencies."""

    index: int
    saved: list[str] = field(default_factory=list)
    attempts: list[int] = field(default_factory=list)
    refused: int = 0
    errors: list[str] = field(default_factory=list)
    latencies_ns: list[int] = field(default_factory=list)
    workers: Counter[str] = field(default_factory=Counter)


def _get(conn: http.client.HTTPConnection, path: str, cookie: str) -> http.client.HTTPResponse:
    conn.request("GET", path, headers={"Cookie": f"session={cookie}"} if cookie else {})
    response = conn.getresponse()
    response.read()
    return response


def _read(conn: http.client.HTTPConnection, path: str, cookie: str) -> tuple[int, str, str]:
    conn.request("GET", path, headers={"Cookie": f"session={cookie}"} if cookie else {})
    response = conn.getresponse()
    body = response.read().decode()
    return response.status, response.getheader(WORKER_HEADER) or "?", body


def _start_session(port: int) -> str:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        response = _get(conn, "/start", "")
    finally:
        conn.close()
    for name, value in response.getheaders():
        if name.lower() == "set-cookie" and value.strip().startswith("session="):
            return value.strip().split(";", 1)[0].removeprefix("session=")
    raise RuntimeError(f"/start answered {response.status} and set no session cookie")


def _write(
    writer: Writer,
    conns: list[http.client.HTTPConnection],
    port: int,
    cookie: str,
    writes: int,
    start: threading.Barrier,
    deadline: float,
) -> None:
    perf = time.perf_counter_ns
    try:
        start.wait()
        for n in range(writes):
            if time.monotonic() > deadline:
                writer.errors.append(f"phase limit reached after {n} writes")
                return
            key, turn = f"k{writer.index}_{n}", (writer.index + n) % len(conns)
            t0 = perf()
            try:
                response = _get(conns[turn], f"/set/{key}", cookie)
            except (OSError, http.client.HTTPException) as err:
                writer.errors.append(f"{key}: {type(err).__name__}: {err}")
                conns[turn].close()
                conns[turn] = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
                continue
            writer.latencies_ns.append(perf() - t0)
            writer.workers[response.getheader(WORKER_HEADER) or "?"] += 1
            if response.status == 200:
                writer.saved.append(key)
                writer.attempts.append(int(response.getheader(ATTEMPTS_HEADER) or 1))
            elif response.status == 503:
                writer.refused += 1
            else:
                writer.errors.append(f"{key}: answered {response.status}")
    finally:
        for conn in conns:
            conn.close()


def hammer(port: int, writers: int, writes: int) -> dict[str, Any]:
    """Run one phase: *writers* threads, *writes* new keys each, on one new session."""
    cookie = _start_session(port)
    crew = [Writer(t) for t in range(writers)]
    links = [list(pin(port, 2).values()) for _ in crew]
    start = threading.Barrier(writers + 1, timeout=60)
    deadline = time.monotonic() + PHASE_LIMIT
    threads = [
        threading.Thread(target=_write, args=(w, c, port, cookie, writes, start, deadline))
        for w, c in zip(crew, links, strict=True)
    ]
    for thread in threads:
        thread.start()
    start.wait()
    began = time.monotonic()
    for thread in threads:
        thread.join(PHASE_LIMIT + 30)
    seconds = time.monotonic() - began
    hung = sum(thread.is_alive() for thread in threads)
    saved = {key for w in crew for key in w.saved}
    views = {}
    for worker, conn in pin(port, 2).items():  # what a browser reads back, from each process
        try:
            status, _, body = _read(conn, "/keys", cookie)
        finally:
            conn.close()
        views[worker] = set(json.loads(body)) if status == 200 else set()
    lost_by_worker = {worker: len(saved - keys) for worker, keys in views.items()}
    lost = sorted(key for key in saved if any(key not in keys for keys in views.values()))
    latencies = sorted(ns for w in crew for ns in w.latencies_ns)
    attempts = [a for w in crew for a in w.attempts]
    errors = [e for w in crew for e in w.errors] + [f"{hung} writer(s) hung"] * bool(hung)
    return {
        "writers": writers,
        "writes_sent": writers * writes,
        "requests": len(latencies),
        "saved": len(saved),
        "refused": sum(w.refused for w in crew),
        "errors": len(errors),
        "error_samples": errors[:10],
        "seconds": round(seconds, 2),
        "requests_per_s": round(len(latencies) / seconds, 1) if seconds else 0.0,
        "p50_ms": round(percentile(latencies, 0.50), 2),
        "p99_ms": round(percentile(latencies, 0.99), 2),
        "retries_per_write": round(sum(a - 1 for a in attempts) / len(attempts), 3)
        if attempts
        else 0.0,
        "max_attempts": max(attempts, default=0),
        "lost": len(lost),
        "lost_samples": lost[:10],
        "lost_by_worker": lost_by_worker,
        "workers": dict(sum((w.workers for w in crew), Counter())),
        "writers_on_both": sum(len(c) >= 2 for c in links),
    }


def _start_server(row: Row, port: int, threads: int, workdir: str) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "gunicorn", "--workers", "2", "--worker-class", "gthread"]
    command += ["--threads", str(threads), "--preload", "--bind", f"127.0.0.1:{port}"]
    command += ["--backlog", "1024", "--keep-alive", "60", "--timeout", "60"]
    command += ["--graceful-timeout", "5", "--log-level", "warning", "bench.hot_app:served_app()"]
    env = dict(os.environ, BENCH_HOT_ROW=row.key, BENCH_HOT_WORKDIR=workdir)
    env["BENCH_HOT_MAX_SECONDS"] = str(3 * PHASE_LIMIT + 60)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH", "")]))
    return subprocess.Popen(command, cwd=ROOT, env=env)


def _stop_server(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)


def run_row(row: Row, writer_counts: list[int], writes: int, threads: int) -> dict[str, Any]:
    """Serve *row* and run one phase per number of writers; return its numbers."""
    workdir = tempfile.mkdtemp(prefix="bench-hot-")
    port = free_port()
    proc = _start_server(row, port, threads, workdir)
    try:
        wait_for_port(port, proc)
        wait_for_workers(port, 2, BOOT_LIMIT)
        phases = [hammer(port, n, writes) for n in writer_counts]
    finally:
        _stop_server(proc)
        shutil.rmtree(workdir, ignore_errors=True)
    return {
        "row": row.key,
        "label": row.label,
        "role": row.role,
        "note": row.note,
        "phases": phases,
    }


def failed(results: list[dict[str, Any]]) -> list[str]:
    """Return what ours got wrong: lost keys, or answers other than 200 and 503."""
    problems = []
    for result in results:
        for phase in result.get("phases", []) if result["role"] == "ours" else []:
            if phase["lost"] or phase["errors"]:
                problems.append(
                    f"{result['label']}, {phase['writers']} writers: {phase['lost']} lost,"
                    f" {phase['errors']} errors {phase['error_samples'][:3]}"
                )
    return problems


def main(argv: list[str] | None = None) -> int:
    """Run the hot-session scenario; return the exit status."""
    parser = argparse.ArgumentParser(prog="python -m bench.hot", description=__doc__)
    parser.add_argument("--rows", default="", help="comma-separated rows (default: all)")
    parser.add_argument("--writers", default="6,32", help="writer counts (default 6,32)")
    parser.add_argument("--writes", type=int, default=40, help="keys each writer sets")
    parser.add_argument("--threads", type=int, default=16, help="threads per worker process")
    parser.add_argument("--out", type=Path, default=DOCS, help="directory of benchmarks.md/.json")
    parser.add_argument("--quick", action="store_true", help="tiny run for tests")
    args = parser.parse_args(argv)
    by_key = {row.key: row for row in ROWS}
    keys = [k for k in args.rows.split(",") if k] or list(by_key)
    unknown = [k for k in keys if k not in by_key]
    if unknown:
        print(f"unknown row(s) {unknown}; choose from {list(by_key)}", file=sys.stderr)
        return 2
    writer_counts = [int(n) for n in args.writers.split(",") if n]
    writes = min(args.writes, 5) if args.quick else args.writes
    machine = describe_machine()
    results: list[dict[str, Any]] = []
    started = time.time()
    for key in keys:
        row = by_key[key]
        if row.server is not None and not server_reachable(row.server):
            results.append({"row": key, "label": row.label, "role": row.role, "skipped": True})
            continue
        kinds = {row.server} if row.server else set()
        empty_servers(kinds, hot_urls(), HOT_TABLE)
        print(f"hot: {key} ...", file=sys.stderr, flush=True)
        try:
            results.append(run_row(row, writer_counts, writes, args.threads))
        finally:
            empty_servers(kinds, hot_urls(), HOT_TABLE)
        for phase in results[-1]["phases"]:
            shown = {k: phase[k] for k in ("writers", "requests_per_s", "lost", "errors")}
            print(f"hot: {key}: {shown}", file=sys.stderr, flush=True)
    machine["loadavg_end"] = list(os.getloadavg())
    options = {"writers": writer_counts, "writes": writes, "threads": args.threads}
    options["server"] = "gunicorn, 2 worker processes (gthread, --preload)"
    data = {
        "machine": machine,
        "seconds": round(time.time() - started, 1),
        "options": options,
        "results": results,
    }
    from .hot_report import render

    path = update_docs("hot", render(data), data, args.out)
    print(f"wrote {path}", file=sys.stderr)
    problems = failed(results)
    for problem in problems:
        print(f"hot: ours failed: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
