"""Load test: a counter app on a real pre-fork server, 100 concurrent clients, no lost update.

``python -m bench.load`` (``make load``) serves a minimal counter app (built
with ``session_factory_from_settings``, like an application's ``.ini``) with
gunicorn: two worker processes (``gthread``, ``--threads`` each), the app
loaded in the master before the fork (``--preload``, as many deployments do),
on a free loopback port, for every server-side store (``--stores``; memory is
left out, as it is private to one process, and so is the cookie store, which
keeps nothing on the server). A load generator in this process runs
``--clients`` threads (default 100); each owns a session and two keep-alive
``http.client`` connections it alternates between, so one session's requests
reach both worker processes. They send reads and increments
(``--write-share``, default 20%) for ``--seconds`` (default 30). Every
response is checked (status, and the counter value the client expects, so a
stale read counts as an error); afterwards every session's counter must equal
the increments its client sent. Results go to the ``load`` section of
``docs/benchmarks.md``.

The generator shares the machine's cores with the server (both are Python),
so requests/s is a floor for the server alone, and latencies include the
generator's own scheduling. Server CPU is the master's and the workers' CPU
time (``/proc``) divided by requests.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from .loadgen import Client
from .loadgen import drive
from .loadgen import free_port
from .loadgen import percentile
from .loadgen import server_cpu
from .loadgen import verify
from .loadgen import wait_for_port
from .report import describe_machine
from .report import machine_markdown
from .report import md_table
from .report import update_docs
from .subjects import SECRET
from .subjects import default_urls
from .subjects import server_reachable

__all__ = ["main", "make_counter_app", "served_app"]

#: The table the SQL rows keep their sessions in (dropped before and after).
LOAD_TABLE = "bench_load"
#: Per row: the store, its settings (``{workdir}`` and ``{<server>}`` filled in) and
#: the server it needs.
STORES: dict[str, tuple[str, dict[str, str], str | None]] = {
    "file": ("file", {"path": "{workdir}/sessions"}, None),
    "sqlite": ("sqlite", {"path": "{workdir}/sessions.sqlite"}, None),
    "redis": ("redis", {"url": "{redis}", "prefix": "bench:load:"}, "redis"),
    "postgresql": ("sql", {"url": "{postgresql}", "table": LOAD_TABLE}, "postgresql"),
    "mariadb": ("sql", {"url": "{mariadb}", "table": LOAD_TABLE}, "mariadb"),
    "memcached": ("memcached", {"servers": "{memcached}", "prefix": "bench:load:"}, "memcached"),
}


def make_counter_app(row: str, workdir: str) -> Any:
    """Return the counter app on the store of *row*: ``/start``, ``/read``, ``/incr``."""
    from pyramid.config import Configurator
    from pyramid.response import Response

    from pyramid_sessionstore import session_factory_from_settings

    store, options, _ = STORES[row]
    fill = {"workdir": workdir, **default_urls()}
    settings = {"session.secret": SECRET, "session.store": store}
    settings.update({f"session.{store}.{k}": v.format(**fill) for k, v in options.items()})

    def start(request: Any) -> Response:
        request.session["n"] = 0
        return Response(body=b"0", content_type="text/plain")

    def read(request: Any) -> Response:
        return Response(body=str(request.session.get("n")).encode(), content_type="text/plain")

    def incr(request: Any) -> Response:
        session = request.session
        session["n"] = session.get("n", 0) + 1
        return Response(body=str(session["n"]).encode(), content_type="text/plain")

    config = Configurator(settings=settings)
    config.set_session_factory(session_factory_from_settings(settings))
    for name, view in (("start", start), ("read", read), ("incr", incr)):
        config.add_route(name, f"/{name}")
        config.add_view(view, route_name=name)
    return config.make_wsgi_app()


def served_app() -> Any:
    """Return the app gunicorn serves (``bench.load:served_app()``), from the environment.

    Called in gunicorn's master (``--preload``): it also arms a watchdog there, so
    the server ends by itself if the benchmark dies or hangs (the workers follow
    their master).
    """
    import logging

    logging.basicConfig(level=logging.ERROR)
    limit = float(os.environ["BENCH_LOAD_MAX_SECONDS"])

    def stop_by_itself() -> None:
        time.sleep(limit)
        os._exit(3)

    threading.Thread(target=stop_by_itself, daemon=True).start()
    return make_counter_app(os.environ["BENCH_LOAD_STORE"], os.environ["BENCH_LOAD_WORKDIR"])


def _start(row: str, port: int, args: argparse.Namespace, workdir: str) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "gunicorn", "--workers", str(args.workers)]
    command += ["--worker-class", "gthread", "--threads", str(args.threads), "--preload"]
    command += ["--bind", f"127.0.0.1:{port}", "--backlog", "1024", "--keep-alive", "30"]
    command += ["--timeout", "60", "--graceful-timeout", "5", "--log-level", "warning"]
    command += ["bench.load:served_app()"]
    env = dict(os.environ, BENCH_LOAD_STORE=row, BENCH_LOAD_WORKDIR=workdir)
    env["BENCH_LOAD_MAX_SECONDS"] = str(args.seconds + 120)
    root = str(Path(__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, env.get("PYTHONPATH", "")]))
    return subprocess.Popen(command, cwd=root, env=env)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)


def run_store(row: str, args: argparse.Namespace) -> dict[str, Any]:
    """Serve the store of *row*, drive it, verify it; return the numbers."""
    workdir = tempfile.mkdtemp(prefix="bench-load-")
    port = free_port()
    proc = _start(row, port, args, workdir)
    before: dict[int, float] = {}
    after: dict[int, float] = {}
    try:
        wait_for_port(port, proc)
        clients = [Client(i) for i in range(args.clients)]
        server_cpu(proc.pid, before)
        started = time.monotonic()
        deadline = started + args.seconds
        threads = [
            threading.Thread(
                target=drive, args=(port, c, deadline, args.write_share, args.seed + c.index)
            )
            for c in clients
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=args.seconds + 60)
        elapsed = time.monotonic() - started
        server_cpu(proc.pid, after)
        checked, lost, lost_messages = verify(port, clients)
    finally:
        _stop(proc)
        shutil.rmtree(workdir, ignore_errors=True)
    cpu = sum(after.values()) - sum(before.get(pid, 0.0) for pid in after)
    latencies = sorted(ns for c in clients for ns in c.latencies_ns)
    errors = [e for c in clients for e in c.errors]
    requests = len(latencies)
    return {
        "store": row,
        "clients": args.clients,
        "seconds": round(elapsed, 1),
        "requests": requests,
        "reads": sum(c.reads for c in clients),
        "writes": sum(c.writes for c in clients),
        "requests_per_s": round(requests / elapsed, 1),
        "p50_ms": round(percentile(latencies, 0.50), 2),
        "p99_ms": round(percentile(latencies, 0.99), 2),
        "mean_ms": round(statistics.fmean(latencies) / 1e6, 2) if latencies else 0.0,
        "errors": len(errors),
        "error_samples": errors[:10],
        "sessions_checked": checked,
        "lost_updates": lost,
        "lost_samples": lost_messages[:10],
        "server_processes": len(after),
        "server_cpu_us_per_request": round(cpu / max(requests, 1) * 1e6, 1),
    }


def _label(row: str) -> str:
    store = STORES[row][0]
    return f"ours: {store}" if store == row else f"ours: {store} ({row})"


def render(data: dict[str, Any]) -> str:
    """Return the ``load`` section of docs/benchmarks.md."""
    opts = data["options"]
    rows = []
    for r in data["results"]:
        if "skipped" in r:
            rows.append([r["store"], "skipped: " + r["skipped"]] + [""] * 8)
            continue
        verdict = "none" if r["lost_updates"] == 0 else f"**{r['lost_updates']}**"
        rows.append(
            [
                f"ours: {STORES[r['store']][0]}"
                + (" (" + r["store"] + ")" if r["store"] in ("postgresql", "mariadb") else ""),
                f"{r['requests']:,} ({r['reads']:,} / {r['writes']:,})",
                f"{r['requests_per_s']:,.0f}",
                f"{r['p50_ms']:.1f}",
                f"{r['p99_ms']:.1f}",
                str(r["errors"]) if r["errors"] == 0 else f"**{r['errors']}**",
                f"{r['sessions_checked']}",
                verdict,
                f"{r['server_cpu_us_per_request']:,.0f}",
            ]
        )
    header = [
        "store",
        "requests (reads / writes)",
        "requests/s",
        "p50 ms",
        "p99 ms",
        "errors",
        "sessions checked",
        "lost updates",
        "server CPU µs/request",
    ]
    lines = [
        "## Load test (`make load`)",
        "",
        machine_markdown(data["machine"]),
        "",
        "A counter app (`/start`, `/read`, `/incr`, built with `session_factory_from_settings`)"
        f" served by gunicorn: {opts['workers']} worker processes × {opts['threads']} threads"
        " (`gthread`), the app loaded before the fork (`--preload`), on a loopback port;"
        f" {opts['clients']} client threads in the benchmark process, each with its own"
        " session and two keep-alive `http.client` connections it alternates between (so a"
        " session's requests reach both worker processes), send"
        f" {100 - 100 * opts['write_share']:.0f}% reads and {100 * opts['write_share']:.0f}%"
        f" increments for {opts['seconds']} s. Every response is checked against the counter"
        " the client expects (a stale read is an error); afterwards every session's counter"
        ' is read again and must equal the increments sent (a "lost update" otherwise).',
        "",
        md_table(header, rows),
        "",
        "The load generator shares the machine's 2 cores with the server, so requests/s is a"
        " floor for the server alone and latencies include the generator's own scheduling;"
        " server CPU µs/request is the CPU time of gunicorn's master and workers divided by"
        " requests. Memory is not in the table: each worker process would have its own"
        " sessions.",
    ]
    samples = [(r["store"], e) for r in data["results"] for e in r.get("error_samples", [])]
    samples += [(r["store"], e) for r in data["results"] for e in r.get("lost_samples", [])]
    if samples:
        lines += ["", "First errors:", ""] + [f"- {store}: {e}" for store, e in samples[:10]]
    return "\n".join(lines)


def _reset(rows: list[str]) -> None:
    """Empty the benchmark's Redis db and drop the load table."""
    import sqlalchemy as sa

    urls = default_urls()
    if "redis" in rows:
        import redis

        client = redis.Redis.from_url(urls["redis"])
        try:
            client.flushdb()
        finally:
            client.close()
    for kind in ("postgresql", "mariadb"):
        if kind in rows:
            engine = sa.create_engine(urls[kind], isolation_level="AUTOCOMMIT")
            try:
                with engine.connect() as conn:
                    conn.execute(sa.text(f"DROP TABLE IF EXISTS {LOAD_TABLE}"))
            finally:
                engine.dispose()


def main(argv: list[str] | None = None) -> int:
    """Run the load test."""
    parser = argparse.ArgumentParser(prog="python -m bench.load", description=__doc__)
    parser.add_argument("--stores", default=",".join(STORES), help="comma-separated rows")
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--clients", type=int, default=100)
    parser.add_argument("--write-share", type=float, default=0.2)
    parser.add_argument("--workers", type=int, default=2, help="gunicorn worker processes")
    parser.add_argument("--threads", type=int, default=8, help="threads per worker")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--out", default=None, help="directory of benchmarks.md/.json")
    args = parser.parse_args(argv)
    rows = [s for s in args.stores.split(",") if s]
    unknown = [s for s in rows if s not in STORES]
    if unknown:
        print(f"unknown store(s) {unknown}; choose from {sorted(STORES)}", file=sys.stderr)
        return 2
    machine = describe_machine()
    results = []
    for row in rows:
        server = STORES[row][2]
        if server is not None and not server_reachable(server):
            results.append({"store": row, "skipped": f"{server} unreachable"})
            continue
        _reset([row])
        print(f"load: {row} for {args.seconds} s ...", file=sys.stderr, flush=True)
        try:
            result = run_store(row, args)
        finally:
            _reset([row])
        print(f"load: {row}: {result}", file=sys.stderr, flush=True)
        results.append(result)
    options = {
        "seconds": args.seconds,
        "clients": args.clients,
        "write_share": args.write_share,
        "workers": args.workers,
        "threads": args.threads,
        "server": "gunicorn (gthread, --preload)",
    }
    data = {"machine": machine, "options": options, "results": results}
    from .report import DOCS

    path = update_docs("load", render(data), data, Path(args.out) if args.out else DOCS)
    print(f"wrote {path}", file=sys.stderr)
    failed = any(r.get("errors") or r.get("lost_updates") for r in results)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
