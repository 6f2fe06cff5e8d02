"""Drive a WSGI app in-process, and a clock the harness can move forward.

Requests are prebuilt environ dicts (copied per call, since Pyramid and WebOb
write into them); the session cookie of each simulated browser is whatever
the previous response set. Only the WSGI call itself (app call, body
iteration, ``close``) is timed, with :func:`time.perf_counter_ns`.

It deliberately is not an HTTP client: no sockets, no parsing of requests;
that is :mod:`bench.load`'s job.
"""

from __future__ import annotations

import io
import sys
import time
from collections.abc import Callable
from collections.abc import Iterable
from typing import Any

__all__ = ["FakeClock", "Response", "WSGIDriver", "cookie_from_headers"]

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]

_REAL_TIME = time.time


class FakeClock:
    """Make ``time.time()`` run ahead of real time by an offset the harness advances.

    Session libraries decide what to write from timestamps (an ``accessed``
    time, a reissue threshold). Reading each session again after a pause,
    as real users do, needs time to pass between two reads of one session;
    advancing an offset reproduces that without sleeping. Every subject sees
    the same patched clock; each keeps its own offset (:meth:`use`), so the
    time one subject's requests advance does not age the others' sessions.
    Server-side expiry (Redis TTLs) still runs on real time, which is fine:
    it only ever sees seconds of it.
    """

    def __init__(self) -> None:
        self.offset = 0.0
        self._patched: list[tuple[Any, str, Any]] = []

    def now(self) -> float:
        """Return real time plus the offset."""
        return _REAL_TIME() + self.offset

    def advance(self, seconds: float) -> None:
        """Move this clock *seconds* forward."""
        self.offset += seconds

    def set(self, moment: float) -> None:
        """Make this clock read *moment* now (and run on from there)."""
        self.offset = moment - _REAL_TIME()

    def install(self) -> None:
        """Patch ``time.time``, and the modules that imported it by name."""
        if self._patched:
            return
        targets: list[tuple[Any, str]] = [(time, "time")]
        util = sys.modules.get("pyramid_session_redis.util")
        if util is not None and hasattr(util, "time_time"):
            targets.append((util, "time_time"))  # ``from time import time as time_time``
        for owner, name in targets:
            self._patched.append((owner, name, getattr(owner, name)))
            setattr(owner, name, self.now)

    def uninstall(self) -> None:
        """Restore what :meth:`install` patched."""
        while self._patched:
            owner, name, original = self._patched.pop()
            setattr(owner, name, original)


class Response:
    """What one WSGI call returned."""

    __slots__ = ("body", "headers", "ns", "status")

    def __init__(self, status: str, headers: list[tuple[str, str]], body: bytes, ns: int) -> None:
        self.status = status
        self.headers = headers
        self.body = body
        #: Nanoseconds the call took.
        self.ns = ns


def cookie_from_headers(headers: list[tuple[str, str]], name: str) -> str | None:
    """Return the value the response sets for cookie *name*; "" when it deletes it.

    None means the response leaves the cookie alone.
    """
    found: str | None = None
    prefix = name + "="
    for header, raw in headers:
        value = raw.strip()  # Beaker sends " session=..."
        if header.lower() != "set-cookie" or not value.startswith(prefix):
            continue
        pair, _, attrs = value.partition(";")
        found = pair[len(prefix) :]
        lowered = attrs.lower().replace(" ", "")
        if "max-age=0" in lowered.split(";") or "expires=thu,01jan1970" in lowered:
            found = ""
    return found


class WSGIDriver:
    """Call one WSGI app with prebuilt environs."""

    def __init__(self, app: WSGIApp, cookie_name: str) -> None:
        self.app = app
        self.cookie_name = cookie_name
        self._input = io.BytesIO(b"")
        self._bases: dict[str, dict[str, Any]] = {}

    def _base(self, path: str) -> dict[str, Any]:
        base = self._bases.get(path)
        if base is None:
            base = self._bases[path] = {
                "REQUEST_METHOD": "GET",
                "SCRIPT_NAME": "",
                "PATH_INFO": path,
                "QUERY_STRING": "",
                "SERVER_NAME": "localhost",
                "SERVER_PORT": "80",
                "SERVER_PROTOCOL": "HTTP/1.1",
                "HTTP_HOST": "localhost",
                "REMOTE_ADDR": "127.0.0.1",
                "wsgi.version": (1, 0),
                "wsgi.url_scheme": "http",
                "wsgi.input": self._input,
                "wsgi.errors": sys.stderr,
                "wsgi.multithread": False,
                "wsgi.multiprocess": False,
                "wsgi.run_once": False,
            }
        return base

    def call(self, path: str, cookie: str | None = None, value: int = 0) -> Response:
        """Make one request; *cookie* is the session cookie's value, *value* what /write sets."""
        env = self._base(path).copy()
        if cookie:
            env["HTTP_COOKIE"] = f"{self.cookie_name}={cookie}"
        env["bench.value"] = value
        captured: list[Any] = []

        def start_response(status: str, headers: list[tuple[str, str]], exc: Any = None) -> Any:
            captured[:] = (status, headers)
            return None

        perf = time.perf_counter_ns
        t0 = perf()
        result = self.app(env, start_response)
        try:
            body = b"".join(result)
        finally:
            close = getattr(result, "close", None)
            if close is not None:
                close()
        ns = perf() - t0
        return Response(captured[0], captured[1], body, ns)
