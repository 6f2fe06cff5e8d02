"""Find the real servers the tests talk to; start one that is stopped.

Each server is found by an environment variable with a loopback default.
When it does not answer, the tests start it if its binary is on this machine,
and stop it again when the test process exits (a server found running is left
alone); when that fails they skip with a reason naming the address, or fail
instead when ``SESSIONSTORE_REQUIRE_SERVERS=1`` (as ``.ci/run`` sets).
"""

from __future__ import annotations

import atexit
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from urllib.parse import urlsplit

import pytest

REQUIRE_SERVERS = os.environ.get("SESSIONSTORE_REQUIRE_SERVERS") == "1"

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/15")
POSTGRES_URL = os.environ.get("POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
MYSQL_URL = os.environ.get("MYSQL_URL", "mysql+pymysql://root@127.0.0.1:3306/test")
MEMCACHED_SERVERS = os.environ.get("MEMCACHED_SERVERS", "127.0.0.1:11211")


def unavailable(reason: str) -> None:
    """Skip the test with *reason*, or fail it when servers are required."""
    if REQUIRE_SERVERS:
        pytest.fail(f"{reason} (SESSIONSTORE_REQUIRE_SERVERS=1)", pytrace=False)
    pytest.skip(reason)


def reachable(host: str, port: int, timeout: float = 1.0) -> bool:
    """Return whether a TCP connection to *host*:*port* succeeds."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def closed_port() -> int:
    """Return a loopback port nothing listens on (for unreachable-server tests)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def free_port() -> int:
    """Return a free loopback port for a server a test starts itself."""
    return closed_port()


def _host_port(url: str, default_port: int) -> tuple[str, int]:
    parts = urlsplit(url if "//" in url else f"tcp://{url}")
    return parts.hostname or "127.0.0.1", parts.port or default_port


# Redis and memcached run in the foreground as children of this process, so they
# can be stopped; PostgreSQL and MariaDB are started (and stopped) as services.
_FOREGROUND: dict[str, list[str]] = {
    "redis": ["redis-server", "--bind", "127.0.0.1", "--port", "{port}"]
    + ["--save", "", "--appendonly", "no"],
    "memcached": ["memcached", "-u", "root", "-l", "127.0.0.1", "-p", "{port}"],
}
_MARIADBD = "/usr/sbin/mariadbd"
_SERVICES: dict[str, tuple[list[str], list[str]]] = {  # start, stop
    "postgresql": (
        ["sh", "-c", "pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start"],
        ["sh", "-c", "pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main stop"],
    ),
    "mysql": (
        ["start-stop-daemon", "--start", "--oknodo", "--background", "--exec", _MARIADBD],
        ["start-stop-daemon", "--stop", "--oknodo", "--retry", "10", "--exec", _MARIADBD],
    ),
}

_tried: set[str] = set()
#: How to stop each server this process started, run when it exits (issue 10, item 17).
_started: list[Callable[[], object]] = []


def _start(kind: str, port: int) -> None:
    """Start a *kind* server on *port*, and remember how to stop it."""
    if kind in _FOREGROUND:
        argv = [arg.replace("{port}", str(port)) for arg in _FOREGROUND[kind]]
        if shutil.which(argv[0]) is None:
            return
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _started.append(lambda: (proc.terminate(), proc.wait(10)))
        return
    start, stop = _SERVICES[kind]
    if shutil.which(start[0]) is None or (
        start[0] == "start-stop-daemon" and not os.path.exists(start[-1])
    ):
        return
    subprocess.run(start, capture_output=True, timeout=60, check=False)
    _started.append(lambda: subprocess.run(stop, capture_output=True, timeout=60, check=False))


@atexit.register
def stop_started_servers() -> None:
    """Stop the servers this process started (not those it found running), newest first."""
    while _started:
        stop = _started.pop()
        try:
            stop()
        except (OSError, subprocess.SubprocessError) as err:  # report, then stop the others
            print(f"servers.py: could not stop a server it started: {err}", file=sys.stderr)


def ensure_server(kind: str, url: str, default_port: int) -> tuple[str, int]:
    """Return *url*'s host and port once it answers, starting it if possible.

    A server started here is stopped when the test process exits.
    """
    host, port = _host_port(url, default_port)
    if reachable(host, port):
        return host, port
    if kind not in _tried and host in {"127.0.0.1", "localhost"}:
        _tried.add(kind)
        _start(kind, port)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not reachable(host, port):
            time.sleep(0.2)
    if not reachable(host, port):
        unavailable(f"{kind} server at {host}:{port} ({url}) is not reachable")
    return host, port
