"""Find what a session costs: cProfile of a scenario, and isolated steps of ours.

``python -m bench.profile ours-memory read`` runs the scenario of
:mod:`bench.run` under cProfile and prints own time per area (our modules one
by one, Pyramid, WebOb, the stdlib's json/hmac/..., drivers) and our
functions by cumulative time, per request. cProfile roughly doubles the cost
of every Python call, so read the shares, not the absolute numbers.

``--steps`` (ours only) instead times each step of our load and save path in
isolation, CPU time, best of several runs: the cost of a step without the
profiler's distortion (and without the cache misses of a full request, so a
lower bound).
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any

from .runner import SCENARIOS
from .runner import Options
from .runner import Runner
from .subjects import Context
from .subjects import all_subjects
from .wsgi import FakeClock

__all__ = ["main"]


def _area(filename: str) -> str:
    if "pyramid_sessionstore/" in filename:
        return "ours: " + filename.split("pyramid_sessionstore/", 1)[1]
    for name in ("pyramid", "webob", "redis", "sqlalchemy", "psycopg", "pymemcache", "beaker"):
        if f"/{name}/" in filename:
            return name
    if "/bench/" in filename:
        return "harness"
    if filename.startswith("~") or filename == "":
        return "builtins (C)"
    stem = filename.rsplit("/", 1)[-1].removesuffix(".py")
    return f"stdlib {stem}" if "python3" in filename else stem


def _profile(runner: Runner, scenario: str, requests: int, top: int) -> None:
    sc = next(s for s in SCENARIOS if s.name == scenario)
    runner.batch(sc, min(requests, 500))  # warm
    profiler = cProfile.Profile()
    profiler.enable()
    runner.batch(sc, requests)
    profiler.disable()
    stats = pstats.Stats(profiler)
    raw: dict[Any, Any] = stats.stats  # type: ignore[attr-defined]
    areas: dict[str, float] = defaultdict(float)
    ours: list[tuple[float, float, int, str]] = []
    total = 0.0
    for (filename, line, func), (_cc, calls, tottime, cumtime, _callers) in raw.items():
        area = _area(filename)
        if func.startswith("<built-in method") or func.startswith("<method"):
            # C functions count where they are: hmac, json, sockets...
            area = "C: " + func.removeprefix("<built-in method ").removeprefix("<method ")
            area = area.rstrip(">").split(" of ")[0]
        areas[area] += tottime
        total += tottime
        if "pyramid_sessionstore/" in filename:
            where = filename.split("pyramid_sessionstore/", 1)[1]
            ours.append((cumtime, tottime, calls, f"{where}:{line} {func}"))
    per = 1e6 / requests
    print(f"## {runner.subject.key} {scenario}: {total * per:.1f} µs/request under cProfile\n")
    print("| own time in | µs/request | share |\n|---|---|---|")
    for area, seconds in sorted(areas.items(), key=lambda kv: -kv[1])[:top]:
        print(f"| {area} | {seconds * per:.1f} | {100 * seconds / total:.1f}% |")
    print("\n| our function | cumulative µs | own µs | calls/request |\n|---|---|---|---|")
    for cum, tot, calls, name in sorted(ours, reverse=True)[:top]:
        print(f"| {name} | {cum * per:.1f} | {tot * per:.1f} | {calls / requests:.2f} |")
    print()


def _best_of(fn: Callable[[], Any], n: int = 3000, runs: int = 7) -> float:
    timings = []
    for _ in range(runs):
        t0 = time.thread_time_ns()
        for _ in range(n):
            fn()
        timings.append((time.thread_time_ns() - t0) / n / 1000)
    return min(timings)


def _steps(runner: Runner) -> None:
    """Time each step of our load/save path in isolation."""
    from pyramid.request import Request
    from pyramid.response import Response

    from pyramid_sessionstore import cookies
    from pyramid_sessionstore import lifecycle
    from pyramid_sessionstore import payload
    from pyramid_sessionstore.cookie_header import vary_on_cookie
    from pyramid_sessionstore.session import Session

    factory = runner.built.factory
    cookie = runner.pool[0]
    assert cookie is not None
    env = runner.driver._base("/read").copy()
    env["HTTP_COOKIE"] = f"{factory.cookie_name}={cookie}"
    store = factory.store
    steps: list[tuple[str, Callable[[], Any]]] = [
        ("WebOb: parse the Cookie header (request.cookies)", lambda: Request(env.copy()).cookies),
        ("factory.cookie.read (our own Cookie header scan)", lambda: factory.cookie.read(env)),
    ]
    if factory.client_side:
        sealed = store.unseal(cookie)
        assert sealed is not None
        data_payload = sealed[0]
        steps.append(("store.unseal (decrypt the cookie)", lambda: store.unseal(cookie)))
    else:
        verified = factory.signer.verify(cookie)
        key = cookies.store_key(verified.session_id)
        record = store.load(key, 1200)
        data_payload = record.data
        steps += [
            ("Signer.verify (regexes + HMAC)", lambda: factory.signer.verify(cookie)),
            ("store_key (sha256 of the id)", lambda: cookies.store_key(verified.session_id)),
            ("store.load", lambda: store.load(key, 1200)),
        ]
        if hasattr(factory.signer, "is_current"):
            steps.append(
                ("Signer.is_current (a second HMAC)", lambda: factory.signer.is_current(cookie))
            )
    header, data_bytes = payload.decode(data_payload)
    data = factory.serializer.loads(data_bytes)
    steps += [
        ("payload.decode (binary header)", lambda: payload.decode(data_payload)),
        ("serializer.loads (tagged JSON)", lambda: factory.serializer.loads(data_bytes)),
        ("Session(...)", lambda: Session(dict(data), created=header.created, session_id="x")),
        ("serializer.dumps (tag walk + encode)", lambda: factory.serializer.dumps(data)),
        ("payload.encode (binary header)", lambda: payload.encode(header, data_bytes)),
        ("new_session_id (secrets.token_urlsafe)", cookies.new_session_id),
    ]
    if not factory.client_side:
        steps.append(("Signer.sign", lambda: factory.signer.sign("x" * 43)))
    else:
        steps.append(("store.seal (encrypt)", lambda: store.seal(data_payload)))
    steps += [
        ("factory.set_cookie (on a new Response)", lambda: factory.set_cookie(Response(), cookie)),
        ("Vary: Cookie (on a new Response)", lambda: vary_on_cookie(Response().headerlist)),
        ("Response() alone (subtract from the two lines above)", Response),
        ("time.time()", time.time),
    ]
    _ = lifecycle
    request = Request(env.copy())
    request.registry = runner.driver.app.registry
    steps.append(("factory(request): the whole load", lambda: _load(factory, env)))
    print(f"## {runner.subject.key}: isolated steps, CPU µs (best of 7 × 3000)\n")
    print("| step | µs |\n|---|---|")
    for name, fn in steps:
        print(f"| {name} | {_best_of(fn):.2f} |")
    print()


def _load(factory: Any, env: dict[str, Any]) -> Any:
    from pyramid.request import Request

    return factory(Request(env.copy()))


def main(argv: list[str] | None = None) -> int:
    """Profile one subject; return the exit status."""
    parser = argparse.ArgumentParser(prog="python -m bench.profile", description=__doc__)
    parser.add_argument("subject", help="a subject key (python -m bench.run --list)")
    parser.add_argument("scenarios", nargs="*", default=["read", "write", "new"])
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--steps", action="store_true", help="time our steps in isolation")
    args = parser.parse_args(argv)
    subject = {s.key: s for s in all_subjects()}[args.subject]
    workdir = tempfile.mkdtemp(prefix="bench-profile-")
    clock = FakeClock()
    built = subject.build(Context(workdir, clock=clock.now))
    clock.install()
    opts = Options(1, 50, 0.2, 32, 1.0, 10, 1, 0)
    runner = Runner(subject, built, clock, opts)
    try:
        runner.check()
        runner.fill_pool()
        if "read-cold" in args.scenarios:
            runner.fill_cold()
        if args.steps:
            _steps(runner)
        else:
            for scenario in args.scenarios:
                _profile(runner, scenario, args.requests, args.top)
    finally:
        clock.uninstall()
        built.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
