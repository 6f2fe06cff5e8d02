"""The load generator of :mod:`bench.load`: simulated browsers, and the server's CPU time.

Each :class:`Client` owns a session and two keep-alive connections; it sends
reads and increments of its counter and checks every answer against the
count it expects. :func:`verify` reads every counter again at the end.
"""

from __future__ import annotations

import http.client
import os
import random
import socket
import subprocess
import time
from dataclasses import dataclass
from dataclasses import field

__all__ = ["Client", "drive", "free_port", "percentile", "server_cpu", "verify", "wait_for_port"]


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


def drive(port: int, client: Client, deadline: float, write_share: float, seed: int) -> None:
    rng = random.Random(seed)
    conns = [http.client.HTTPConnection("127.0.0.1", port, timeout=30) for _ in range(2)]
    perf = time.perf_counter_ns
    turn = 0
    try:
        _request(conns[0], client, "/start")
        while time.monotonic() < deadline:
            write = rng.random() < write_share
            path = "/incr" if write else "/read"
            turn ^= 1  # alternate connections: both worker processes serve this session
            t0 = perf()
            try:
                body = _request(conns[turn], client, path)
            except (OSError, http.client.HTTPException, RuntimeError) as err:
                client.errors.append(f"{path}: {type(err).__name__}: {err}")
                conns[turn].close()
                conns[turn] = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
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
        for conn in conns:
            conn.close()


def verify(port: int, clients: list[Client]) -> tuple[int, int, list[str]]:
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


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, proc: subprocess.Popen[bytes], timeout: float = 30) -> None:
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
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as children:
            return [int(child) for child in children.read().split()]
    except OSError:
        return []


def server_cpu(pid: int, seen: dict[int, float]) -> None:
    """Record the CPU seconds of gunicorn's master *pid* and its workers in *seen*."""
    for process in (pid, *_children(pid)):
        seen[process] = _cpu_seconds(process)


def percentile(ordered: list[int], q: float) -> float:
    if not ordered:
        return 0.0
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] / 1e6
