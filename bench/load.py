"""Load test: a served counter app, 100 concurrent clients, no lost update.

``python -m bench.load`` (``make load``) serves a minimal counter app (built
with ``session_factory_from_settings``, like an application's ``.ini``) with
waitress in a subprocess on a free loopback port, for each store asked for
(``--stores``, default sqlite and redis). A load generator in this process
runs ``--clients`` threads (default 100), each with its own keep-alive
``http.client`` connection and its own session, sending reads and increments
(``--write-share``, default 20%) for ``--seconds`` (default 30). Every
response is checked (status, and the counter value the client expects, so a
stale read counts as an error); afterwards every session's counter must equal
the increments its client sent. Results go to the ``load`` section of
``docs/benchmarks.md``.

The generator shares the machine's cores with the server (both are Python),
so requests/s is a floor for the server alone, and latencies include the
generator's own scheduling. It is not a test of concurrent writes to one
session (each client owns its session): that is the lifecycle tests' job.
"""

from __future__ import annotations

import argparse
import http.client
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from dataclasses import field
from typing import Any

from .report import describe_machine
from .report import machine_markdown
from .report import md_table
from .report import update_docs
from .subjects import REDIS_URL
from .subjects import SECRET
from .subjects import server_reachable

__all__ = ["main", "make_counter_app"]

#: Store settings the served app uses, per store (``{workdir}`` is a temp dir).
STORE_SETTINGS: dict[str, dict[str, str]] = {
    "memory": {},
    "file": {"session.file.path": "{workdir}/sessions"},
    "sqlite": {"session.sqlite.path": "{workdir}/sessions.sqlite"},
    "redis": {"session.redis.url": REDIS_URL, "session.redis.prefix": "bench:load:"},
}
SERVERS = {"redis": "redis"}


def make_counter_app(store: str, workdir: str) -> Any:
    """Return the counter app on *store*: ``/start``, ``/read``, ``/incr``."""
    from pyramid.config import Configurator
    from pyramid.response import Response

    from pyramid_sessionstore import session_factory_from_settings

    settings = {"session.secret": SECRET, "session.store": store}
    settings.update({k: v.format(workdir=workdir) for k, v in STORE_SETTINGS[store].items()})

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


def serve(store: str, port: int, threads: int, workdir: str, max_seconds: float) -> None:
    """Serve the counter app until terminated, or *max_seconds* at most."""
    import logging

    import waitress

    logging.basicConfig(level=logging.ERROR)
    app = make_counter_app(store, workdir)

    def stop_by_itself() -> None:
        time.sleep(max_seconds)
        os._exit(3)  # the parent died or hung: never outlive the run

    threading.Thread(target=stop_by_itself, daemon=True).start()
    waitress.serve(
        app,
        host="127.0.0.1",
        port=port,
        threads=threads,
        connection_limit=1000,
        backlog=1024,
        channel_timeout=60,
        _quiet=True,
    )


# -- the load generator ----------------------------------------------------------


@dataclass
class Client:
    """One simulated browser: its connection, session cookie and expectations."""

    index: int
    cookie: str = ""
    expected: int = 0
    reads: int = 0
    writes: int = 0
    errors: list[str] = field(default_factory=list)
    latencies_ns: list[int] = field(default_factory=list)


def _request(conn: http.client.HTTPConnection, client: Client, path: str) -> str:
    headers = {"Cookie": f"session={client.cookie}"} if client.cookie else {}
    conn.request("GET", path, headers=headers)
    response = conn.getresponse()
    body = response.read().decode()
    for name, value in response.getheaders():
        if name.lower() == "set-cookie" and value.startswith("session="):
            client.cookie = value.split(";", 1)[0].removeprefix("session=")
    if response.status != 200:
        raise RuntimeError(f"{path} answered {response.status}: {body[:100]}")
    return body


def _drive(port: int, client: Client, deadline: float, write_share: float, seed: int) -> None:
    rng = random.Random(seed)
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    perf = time.perf_counter_ns
    try:
        _request(conn, client, "/start")
        while time.monotonic() < deadline:
            write = rng.random() < write_share
            path = "/incr" if write else "/read"
            t0 = perf()
            try:
                body = _request(conn, client, path)
            except (OSError, http.client.HTTPException, RuntimeError) as err:
                client.errors.append(f"{path}: {type(err).__name__}: {err}")
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
                if write:  # it may or may not have counted: stop checking this session
                    return
                continue
            client.latencies_ns.append(perf() - t0)
            if write:
                client.expected += 1
                client.writes += 1
            else:
                client.reads += 1
            if body != str(client.expected):
                client.errors.append(f"{path}: got {body}, expected {client.expected}")
                client.expected = int(body) if body.isdigit() else client.expected
    except (OSError, http.client.HTTPException, RuntimeError) as err:
        client.errors.append(f"/start: {type(err).__name__}: {err}")
    finally:
        conn.close()


def _verify(port: int, clients: list[Client]) -> tuple[int, int, list[str]]:
    """Return (sessions checked, lost updates, messages): every counter is re-read."""
    checked, lost, messages = 0, 0, []
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        for client in clients:
            if not client.cookie:
                continue
            body = _request(conn, client, "/read")
            checked += 1
            if body != str(client.expected):
                lost += 1
                messages.append(f"client {client.index}: counter {body}, sent {client.expected}")
    finally:
        conn.close()
    return checked, lost, messages


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_for_port(port: int, proc: subprocess.Popen[bytes], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited with status {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"the server did not listen on 127.0.0.1:{port} within {timeout} s")


def _cpu_seconds(pid: int) -> float:
    """Return user+system CPU seconds of process *pid* (Linux /proc)."""
    try:
        fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _percentile(ordered: list[int], q: float) -> float:
    if not ordered:
        return 0.0
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] / 1e6


def run_store(store: str, args: argparse.Namespace) -> dict[str, Any]:
    """Serve *store*, drive it, verify it; return the numbers."""
    workdir = tempfile.mkdtemp(prefix="bench-load-")
    port = _free_port()
    limit = args.seconds + 120
    command = [sys.executable, "-m", "bench.load", "--serve", store, "--port", str(port)]
    command += ["--threads", str(args.threads), "--workdir", workdir, "--max-seconds", str(limit)]
    proc = subprocess.Popen(command, cwd=os.path.dirname(os.path.dirname(__file__)))
    try:
        _wait_for_port(port, proc)
        clients = [Client(i) for i in range(args.clients)]
        cpu0 = _cpu_seconds(proc.pid)
        started = time.monotonic()
        deadline = started + args.seconds
        threads = [
            threading.Thread(
                target=_drive, args=(port, c, deadline, args.write_share, args.seed + c.index)
            )
            for c in clients
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=args.seconds + 60)
        elapsed = time.monotonic() - started
        server_cpu = _cpu_seconds(proc.pid) - cpu0
        checked, lost, lost_messages = _verify(port, clients)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
        shutil.rmtree(workdir, ignore_errors=True)
    latencies = sorted(ns for c in clients for ns in c.latencies_ns)
    errors = [e for c in clients for e in c.errors]
    requests = len(latencies)
    return {
        "store": store,
        "clients": args.clients,
        "seconds": round(elapsed, 1),
        "requests": requests,
        "reads": sum(c.reads for c in clients),
        "writes": sum(c.writes for c in clients),
        "requests_per_s": round(requests / elapsed, 1),
        "p50_ms": round(_percentile(latencies, 0.50), 2),
        "p99_ms": round(_percentile(latencies, 0.99), 2),
        "mean_ms": round(statistics.fmean(latencies) / 1e6, 2) if latencies else 0.0,
        "errors": len(errors),
        "error_samples": errors[:10],
        "sessions_checked": checked,
        "lost_updates": lost,
        "lost_samples": lost_messages[:10],
        "server_cpu_us_per_request": round(server_cpu / max(requests, 1) * 1e6, 1),
        "server_threads": args.threads,
    }


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
                f"ours: {r['store']}",
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
        f"A counter app (`/start`, `/read`, `/incr`, built with `session_factory_from_settings`)"
        f" served by waitress ({opts['threads']} threads) in a subprocess on a loopback port;"
        f" {opts['clients']} client threads in the benchmark process, each with its own"
        f" keep-alive `http.client` connection and its own session, send"
        f" {100 - 100 * opts['write_share']:.0f}% reads and {100 * opts['write_share']:.0f}%"
        f" increments for {opts['seconds']} s. Every response is checked against the counter"
        " the client expects (a stale read is an error); afterwards every session's counter"
        ' is read again and must equal the increments sent (a "lost update" otherwise).',
        "",
        md_table(header, rows),
        "",
        "The load generator shares the machine's 2 cores with the server, so requests/s is a"
        " floor for the server alone and latencies include the generator's own scheduling;"
        " server CPU µs/request is the served process's CPU time divided by requests.",
    ]
    samples = [(r["store"], e) for r in data["results"] for e in r.get("error_samples", [])]
    samples += [(r["store"], e) for r in data["results"] for e in r.get("lost_samples", [])]
    if samples:
        lines += ["", "First errors:", ""] + [f"- {store}: {e}" for store, e in samples[:10]]
    return "\n".join(lines)


def _empty_redis() -> None:
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    try:
        client.flushdb()
    finally:
        client.close()


def main(argv: list[str] | None = None) -> int:
    """Run the load test (or, with ``--serve``, be its server)."""
    parser = argparse.ArgumentParser(prog="python -m bench.load", description=__doc__)
    parser.add_argument("--stores", default="sqlite,redis", help="comma-separated stores")
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--clients", type=int, default=100)
    parser.add_argument("--write-share", type=float, default=0.2)
    parser.add_argument("--threads", type=int, default=8, help="waitress worker threads")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--out", default=None, help="directory of benchmarks.md/.json")
    parser.add_argument("--serve", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--workdir", default="", help=argparse.SUPPRESS)
    parser.add_argument("--max-seconds", type=float, default=300, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        serve(args.serve, args.port, args.threads, args.workdir, args.max_seconds)
        return 0
    stores = [s for s in args.stores.split(",") if s]
    unknown = [s for s in stores if s not in STORE_SETTINGS]
    if unknown:
        print(f"unknown store(s) {unknown}; choose from {sorted(STORE_SETTINGS)}", file=sys.stderr)
        return 2
    machine = describe_machine()
    results = []
    for store in stores:
        server = SERVERS.get(store)
        if server is not None and not server_reachable(server):
            results.append({"store": store, "skipped": f"{server} unreachable"})
            continue
        if store == "redis":
            _empty_redis()
        print(f"load: {store} for {args.seconds} s ...", file=sys.stderr, flush=True)
        try:
            result = run_store(store, args)
        finally:
            if store == "redis":
                _empty_redis()
        print(f"load: {store}: {result}", file=sys.stderr, flush=True)
        results.append(result)
    options = {
        "seconds": args.seconds,
        "clients": args.clients,
        "write_share": args.write_share,
        "threads": args.threads,
    }
    data = {"machine": machine, "options": options, "results": results}
    from pathlib import Path

    from .report import DOCS

    path = update_docs("load", render(data), data, Path(args.out) if args.out else DOCS)
    print(f"wrote {path}", file=sys.stderr)
    failed = any(r.get("errors") or r.get("lost_updates") for r in results)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
