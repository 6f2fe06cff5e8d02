"""Load test: shared sessions on a real pre-fork server, every acknowledged write checked.

``python -m bench.load`` (``make load``) serves a small app (built with
``session_factory_from_settings``, like an application's ``.ini``; see
:func:`make_counter_app`) with gunicorn: two worker processes (``gthread``,
``--threads`` each), the app loaded in the master before the fork
(``--preload``, as many deployments do), on a free loopback port, for every
server-side store (``--stores``; memory is left out, as it is private to one
process, and so is the cookie store, which keeps nothing on the server).

The load generator (:mod:`bench.loadgen`) in this process runs ``--clients``
threads (default 100) in groups of ``--per-session`` (default 4) that share
one session cookie, so requests of one session overlap. Each client holds
one keep-alive connection to each worker process (opened until the
``X-Pid`` answers name both) and alternates between them, so every session
is read and written in both processes at once; the report says how many
sessions both workers really served. For ``--seconds`` (default 30) each
client sends reads and, with ``--write-share`` (default 20%), writes:

- a write sets a key of its own, ``<client>-<seq>``, never set by anyone
  else (session merges are key-level, so a counter would not be checkable
  under overlap). Answered 200 it is *acknowledged*; ``503`` + ``Retry-After``
  from :class:`~pyramid_sessionstore.SessionBusyError` is counted as *busy*;
  anything else is an error. A write without a 200 is *unknown*: neither
  required nor forbidden later, and the client goes on;
- a read answers which of the client's keys the session holds: every key
  the client had acknowledged before must be there (else a read-your-writes
  miss), and no key the client never sent may be;
- at the end every session's keys are read through each worker process:
  an acknowledged key missing from either is a *lost update*.

Transport errors, other statuses and a changed session cookie are errors,
counted apart from misses and losses. The exit status is 1 on any error,
miss or loss, on a session or client that did not reach every worker, on a
store not run (server unreachable; the docs are then left as they were),
when fewer than half the writes were acknowledged, or when no write lost a
compare-and-set first (the writes never overlapped: nothing was tested). Results go to
the ``load`` section of ``docs/benchmarks.md``. ``--blind-writes`` (test
only; writes no docs unless ``--out``) makes the store's saves last writer
wins, to show that the check sees the updates that then get lost.

The generator shares the machine's cores with the server (both are Python),
so requests/s is a floor for the server alone, and latencies include the
generator's own scheduling. Server CPU is the master's and the workers' CPU
time (``/proc``) divided by requests.
"""

from __future__ import annotations

import argparse
import math
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

from .loadgen import ATTEMPTS_HEADER
from .loadgen import PID_HEADER
from .loadgen import Client
from .loadgen import drive
from .loadgen import empty_servers
from .loadgen import free_port
from .loadgen import open_sessions
from .loadgen import percentile
from .loadgen import pin
from .loadgen import server_cpu
from .loadgen import stop_after
from .loadgen import verify
from .loadgen import wait_for_port
from .loadgen import wait_for_workers
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


def make_counter_app(row: str, workdir: str, *, blind: bool = False) -> Any:
    """Return the load test's app on the store of *row*.

    Routes: ``/start`` creates a session; ``/mark?k=<client>-<seq>`` sets key
    *k* to *seq*; ``/read?c=<client>`` answers the sequence numbers of that
    client's keys (``/read`` alone: every ``<client>-<seq>`` key);
    ``/whoami`` touches no session. Every answer names its worker process in
    ``X-Pid``; a write that lost compare-and-sets before it was saved says
    how many attempts it took in ``X-Attempts`` (from
    ``SessionWriteConflict``). A write that ran out of
    ``session.conflict_timeout`` answers ``503``, ``Retry-After`` and the body
    ``busy`` (an exception view for
    :class:`~pyramid_sessionstore.SessionBusyError`), so the load generator
    tells it from a store that failed (also a 503, from the factory).

    :param blind: test only: every save of the store overwrites whatever is
        stored (last writer wins) instead of comparing versions, so
        concurrent writers of one session drop each other's keys; it shows
        that the load generator sees lost updates.
    """
    from pyramid.config import Configurator
    from pyramid.response import Response

    from pyramid_sessionstore import SessionBusyError
    from pyramid_sessionstore import session_factory_from_settings
    from pyramid_sessionstore.events import SessionWriteConflict

    store, options, _ = STORES[row]
    fill = {"workdir": workdir, **default_urls()}
    settings = {"session.secret": SECRET, "session.store": store}
    settings.update({f"session.{store}.{k}": v.format(**fill) for k, v in options.items()})

    def _answer(request: Any, body: str) -> Any:
        response = request.response  # the one _on_conflict writes into
        response.content_type = "text/plain"
        response.text = body
        response.headers[PID_HEADER] = str(os.getpid())  # at request time: after the fork
        return response

    def start(request: Any) -> Any:
        request.session["started"] = 1
        return _answer(request, "ok")

    def mark(request: Any) -> Any:
        key = request.GET["k"]
        request.session[key] = int(key.rpartition("-")[2])
        return _answer(request, "ok")

    def read(request: Any) -> Any:
        client = request.GET.get("c")
        if client is None:
            return _answer(request, " ".join(k for k in request.session if "-" in k))
        prefix = client + "-"
        seqs = (k[len(prefix) :] for k in request.session if k.startswith(prefix))
        return _answer(request, " ".join(seqs))

    def whoami(request: Any) -> Any:
        return _answer(request, "ok")

    def busy(exc: SessionBusyError, request: Any) -> Response:
        response = Response(body=b"busy", status=503, content_type="text/plain")
        response.headers[PID_HEADER] = str(os.getpid())
        response.headers["Retry-After"] = str(math.ceil(exc.retry_after or 1))
        return response

    def on_conflict(event: SessionWriteConflict) -> None:
        if event.request is not None:
            event.request.response.headers[ATTEMPTS_HEADER] = str(event.attempts)

    factory = session_factory_from_settings(settings)
    if blind:
        _make_blind(factory.store)
    config = Configurator(settings=settings)
    config.set_session_factory(factory)
    for name, view in (("start", start), ("mark", mark), ("read", read), ("whoami", whoami)):
        config.add_route(name, f"/{name}")
        config.add_view(view, route_name=name)
    config.add_exception_view(busy, context=SessionBusyError)
    config.add_subscriber(on_conflict, SessionWriteConflict)
    return config.make_wsgi_app()


def _make_blind(store: Any) -> None:
    """Replace *store*'s compare-and-set save by a last-writer-wins one (test only).

    The blind save reads the current version right before saving with it,
    so it overwrites whatever another request wrote since this one loaded
    the session: exactly what a store without version checks does.
    """
    from pyramid_sessionstore.exceptions import ConflictError

    load, save = store.load, store.save

    def blind_save(key: str, data: bytes, ttl: int | None, expected_version: str | None) -> str:
        for _ in range(100):
            current = load(key, ttl)
            try:
                return str(save(key, data, ttl, None if current is None else current.version))
            except ConflictError:
                continue  # another save slipped in between: overwrite that one too
        raise ConflictError("blind save kept losing", store)

    store.save = blind_save


def served_app() -> Any:
    """Return the app gunicorn serves (``bench.load:served_app()``), from the environment.

    Called in gunicorn's master (``--preload``): it also arms a watchdog there, so
    the server ends by itself if the benchmark dies or hangs (the workers follow
    their master).
    """
    import logging

    logging.basicConfig(level=logging.ERROR)
    stop_after(float(os.environ["BENCH_LOAD_MAX_SECONDS"]))
    return make_counter_app(
        os.environ["BENCH_LOAD_STORE"],
        os.environ["BENCH_LOAD_WORKDIR"],
        blind=os.environ.get("BENCH_LOAD_BLIND") == "1",
    )


def _start(row: str, port: int, args: argparse.Namespace, workdir: str) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "gunicorn", "--workers", str(args.workers)]
    command += ["--worker-class", "gthread", "--threads", str(args.threads), "--preload"]
    command += ["--bind", f"127.0.0.1:{port}", "--backlog", "1024", "--keep-alive", "30"]
    command += ["--timeout", "60", "--graceful-timeout", "5", "--log-level", "warning"]
    command += ["bench.load:served_app()"]
    env = dict(os.environ, BENCH_LOAD_STORE=row, BENCH_LOAD_WORKDIR=workdir)
    env["BENCH_LOAD_BLIND"] = "1" if args.blind_writes else "0"
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
        wait_for_workers(port, args.workers)
        sessions = open_sessions(port, math.ceil(args.clients / args.per_session))
        clients = [Client(i, sessions[i // args.per_session]) for i in range(args.clients)]
        links = [list(pin(port, args.workers).values()) for _ in clients]
        server_cpu(proc.pid, before)
        started = time.monotonic()
        deadline = started + args.seconds
        threads = [
            threading.Thread(
                target=drive,
                args=(port, c, conns, deadline, args.write_share, args.seed + c.index),
            )
            for c, conns in zip(clients, links, strict=True)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=args.seconds + 60)
        elapsed = time.monotonic() - started
        hung = sum(thread.is_alive() for thread in threads)
        server_cpu(proc.pid, after)
        verify(port, sessions, clients, args.workers)
    finally:
        _stop(proc)
        shutil.rmtree(workdir, ignore_errors=True)
    cpu = sum(after.values()) - sum(before.get(pid, 0.0) for pid in after)
    latencies = sorted(ns for c in clients for ns in c.latencies_ns)
    errors = [e for c in clients for e in c.errors] + [f"{hung} client(s) hung"] * bool(hung)
    requests = len(latencies)
    checked = [s for s in sessions if s.checked]
    lost = [f"session {s.index}: acknowledged key {k} missing" for s in checked for k in s.lost]
    served = [len(s.pids) for s in sessions]
    return {
        "store": row,
        "clients": args.clients,
        "sessions": len(sessions),
        "seconds": round(elapsed, 1),
        "requests": requests,
        "reads": sum(c.reads for c in clients),
        "writes": sum(c.writes for c in clients),
        "acknowledged": sum(len(c.acked) for c in clients),
        "retried": sum(c.retried for c in clients),
        "busy": sum(c.busy for c in clients),
        "unknown": sum(len(c.unknown) for c in clients),
        "requests_per_s": round(requests / elapsed, 1),
        "p50_ms": round(percentile(latencies, 0.50), 2),
        "p99_ms": round(percentile(latencies, 0.99), 2),
        "mean_ms": round(statistics.fmean(latencies) / 1e6, 2) if latencies else 0.0,
        "errors": len(errors),
        "error_samples": errors[:10],
        "sessions_checked": len(checked),
        "lost_updates": len(lost),
        "lost_samples": lost[:10],
        "read_misses": sum(len(c.missed) for c in clients),
        "miss_samples": [m for c in clients for m in c.miss_samples][:10],
        "clients_on_every_worker": sum(len(conns) >= args.workers for conns in links),
        "sessions_on_every_worker": sum(n >= args.workers for n in served),
        "session_pid_counts": [dict(s.pids) for s in sessions],
        "server_processes": len(after),
        "server_cpu_us_per_request": round(cpu / max(requests, 1) * 1e6, 1),
    }


def _label(row: str) -> str:
    store = STORES[row][0]
    return f"ours: {store}" if store == row else f"ours: {store} ({row})"


def _count(n: int) -> str:
    return "0" if n == 0 else f"**{n:,}**"


def render(data: dict[str, Any]) -> str:
    """Return the ``load`` section of docs/benchmarks.md."""
    opts = data["options"]
    header = [
        "store",
        "requests (reads / writes)",
        "requests/s",
        "p50 ms",
        "p99 ms",
        "errors",
        "busy (503)",
        "sessions checked",
        "writes acknowledged",
        "lost updates",
        "read-your-writes misses",
        "sessions / clients on both workers",
        "server CPU µs/request",
    ]
    rows = []
    for r in data["results"]:
        if "skipped" in r:
            rows.append([_label(r["store"]), "skipped: " + r["skipped"]] + [""] * 11)
            continue
        both = (
            f"{r['sessions_on_every_worker']}/{r['sessions']},"
            f" {r['clients_on_every_worker']}/{r['clients']}"
        )
        everywhere = (r["sessions_on_every_worker"], r["clients_on_every_worker"]) == (
            r["sessions"],
            r["clients"],
        )
        rows.append(
            [
                _label(r["store"]),
                f"{r['requests']:,} ({r['reads']:,} / {r['writes']:,})",
                f"{r['requests_per_s']:,.0f}",
                f"{r['p50_ms']:.1f}",
                f"{r['p99_ms']:.1f}",
                _count(r["errors"]),
                f"{r['busy']:,}",
                f"{r['sessions_checked']}",
                f"{r['acknowledged']:,} ({r['retried']:,} retried)",
                "none" if r["lost_updates"] == 0 else f"**{r['lost_updates']:,}**",
                _count(r["read_misses"]),
                both if everywhere else f"**{both}**",
                f"{r['server_cpu_us_per_request']:,.0f}",
            ]
        )
    share = opts["write_share"]
    lines = [
        "## Load test (`make load`)",
        "",
        machine_markdown(data["machine"]),
        "",
        "An app with `/start`, `/mark?k=<client>-<seq>` (sets that one key) and"
        " `/read?c=<client>` (which of that client's keys the session holds), built with"
        " `session_factory_from_settings`, served by gunicorn:"
        f" {opts['workers']} worker processes × {opts['threads']} threads (`gthread`), the"
        " app loaded before the fork (`--preload`), on a loopback port."
        f" {opts['clients']} client threads in the benchmark process, in groups of"
        f" {opts['per_session']} sharing one session (so requests of a session overlap),"
        " each with one keep-alive `http.client` connection to each worker process (opened"
        " until the `X-Pid` answers name both) that it alternates between, send"
        f" {100 - 100 * share:.0f}% reads and {100 * share:.0f}% writes for"
        f" {opts['seconds']} s. Every write sets a key no other client sets (merges are"
        " key-level, so this stays checkable under overlap). A write answered 200 is"
        " acknowledged: every later read by the same client must show it (else a"
        " read-your-writes miss), and at the end, when every session's keys are read"
        " through each worker process, it must be there (else a lost update). A `503` with"
        " `Retry-After` from `SessionBusyError` is counted as busy; it and any other failed"
        " write are neither required nor forbidden afterwards, and the client goes on."
        " Errors are other statuses, broken connections, a changed session cookie and keys"
        " no client sent. Retried: acknowledged writes whose compare-and-set lost to another"
        " request of the session first (`SessionWriteConflict`), so they really overlapped."
        " Sessions / clients on both workers: sessions whose requests both worker"
        " processes answered, and clients that held a connection to each (`X-Pid`). A run"
        " fails (exit status 1) on any error, miss or loss, on a session or client that"
        " missed a worker, when fewer than half the writes were acknowledged, or when no"
        " write lost a compare-and-set first (its writes never overlapped).",
        "",
        md_table(header, rows),
        "",
        "The load generator shares the machine's 2 cores with the server, so requests/s is a"
        " floor for the server alone and latencies include the generator's own scheduling;"
        " server CPU µs/request is the CPU time of gunicorn's master and workers divided by"
        " requests. Each session grows by one key per acknowledged write, so later writes"
        " save a larger session than early ones. Memory is not in the table: each worker"
        " process would have its own sessions.",
    ]
    if opts.get("blind_writes"):
        lines += [
            "",
            "**Blind writes (`--blind-writes`, a test of the checks, not of a store): every"
            " save overwrote whatever was stored, with no version check.**",
        ]
    samples = [(r["store"], e) for r in data["results"] for e in r.get("error_samples", [])]
    samples += [(r["store"], e) for r in data["results"] for e in r.get("lost_samples", [])]
    samples += [(r["store"], e) for r in data["results"] for e in r.get("miss_samples", [])]
    if samples:
        lines += ["", "First problems:", ""] + [f"- {store}: {e}" for store, e in samples[:10]]
    return "\n".join(lines)


#: The numbers printed per store as it finishes.
SHOWN = (
    "requests_per_s",
    "errors",
    "busy",
    "acknowledged",
    "retried",
    "lost_updates",
    "read_misses",
    "sessions_on_every_worker",
    "sessions",
    "clients_on_every_worker",
)


def failures(result: dict[str, Any], args: argparse.Namespace) -> list[str]:
    """Return what went wrong in *result*, or why it checked too little to count as a pass.

    Errors, misses and losses; a store not run (its server unreachable);
    sessions or clients that did not reach every worker; fewer than half the
    writes acknowledged (a busy or unknown write is never checked); and, when
    clients share sessions and saves compare-and-set, no write that lost one
    first (then writes never overlapped, and the run proves nothing).
    """
    if "skipped" in result:
        return [f"not run: {result['skipped']}"]
    problems = [f"{result[k]} {k}" for k in ("errors", "lost_updates", "read_misses") if result[k]]
    if result["sessions_checked"] != result["sessions"]:
        problems.append(f"{result['sessions'] - result['sessions_checked']} sessions not checked")
    for what in ("sessions", "clients"):
        reached, every = result[f"{what}_on_every_worker"], result[what]
        if reached != every:
            problems.append(f"only {reached}/{every} {what} reached all {args.workers} workers")
    if result["writes"] and result["acknowledged"] * 2 < result["writes"]:
        problems.append(
            f"only {result['acknowledged']} of {result['writes']} writes acknowledged:"
            " the rest were never checked"
        )
    overlap_expected = args.per_session > 1 and not args.blind_writes
    if overlap_expected and result["acknowledged"] and not result["retried"]:
        problems.append("no write lost a compare-and-set first: writes never overlapped")
    return problems


def main(argv: list[str] | None = None) -> int:
    """Run the load test; return 1 if any store had an error, a miss or a loss."""
    parser = argparse.ArgumentParser(
        prog="python -m bench.load",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--stores", default=",".join(STORES), help="comma-separated rows")
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--clients", type=int, default=100)
    parser.add_argument("--per-session", type=int, default=4, help="clients sharing a session")
    parser.add_argument("--write-share", type=float, default=0.2)
    parser.add_argument("--workers", type=int, default=2, help="gunicorn worker processes")
    parser.add_argument("--threads", type=int, default=8, help="threads per worker")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--out", default=None, help="directory of benchmarks.md/.json")
    parser.add_argument(
        "--blind-writes",
        action="store_true",
        help="test only: saves overwrite (last writer wins); docs written only with --out",
    )
    args = parser.parse_args(argv)
    if args.clients < 1 or args.per_session < 1 or args.workers < 1:
        parser.error("--clients, --per-session and --workers must be at least 1")
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
        empty_servers([row], default_urls(), LOAD_TABLE)
        print(f"load: {row} for {args.seconds} s ...", file=sys.stderr, flush=True)
        try:
            result = run_store(row, args)
        finally:
            empty_servers([row], default_urls(), LOAD_TABLE)
        shown = {k: result[k] for k in SHOWN}
        print(f"load: {row}: {shown}", file=sys.stderr, flush=True)
        for sample in result["error_samples"] + result["lost_samples"] + result["miss_samples"]:
            print(f"load: {row}: {sample}", file=sys.stderr)
        results.append(result)
    options = {
        "seconds": args.seconds,
        "clients": args.clients,
        "per_session": args.per_session,
        "write_share": args.write_share,
        "workers": args.workers,
        "threads": args.threads,
        "server": "gunicorn (gthread, --preload)",
        "blind_writes": args.blind_writes,
    }
    data = {"machine": machine, "options": options, "results": results}
    from .report import DOCS

    skipped = [r["store"] for r in results if "skipped" in r]
    if args.out:
        path = update_docs("load", render(data), data, Path(args.out))
        print(f"wrote {path}", file=sys.stderr)
    elif skipped:  # never replace a measured row of the docs with "skipped"
        print(f"load: docs/benchmarks.md left as it was: {skipped} not run", file=sys.stderr)
    elif not args.blind_writes:
        path = update_docs("load", render(data), data, DOCS)
        print(f"wrote {path}", file=sys.stderr)
    problems = [(r["store"], p) for r in results for p in failures(r, args)]
    for store, problem in problems:
        print(f"load: {store} failed: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
