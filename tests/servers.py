"""Find the real servers the tests talk to; start one that is stopped.

Each server is found by an environment variable with a loopback default.
When it does not answer, the tests start it if its binary is on this machine;
when that fails they skip with a reason naming the address, or fail instead
when ``SESSIONSTORE_REQUIRE_SERVERS=1`` (as ``.ci/run`` sets).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
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


_START_COMMANDS: dict[str, list[list[str]]] = {
    "redis": [
        [
            "redis-server",
            "--daemonize",
            "yes",
            "--bind",
            "127.0.0.1",
            "--port",
            "{port}",
            "--save",
            "",
            "--appendonly",
            "no",
        ],
    ],
    "memcached": [["memcached", "-d", "-u", "root", "-l", "127.0.0.1", "-p", "{port}"]],
    "postgresql": [
        ["sh", "-c", "pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start"]
    ],
    "mysql": [
        ["start-stop-daemon", "--start", "--oknodo", "--background", "--exec", "/usr/sbin/mariadbd"]
    ],
}

_tried: set[str] = set()


def ensure_server(kind: str, url: str, default_port: int) -> tuple[str, int]:
    """Return *url*'s host and port once it answers, starting it if possible."""
    host, port = _host_port(url, default_port)
    if reachable(host, port):
        return host, port
    if kind not in _tried and host in {"127.0.0.1", "localhost"}:
        _tried.add(kind)
        for command in _START_COMMANDS[kind]:
            argv = [arg.replace("{port}", str(port)) for arg in command]
            if shutil.which(argv[0]) is None or (
                argv[0] == "start-stop-daemon" and not os.path.exists(argv[-1])
            ):
                continue
            subprocess.run(argv, capture_output=True, timeout=60, check=False)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not reachable(host, port):
            time.sleep(0.2)
    if not reachable(host, port):
        unavailable(f"{kind} server at {host}:{port} ({url}) is not reachable")
    return host, port
