"""Time the same minimal Pyramid app with every session factory, in one run.

``python -m bench.run`` (``make bench``): for each subject (the bare app,
the peers, the floors, ours on every store that exists and whose server
answers) it

1. checks the factory works (``/read`` after ``/write`` sees the value), and
   reports a broken one instead of timing it;
2. fills its pools of sessions (``/new``): the pool the ``/read`` and
   ``/write`` scenarios go round, and the cold pool of more browsers than
   any verified-cookie cache holds; warms up, and sizes a batch per
   scenario to about ``--batch-ms``;
3. counts the store traffic per request in untimed passes: on a twin of the
   subject built against counting proxies (:mod:`bench.wire`), so round trips
   and commands are what the server receives; SQLite by trace callbacks;
4. times ``--repeats`` rounds; in each round every subject runs one batch of
   every scenario, in a shuffled order, so drift in the machine's load hits
   all subjects alike. The result per subject and scenario is the median
   over rounds of the mean µs/request of a batch;
5. when ours on PostgreSQL or MariaDB ran, compares SQLStore with the bare
   driver at store level (:mod:`bench.storelevel`).

Every store sees the benchmark's clock (see :mod:`bench.subjects`). Then it
writes the tables and the targets to ``docs/benchmarks.md`` (section
``run``) and the raw numbers to ``docs/benchmarks.json``.

It is not a micro-benchmark of the stores alone: every request goes through
Pyramid's router, as in an application.
"""

from __future__ import annotations

import argparse
import gc
import os
import random
import shutil
import sys
import tempfile
import time
import traceback
from collections import Counter
from pathlib import Path
from typing import Any

from .counters import SQLiteMeter
from .counters import WireMeter
from .report import DOCS
from .report import describe_machine
from .report import spread
from .report import update_docs
from .runner import SCENARIOS
from .runner import BenchError
from .runner import Options
from .runner import Runner
from .runner import Scenario
from .subjects import SERVERS
from .subjects import Built
from .subjects import Context
from .subjects import Subject
from .subjects import Unavailable
from .subjects import all_subjects
from .subjects import default_urls
from .subjects import reset_servers
from .subjects import server_address
from .subjects import server_reachable
from .wire import CountingProxy
from .wire import proxied_url
from .wsgi import FakeClock

__all__ = ["SCENARIOS", "BenchError", "Options", "Runner", "Scenario", "main"]

#: Browsers of a counting twin's cold pool: traffic per request does not depend on it.
TWIN_COLD_POOL = 40


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _short_error(err: BaseException) -> str:
    text = f"{type(err).__name__}: {err}".strip()
    return text.splitlines()[0][:300] if text else type(err).__name__


class Proxies:
    """One counting proxy per server kind, made on first use."""

    def __init__(self, urls: dict[str, str]) -> None:
        self.urls = urls
        self.by_kind: dict[str, CountingProxy] = {}

    def get(self, kind: str) -> CountingProxy:
        if kind not in self.by_kind:
            protocol = SERVERS[kind][2]
            self.by_kind[kind] = CountingProxy(protocol, server_address(kind, self.urls))
        return self.by_kind[kind]

    def context(self, ctx: Context, kind: str) -> Context:
        """Return *ctx* with the URL of server *kind* pointed at its proxy."""
        proxy = self.get(kind)
        urls = dict(ctx.urls)
        urls[kind] = proxied_url(urls[kind], proxy.port, proxy.protocol)
        return Context(ctx.workdir, urls, ctx.clock)

    def close(self) -> None:
        for proxy in self.by_kind.values():
            proxy.close()


def _status(subject: Subject) -> dict[str, Any]:
    return {
        "key": subject.key,
        "label": subject.label,
        "engine": subject.engine,
        "role": subject.role,
        "note": subject.note,
        "pair": subject.pair,
        "status": "ok",
        "reason": "",
        "config": {},
    }


def _ready(runner: Runner, twin: bool) -> None:
    """Check *runner*, fill its pool, warm it up (a twin: its cold pool too, nothing timed)."""
    runner.check()
    runner.fill_pool()
    if twin:
        runner.fill_cold(min(TWIN_COLD_POOL, runner.opts.cold_pool))
    for sc in SCENARIOS:
        if twin:  # connections open, statements prepared
            runner.batch(sc, 10)
        elif sc.cookies != "cold":  # warmed up once its browsers exist (see measure)
            runner.warm_up(sc)


def prepare(
    subjects: list[Subject], clock: FakeClock, opts: Options, ctx: Context, proxies: Proxies
) -> tuple[list[Runner], list[dict[str, Any]]]:
    """Build, check and warm up every subject (and its counting twin)."""
    SQLiteMeter.watch_connections()
    statuses: list[dict[str, Any]] = []
    built: list[tuple[Subject, Built, dict[str, Any]]] = []
    for subject in subjects:
        status = _status(subject)
        statuses.append(status)
        if subject.server is not None and not server_reachable(subject.server):
            host, port = server_address(subject.server)
            status.update(status="skipped", reason=f"{subject.server} at {host}:{port} unreachable")
            continue
        try:
            made = subject.build(ctx)
        except Unavailable as err:
            status.update(status="skipped", reason=str(err))
            continue
        except Exception as err:  # noqa: BLE001 - a peer that does not build is reported
            status.update(status="broken", reason=_short_error(err))
            continue
        status["config"] = made.config
        built.append((subject, made, status))
    clock.install()  # after the builds: some libraries import time.time by name
    runners: list[Runner] = []
    for subject, made, status in built:
        twin: Runner | None = None
        try:
            runner = Runner(subject, made, clock, opts)
            if subject.server is not None:
                twin_ctx = proxies.context(ctx, subject.server)
                twin = Runner(subject, subject.build(twin_ctx), clock, opts)
                _ready(twin, twin=True)
                twin.meters = [WireMeter(proxies.get(subject.server))]
                runner.counter = twin
            elif subject.engine == "sqlite":
                runner.meters = [SQLiteMeter()]
            _ready(runner, twin=False)
        except Exception as err:  # noqa: BLE001 - any failure marks this subject broken
            status.update(status="broken", reason=_short_error(err))
            _log(f"{subject.key}: broken: {status['reason']}")
            _log("".join(traceback.format_exception(err)[-3:]).rstrip())
            made.close()
            if twin is not None:
                twin.built.close()
            continue
        runners.append(runner)
        _log(f"{subject.key}: ok, batches {runner.sizes}")
    return runners, statuses


def measure(runners: list[Runner], opts: Options, statuses: list[dict[str, Any]]) -> None:
    """Count traffic, make the cold browsers, then time every runner in interleaved rounds."""
    by_key = {s["key"]: s for s in statuses}
    for runner in list(runners):
        try:
            for sc in SCENARIOS:
                runner.count(sc)
        except Exception as err:  # noqa: BLE001 - mark broken, go on with the others
            by_key[runner.subject.key].update(status="broken", reason=_short_error(err))
            runners.remove(runner)
    for runner in list(runners):  # just before timing: a server's own expiry runs on real time
        try:
            runner.fill_cold()
            for sc in SCENARIOS:
                if sc.cookies == "cold":
                    runner.warm_up(sc)
        except Exception as err:  # noqa: BLE001 - mark broken, go on with the others
            by_key[runner.subject.key].update(status="broken", reason=_short_error(err))
            runners.remove(runner)
    _log("cold browsers made; timing")
    rng = random.Random(opts.seed)
    for round_no in range(opts.repeats):
        order = list(runners)
        rng.shuffle(order)
        gc.collect()
        started = time.perf_counter()
        for runner in order:
            scenarios = list(SCENARIOS)
            rng.shuffle(scenarios)
            try:
                for sc in scenarios:
                    runner.samples[sc.name].append(runner.batch(sc, runner.sizes[sc.name]))
                    runner.cpu_samples[sc.name].append(runner.last_cpu_us)
            except Exception as err:  # noqa: BLE001 - mark broken, go on with the others
                by_key[runner.subject.key].update(status="broken", reason=_short_error(err))
                runners.remove(runner)
        _log(f"round {round_no + 1}/{opts.repeats}: {time.perf_counter() - started:.1f} s")


def collect(runners: list[Runner], statuses: list[dict[str, Any]]) -> None:
    """Put each runner's numbers into its status entry."""
    by_key = {s["key"]: s for s in statuses}
    for runner in runners:
        status = by_key[runner.subject.key]
        if status["status"] != "ok":
            continue
        results: dict[str, Any] = {}
        for sc in SCENARIOS:
            samples = runner.samples[sc.name]
            if not samples:
                continue
            traffic = runner.traffic.get(sc.name)
            results[sc.name] = {
                "us": spread(samples),
                "cpu_us": spread(runner.cpu_samples[sc.name]),
                "samples_us": [round(s, 3) for s in samples],
                "cpu_samples_us": [round(s, 3) for s in runner.cpu_samples[sc.name]],
                "requests_per_batch": runner.sizes[sc.name],
                "round_trips": None if traffic is None else traffic["round_trips"],
                "traffic": traffic,
            }
        status["results"] = results


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=21, help="timed rounds (default 21)")
    parser.add_argument("--batch-ms", type=float, default=60, help="target batch length")
    parser.add_argument("--warmup", type=float, default=0.3, help="warm-up seconds per scenario")
    parser.add_argument("--pool", type=int, default=32, help="sessions read round-robin")
    parser.add_argument("--cold-pool", type=int, default=None, help="browsers of read-cold")
    parser.add_argument(
        "--step", type=float, default=1.0, help="seconds the clock moves per request (default 1)"
    )
    parser.add_argument("--count-requests", type=int, default=200, help="requests per count pass")
    parser.add_argument("--only", default="", help="comma-separated subject keys to run")
    parser.add_argument("--skip", default="", help="comma-separated subject keys to leave out")
    parser.add_argument("--out", type=Path, default=DOCS, help="directory of benchmarks.md/.json")
    parser.add_argument("--seed", type=int, default=20240601)
    parser.add_argument(
        "--quick", action="store_true", help="tiny run for tests: few requests, small pools"
    )
    parser.add_argument("--list", action="store_true", help="list the subjects and exit")
    return parser.parse_args(argv)


def _options(args: argparse.Namespace) -> Options:
    opts = Options(
        repeats=args.repeats,
        batch_ms=args.batch_ms,
        warmup_s=args.warmup,
        pool=args.pool,
        step=args.step,
        count_requests=args.count_requests,
        count_passes=1,
        seed=args.seed,
    )
    if args.quick:
        opts.repeats, opts.batch_ms, opts.warmup_s = min(opts.repeats, 3), 3.0, 0.0
        opts.pool, opts.count_requests, opts.cold_pool = 4, 10, 20
        opts.full_cycles = False
    if args.cold_pool is not None:
        opts.cold_pool = args.cold_pool
    return opts


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; return the exit status."""
    args = _parse(argv)
    from . import features
    from . import storelevel
    from .report_run import render
    from .targets import evaluate

    subjects = all_subjects()
    if args.list:
        for s in subjects:
            print(f"{s.key:26} {s.engine:11} {s.role:6} {s.label}")
        return 0
    only = {k for k in args.only.split(",") if k}
    skip = {k for k in args.skip.split(",") if k}
    unknown = (only | skip) - {s.key for s in subjects}
    if unknown:
        print(f"unknown subject(s): {', '.join(sorted(unknown))} (see --list)", file=sys.stderr)
        return 2
    subjects = [s for s in subjects if (not only or s.key in only) and s.key not in skip]
    opts = _options(args)
    machine = describe_machine()
    urls = default_urls()
    used = {s.server for s in subjects if s.server and server_reachable(s.server)}
    for problem in reset_servers(used, urls):
        _log(problem)
    workdir = tempfile.mkdtemp(prefix="bench-")
    clock = FakeClock()
    ctx = Context(workdir, urls, clock.now)
    proxies = Proxies(urls)
    runners: list[Runner] = []
    started = time.time()
    store_level: dict[str, Any] = {}
    sealing: dict[str, float] = {}
    try:
        runners, statuses = prepare(subjects, clock, opts, ctx, proxies)
        measure(runners, opts, statuses)
        collect(runners, statuses)
        clock.uninstall()
        ran = {r.subject.engine for r in runners if r.subject.role == "ours"}
        kinds = [k for k in ("postgresql", "mariadb", "redis") if k in ran]
        if kinds:
            _log(f"store level: {', '.join(kinds)}")
            store_level = storelevel.measure(urls, kinds, opts.repeats, args.quick)
        sealing = features.isolated(200 if args.quick else 2000, 3 if args.quick else 7)
    finally:
        clock.uninstall()
        for runner in runners:
            runner.built.close()
            if runner.counter is not runner:
                runner.counter.built.close()
        proxies.close()
        for problem in reset_servers(used, urls):
            _log(problem)
        shutil.rmtree(workdir, ignore_errors=True)
    machine["loadavg_end"] = list(os.getloadavg())
    data: dict[str, Any] = {
        "machine": machine,
        "seconds": round(time.time() - started, 1),
        "options": vars(opts),
        "scenarios": [{"name": sc.name, "path": sc.path, "title": sc.title} for sc in SCENARIOS],
        "subjects": statuses,
        "store_level": store_level,
        "sealing": sealing,
    }
    data["targets"] = evaluate(data)
    path = update_docs("run", render(data), data, args.out)
    counts = Counter(s["status"] for s in statuses)
    _log(f"wrote {path} ({dict(counts)}) in {data['seconds']} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
