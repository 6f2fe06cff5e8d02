"""One subject's app driven through its scenarios: the requests, the sessions, the batches.

A :class:`Runner` owns the WSGI app built with one subject's session factory,
the cookies of its simulated browsers and the clock offset of its sessions.
:mod:`bench.run` times runners in interleaved rounds; :mod:`bench.profile`
and :mod:`bench.ablate` drive one runner alone. A scenario is data
(:data:`SCENARIOS`); adding one is adding a row (and, for a new kind of
browser pool, a branch in :meth:`Runner.browser`).
"""

from __future__ import annotations

import random
import secrets
import time
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from .app import PAYLOAD
from .app import make_app
from .counters import Meter
from .counters import Traffic
from .subjects import Built
from .subjects import Subject
from .wsgi import FakeClock
from .wsgi import WSGIDriver
from .wsgi import cookie_from_headers

__all__ = ["COLD_POOL", "SCENARIOS", "BenchError", "Options", "Runner", "Scenario"]

try:  # more browsers than our verified-cookie cache holds, so every cookie is verified
    from pyramid_sessionstore.policy import VERIFIED_CACHE_SIZE as _CACHE
except ImportError:  # pragma: no cover - an older layout
    _CACHE = 10_000
COLD_POOL = _CACHE + _CACHE // 5


@dataclass(frozen=True)
class Scenario:
    """One kind of request."""

    name: str
    path: str
    #: pool: sessions read round-robin; hot: one session again and again; none: no
    #: cookie; cold: round-robin over more browsers than any cookie cache holds.
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
    Scenario(
        "read-cold",
        "/read",
        "cold",
        False,
        "`/read` cold: more browsers round-robin than a cookie cache holds",
    ),
    Scenario("read-hot", "/read", "hot", False, "`/read` hot: one session read over and over"),
    Scenario("write", "/write", "pool", True, "`/write`: one key set in an existing session"),
    # No time passes in /new: its batches would age the pool's sessions (one
    # clock per subject) without visiting them, past their timeout.
    Scenario("new", "/new", "none", False, "`/new`: a first visit creates a session"),
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
    #: Browsers of the cold scenario.
    cold_pool: int = COLD_POOL


class Runner:
    """One subject's app, its session pools and its measurements."""

    def __init__(self, subject: Subject, built: Built, clock: FakeClock, opts: Options) -> None:
        self.subject, self.built, self.clock, self.opts = subject, built, clock, opts
        self.driver = WSGIDriver(make_app(built.factory, built.subscribers), built.cookie_name)
        self.pool: list[str | None] = [None] * opts.pool
        self.cold: list[str | None] = []
        self.cold_moment = 0.0
        self.cursor = self.cold_cursor = 0
        self.value = 0
        self.offset = 0.0
        self.sizes: dict[str, int] = {}
        self.samples: dict[str, list[float]] = defaultdict(list)
        self.cpu_samples: dict[str, list[float]] = defaultdict(list)
        self.last_cpu_us = 0.0
        self.traffic: dict[str, dict[str, Any]] = {}
        self.meters: list[Meter] = []
        #: Where traffic is counted: this runner, or a twin built on counting proxies.
        self.counter: Runner = self

    @property
    def has_session(self) -> bool:
        return self.built.factory is not None

    def browser(self, sc: Scenario) -> tuple[list[str | None] | None, int]:
        """Return the cookie pool *sc* draws from (None: no cookie) and the index to use."""
        if sc.cookies == "pool":
            self.cursor += 1
            return self.pool, (self.cursor - 1) % len(self.pool)
        if sc.cookies == "cold":
            self.cold_cursor += 1
            return self.cold, (self.cold_cursor - 1) % len(self.cold)
        if sc.cookies == "hot":
            return self.pool, 0
        return None, 0

    def _request(self, sc: Scenario) -> int:
        pool, index = self.browser(sc)
        cookie = None if pool is None else pool[index]
        if sc.moves_clock:
            self.clock.offset += self.opts.step
        self.value += 1
        response = self.driver.call(sc.path, cookie, self.value)
        if not response.status.startswith("200"):
            raise BenchError(f"{sc.path} answered {response.status}")
        if pool is not None:
            new = cookie_from_headers(response.headers, self.driver.cookie_name)
            if new == "":
                raise BenchError(f"{sc.path} ended the session (its cookie was deleted)")
            if new is not None:
                pool[index] = new
            if sc.path == "/read" and self.has_session and not response.body.isdigit():
                # A session that ended would make the read a cheap miss: never time that.
                raise BenchError(f"{sc.name}: a browser's session was gone ({response.body!r})")
        return response.ns

    def batch(self, sc: Scenario, n: int) -> float:
        """Run *n* requests of *sc*; return the mean wall-clock µs per request.

        The mean CPU µs per request of this thread (which excludes time spent
        waiting for a server, and time this process was not scheduled) goes
        to :attr:`last_cpu_us`; it includes the harness's own per-request work
        (copying the environ, reading Set-Cookie), the same for every subject.
        The cold scenario runs at the moment its sessions were made (the real
        time since then taken back): its browsers come back only every few
        rounds, and time passing for them would add expiry refreshes that the
        scenario is not about.
        """
        if sc.cookies == "cold":  # a second after they were made: time runs forward
            self.clock.set(self.cold_moment + 1.0)
        else:
            self.clock.offset = self.offset
        total = 0
        cpu0 = time.thread_time_ns()
        for _ in range(n):
            total += self._request(sc)
        self.last_cpu_us = (time.thread_time_ns() - cpu0) / n / 1000
        if sc.cookies != "cold":
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

    def _fill(self, size: int, step: float, moment: float | None = None) -> list[str | None]:
        """Make *size* sessions, *step* seconds of clock apart (or all at *moment*)."""
        if not self.has_session:
            # The bare app gets cookies of the same size, so its environs match.
            return [secrets.token_urlsafe(48) for _ in range(size)]
        cookies: list[str | None] = []
        for _ in range(size):
            if moment is not None:
                self.clock.set(moment)
            response = self.driver.call("/new", None, 0)
            cookie = cookie_from_headers(response.headers, self.driver.cookie_name)
            if not cookie:
                raise BenchError("/new set no cookie while filling a pool")
            cookies.append(cookie)
            self.clock.advance(step)
        return cookies

    def fill_pool(self) -> None:
        """Create the sessions of the pool the /read and /write scenarios go round."""
        self.clock.offset = self.offset
        self.pool = self._fill(len(self.pool), self.opts.step)
        self.offset = self.clock.offset

    def fill_cold(self, size: int | None = None) -> None:
        """Create the browsers of the cold scenario, all at this moment of the clock.

        Fill them shortly before they are read: a server's own expiry (Redis,
        memcached) runs on real time, and each of them is read only every
        few rounds.
        """
        self.clock.offset = self.offset
        self.cold_moment = self.clock.now()
        size = self.opts.cold_pool if size is None else size
        self.cold = self._fill(size, 0.0, moment=self.cold_moment)
        self.clock.offset = self.offset

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
        """Count the store traffic per request of *sc* (untimed), on :attr:`counter`."""
        runner = self.counter
        if not runner.meters:
            return
        n = self.opts.count_requests
        if sc.moves_clock and sc.cookies == "pool" and self.opts.full_cycles:
            # Long enough for every session of the pool to live through 1260 s
            # of clock: it crosses a 600 s threshold (a timeout_trigger, a
            # reissue time) twice, so occasional writes show in the average.
            n = max(n, int(1260 / self.opts.step) + len(self.pool))
        if sc.cookies == "cold" and not runner.cold:  # counted before the timed pool is made
            runner.fill_cold(min(40, self.opts.cold_pool))
        for meter in runner.meters:
            meter.begin()
        try:
            runner.batch(sc, n)
        finally:
            traffic = Traffic()
            for meter in reversed(runner.meters):
                traffic.merge(meter.end())
        self.traffic[sc.name] = {
            "requests": n,
            "round_trips": traffic.round_trips / n,
            "commands": {k: v / n for k, v in sorted(traffic.commands.items())},
        }
