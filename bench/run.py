"""Time the same minimal Pyramid app with every session factory, in one run.

``python -m bench.run`` (``make bench``): for each subject (the bare app,
the peers, the Redis floor, ours on every store that exists and whose server
answers) it

1. checks the factory works (``/read`` after ``/write`` sees the value), and
   reports a broken one instead of timing it;
2. fills a pool of sessions (``/new``), warms up, and sizes a batch per
   scenario to about ``--batch-ms``;
3. counts the store traffic per request (untimed passes, see
   :mod:`bench.counters`);
4. times ``--repeats`` rounds; in each round every subject runs one batch of
   every scenario, in a shuffled order, so drift in the machine's load hits
   all subjects alike. The result per subject and scenario is the median
   over rounds of the mean µs/request of a batch.

Then it writes the tables and the targets to ``docs/benchmarks.md`` (section
``run``) and the raw numbers to ``docs/benchmarks.json``.

It is not a micro-benchmark of the stores alone: every request goes through
Pyramid's router, as in an application.
"""

from __future__ import annotations

import argparse
import gc
import os
import random
import secrets
import shutil
import sys
import tempfile
import time
import traceback
from collections import Counter
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .app import PAYLOAD
from .app import make_app
from .counters import MemcachedMeter
from .counters import Meter
from .counters import RedisMeter
from .counters import SQLAlchemyMeter
from .counters import SQLiteMeter
from .counters import Traffic
from .counters import quietest
from .report import DOCS
from .report import describe_machine
from .report import spread
from .report import update_docs
from .subjects import POSTGRES_URL
from .subjects import REDIS_URL
from .subjects import SQL_TABLE
from .subjects import Built
from .subjects import Subject
from .subjects import Unavailable
from .subjects import all_subjects
from .subjects import server_address
from .subjects import server_reachable
from .wsgi import FakeClock
from .wsgi import WSGIDriver
from .wsgi import cookie_from_headers

__all__ = ["SCENARIOS", "Scenario", "main"]


@dataclass(frozen=True)
class Scenario:
    """One kind of request."""

    name: str
    path: str
    #: pool: sessions read round-robin; hot: one session again and again; none: no cookie.
    cookies: str
    #: Whether the clock moves forward between requests (by ``--step`` seconds).
    moves_clock: bool
    title: str


SCENARIOS = (
    Scenario("nosession", "/nosession", "pool", False, "`/nosession`: never touches the session"),
    Scenario(
        "read",
        "/read",
        "pool",
        True,
        "`/read`: a pool of sessions read round-robin, time passing between reads",
    ),
    Scenario("read-hot", "/read", "hot", False, "`/read` hot: one session read over and over"),
    Scenario("write", "/write", "pool", True, "`/write`: one key set in an existing session"),
    Scenario("new", "/new", "none", True, "`/new`: a first visit creates a session"),
)


class BenchError(Exception):
    """A subject misbehaved during the run (it is reported as broken)."""


@dataclass
class Options:
    repeats: int
    batch_ms: float
    warmup_s: float
    pool: int
    step: float
    count_requests: int
    count_passes: int
    seed: int
    full_cycles: bool = True


class Runner:
    """One subject's app, its session pool and its measurements."""

    def __init__(self, subject: Subject, built: Built, clock: FakeClock, opts: Options) -> None:
        self.subject, self.built, self.clock, self.opts = subject, built, clock, opts
        self.driver = WSGIDriver(make_app(built.factory), built.cookie_name)
        self.pool: list[str | None] = [None] * opts.pool
        self.cursor = 0
        self.value = 0
        self.offset = 0.0
        self.sizes: dict[str, int] = {}
        self.samples: dict[str, list[float]] = defaultdict(list)
        self.cpu_samples: dict[str, list[float]] = defaultdict(list)
        self.last_cpu_us = 0.0
        self.traffic: dict[str, dict[str, Any]] = {}
        self.meters: list[Meter] = []

    @property
    def has_session(self) -> bool:
        return self.built.factory is not None

    def _request(self, sc: Scenario) -> int:
        if sc.cookies == "pool":
            index = self.cursor % len(self.pool)
            self.cursor += 1
        else:
            index = 0
        cookie = self.pool[index] if sc.cookies != "none" else None
        if sc.moves_clock:
            self.clock.offset += self.opts.step
        self.value += 1
        response = self.driver.call(sc.path, cookie, self.value)
        if not response.status.startswith("200"):
            raise BenchError(f"{sc.path} answered {response.status}")
        if cookie is not None:
            new = cookie_from_headers(response.headers, self.driver.cookie_name)
            if new == "":
                raise BenchError(f"{sc.path} ended the session (its cookie was deleted)")
            if new is not None:
                self.pool[index] = new
        return response.ns

    def batch(self, sc: Scenario, n: int) -> float:
        """Run *n* requests of *sc*; return the mean wall-clock µs per request.

        The mean CPU µs per request of this thread (which excludes time spent
        waiting for a server, and time this process was not scheduled) goes
        to :attr:`last_cpu_us`; it includes the harness's own per-request work
        (copying the environ, reading Set-Cookie), the same for every subject.
        """
        self.clock.offset = self.offset
        total = 0
        cpu0 = time.thread_time_ns()
        for _ in range(n):
            total += self._request(sc)
        self.last_cpu_us = (time.thread_time_ns() - cpu0) / n / 1000
        self.offset = self.clock.offset
        return total / n / 1000

    def check(self) -> None:
        """Raise BenchError unless a /read after a /write sees the value."""
        self.clock.offset = self.offset
        call = self.driver.call
        name = self.driver.cookie_name
        for path in ("/nosession", "/read", "/write", "/new"):
            response = call(path, None, 1)
            if not response.status.startswith("200"):
                raise BenchError(f"{path} without a cookie answered {response.status}")
        if not self.has_session:
            return
        first = call("/new", None, 0)
        cookie = cookie_from_headers(first.headers, name)
        if not cookie:
            raise BenchError("a first visit that stores data set no session cookie")
        seen = call("/read", cookie, 0)
        if seen.body != str(PAYLOAD["n"]).encode():
            raise BenchError(f"/read right after /new saw {seen.body!r}, not {PAYLOAD['n']!r}")
        cookie = cookie_from_headers(seen.headers, name) or cookie
        value = random.randrange(10**6, 10**7)
        wrote = call("/write", cookie, value)
        cookie = cookie_from_headers(wrote.headers, name) or cookie
        self.clock.advance(30)  # a pause, as between two clicks
        seen = call("/read", cookie, 0)
        if seen.body != str(value).encode():
            raise BenchError(f"/read after /write of {value} saw {seen.body!r}")
        quiet = call("/nosession", cookie, 0)
        if cookie_from_headers(quiet.headers, name) is not None:
            raise BenchError("/nosession, which never touches the session, set a cookie")
        self.offset = self.clock.offset

    def fill_pool(self) -> None:
        """Create the pool of sessions the /read and /write scenarios use."""
        if not self.has_session:
            # The bare app gets a cookie of the same size, so its environs match.
            self.pool = [secrets.token_urlsafe(48) for _ in self.pool]
            return
        self.clock.offset = self.offset
        for i in range(len(self.pool)):
            response = self.driver.call("/new", None, 0)
            cookie = cookie_from_headers(response.headers, self.driver.cookie_name)
            if not cookie:
                raise BenchError("/new set no cookie while filling the pool")
            self.pool[i] = cookie
            self.clock.advance(self.opts.step)
        self.offset = self.clock.offset

    def warm_up(self, sc: Scenario) -> None:
        """Run *sc* for ``warmup_s``; size its batches to about ``batch_ms``."""
        deadline = time.perf_counter() + self.opts.warmup_s
        done, us = 0, 0.0
        while time.perf_counter() < deadline or done < 20:
            us += self.batch(sc, 10) * 10
            done += 10
        per_request = us / done
        n = int(self.opts.batch_ms * 1000 / max(per_request, 0.1))
        self.sizes[sc.name] = max(10, min(n, 5000))

    def count(self, sc: Scenario) -> None:
        """Count the store traffic per request of *sc* (untimed)."""
        if not self.meters:
            return
        n = self.opts.count_requests
        if sc.moves_clock and sc.cookies == "pool" and self.opts.full_cycles:
            # Long enough for every session of the pool to live through 1260 s
            # of clock: it crosses a 600 s threshold (a timeout_trigger, a
            # reissue time) twice, so occasional writes show in the average.
            n = max(n, int(1260 / self.opts.step) + len(self.pool))
        passes: list[Traffic] = []
        for _ in range(self.opts.count_passes):
            for meter in self.meters:
                meter.begin()
            try:
                self.batch(sc, n)
            finally:
                traffic = Traffic()
                for meter in reversed(self.meters):
                    traffic.merge(meter.end())
            passes.append(traffic)
            if sum(traffic.commands.values()) <= sum(traffic.client_commands.values()):
                break  # nobody else used the server meanwhile
        best = quietest(passes)
        self.traffic[sc.name] = {
            "requests": n,
            "passes": len(passes),
            "round_trips": best.round_trips / n,
            "commands": {k: v / n for k, v in sorted(best.commands.items())},
            "client_commands": {k: v / n for k, v in sorted(best.client_commands.items())},
        }


def _meters(subject: Subject) -> list[Meter]:
    if subject.engine == "redis":
        return [RedisMeter(REDIS_URL)]
    if subject.engine == "postgresql":
        return [SQLAlchemyMeter()]
    if subject.engine == "sqlite":
        return [SQLiteMeter(), SQLAlchemyMeter()]
    if subject.engine == "memcached":
        return [MemcachedMeter(*server_address("memcached"))]
    return []


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _short_error(err: BaseException) -> str:
    text = f"{type(err).__name__}: {err}".strip()
    return text.splitlines()[0][:300] if text else type(err).__name__


# -- servers before and after -------------------------------------------------------


def _empty_redis_db() -> None:
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    try:
        client.flushdb()
    finally:
        client.close()


def _drop_sql_table() -> None:
    from sqlalchemy import create_engine
    from sqlalchemy import text

    engine = create_engine(POSTGRES_URL)
    try:
        with engine.begin() as conn:
            conn.execute(text(f"DROP TABLE IF EXISTS {SQL_TABLE}"))
    finally:
        engine.dispose()


def _cleanup_servers(used: set[str]) -> None:
    for kind, action in (("redis", _empty_redis_db), ("postgresql", _drop_sql_table)):
        if kind in used:
            try:
                action()
            except Exception as err:  # noqa: BLE001 - report, keep cleaning the others
                _log(f"cleanup of {kind} failed: {_short_error(err)}")


# -- the run ----------------------------------------------------------------------


def prepare(
    subjects: list[Subject], clock: FakeClock, opts: Options, workdir: str
) -> tuple[list[Runner], list[dict[str, Any]]]:
    """Build, check and warm up every subject; return the runners and every status."""
    SQLiteMeter.watch_connections()
    statuses: list[dict[str, Any]] = []
    built: list[tuple[Subject, Built]] = []
    for subject in subjects:
        status: dict[str, Any] = {
            "key": subject.key,
            "label": subject.label,
            "engine": subject.engine,
            "role": subject.role,
            "note": subject.note,
            "status": "ok",
            "reason": "",
            "config": {},
        }
        statuses.append(status)
        if subject.server is not None and not server_reachable(subject.server):
            host, port = server_address(subject.server)
            status.update(status="skipped", reason=f"{subject.server} at {host}:{port} unreachable")
            continue
        try:
            made = subject.build(workdir)
        except Unavailable as err:
            status.update(status="skipped", reason=str(err))
            continue
        except Exception as err:  # noqa: BLE001 - a peer that does not build is reported
            status.update(status="broken", reason=_short_error(err))
            continue
        status["config"] = made.config
        built.append((subject, made))
    clock.install()  # after the builds: some libraries import time.time by name
    runners: list[Runner] = []
    by_key = {s["key"]: s for s in statuses}
    for subject, made in built:
        status = by_key[subject.key]
        try:
            runner = Runner(subject, made, clock, opts)
            runner.check()
            runner.fill_pool()
            runner.meters = _meters(subject)
            for sc in SCENARIOS:
                runner.warm_up(sc)
        except Exception as err:  # noqa: BLE001 - any failure marks this subject broken
            status.update(status="broken", reason=_short_error(err))
            _log(f"{subject.key}: broken: {status['reason']}")
            _log("".join(traceback.format_exception(err)[-3:]).rstrip())
            made.close()
            continue
        runners.append(runner)
        _log(f"{subject.key}: ok, batches {runner.sizes}")
    return runners, statuses


def measure(runners: list[Runner], opts: Options, statuses: list[dict[str, Any]]) -> None:
    """Count traffic, then time every runner in interleaved rounds."""
    by_key = {s["key"]: s for s in statuses}
    for runner in list(runners):
        try:
            for sc in SCENARIOS:
                runner.count(sc)
        except Exception as err:  # noqa: BLE001 - mark broken, go on with the others
            by_key[runner.subject.key].update(status="broken", reason=_short_error(err))
            runners.remove(runner)
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
    parser.add_argument(
        "--step", type=float, default=1.0, help="seconds the clock moves per request (default 1)"
    )
    parser.add_argument("--count-requests", type=int, default=200, help="requests per count pass")
    parser.add_argument("--count-passes", type=int, default=3, help="max count passes")
    parser.add_argument("--only", default="", help="comma-separated subject keys to run")
    parser.add_argument("--skip", default="", help="comma-separated subject keys to leave out")
    parser.add_argument("--out", type=Path, default=DOCS, help="directory of benchmarks.md/.json")
    parser.add_argument("--seed", type=int, default=20240601)
    parser.add_argument(
        "--quick", action="store_true", help="tiny run for tests: few requests, no count passes"
    )
    parser.add_argument("--list", action="store_true", help="list the subjects and exit")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; return the exit status."""
    args = _parse(argv)
    from .targets import evaluate
    from .targets import render

    subjects = all_subjects()
    if args.list:
        for s in subjects:
            print(f"{s.key:24} {s.engine:11} {s.role:6} {s.label}")
        return 0
    only = {k for k in args.only.split(",") if k}
    skip = {k for k in args.skip.split(",") if k}
    unknown = (only | skip) - {s.key for s in subjects}
    if unknown:
        print(f"unknown subject(s): {', '.join(sorted(unknown))} (see --list)", file=sys.stderr)
        return 2
    subjects = [s for s in subjects if (not only or s.key in only) and s.key not in skip]
    opts = Options(
        repeats=args.repeats,
        batch_ms=args.batch_ms,
        warmup_s=args.warmup,
        pool=args.pool,
        step=args.step,
        count_requests=args.count_requests,
        count_passes=args.count_passes,
        seed=args.seed,
    )
    if args.quick:
        opts.repeats, opts.batch_ms, opts.warmup_s = min(opts.repeats, 3), 3.0, 0.0
        opts.pool, opts.count_requests, opts.count_passes = 4, 10, 1
        opts.full_cycles = False
    machine = describe_machine()
    used = {s.server for s in subjects if s.server and server_reachable(s.server)}
    _cleanup_servers(used)
    workdir = tempfile.mkdtemp(prefix="bench-")
    clock = FakeClock()
    runners: list[Runner] = []
    started = time.time()
    try:
        runners, statuses = prepare(subjects, clock, opts, workdir)
        measure(runners, opts, statuses)
        collect(runners, statuses)
    finally:
        clock.uninstall()
        for runner in runners:
            runner.built.close()
        _cleanup_servers(used)
        shutil.rmtree(workdir, ignore_errors=True)
    machine["loadavg_end"] = list(os.getloadavg())
    data: dict[str, Any] = {
        "machine": machine,
        "seconds": round(time.time() - started, 1),
        "options": vars(opts),
        "scenarios": [{"name": sc.name, "path": sc.path, "title": sc.title} for sc in SCENARIOS],
        "subjects": statuses,
    }
    data["targets"] = evaluate(data)
    path = update_docs("run", render(data), data, args.out)
    counts = Counter(s["status"] for s in statuses)
    _log(f"wrote {path} ({dict(counts)}) in {data['seconds']} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
