"""The load generator of :mod:`bench.load`: shared sessions, checked writes, the server's CPU.

Clients come in groups that share one session cookie (:class:`Shared`), so
requests of one session overlap. Each :class:`Client` holds one keep-alive
connection to each worker process of the server (:func:`pin` opens
connections until the answers' ``X-Pid`` headers name every worker) and
alternates between them, so a session is read and written in every worker
process at once.

What is checked (:func:`drive`, :func:`verify`):

- a write is ``/mark?k=<client>-<seq>``, which sets that one key; merges are
  key-level, so no other request may remove it. A 200 makes it
  *acknowledged*; a 503 with ``Retry-After`` and body ``busy`` (the app's
  answer to :class:`~pyramid_sessionstore.SessionBusyError`) is counted as
  *busy*; any other answer, or a broken connection, is an error. A write
  that was not acknowledged is *unknown*: it may or may not have landed, so
  it is neither required nor forbidden afterwards, and the client goes on;
- a read is ``/read?c=<client>``, which answers the sequence numbers of that
  client's keys in the session. Every key the client had acknowledged before
  sending the read must be there: a missing one is a *read-your-writes
  miss* (a lost update, or a stale read); a key the client never sent is an
  error;
- the session cookie never changes: a response that sets another one (the
  session was replaced by a new one) is an error;
- at the end every session's keys are read through each worker process;
  every acknowledged key missing from either view is a *lost update*.

Transport errors are counted apart from misses and losses.
"""

from __future__ import annotations

import http.client
import os
import random
import socket
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Collection
from dataclasses import dataclass
from dataclasses import field
from typing import NamedTuple

__all__ = [
    "ATTEMPTS_HEADER",
    "PID_HEADER",
    "Client",
    "Shared",
    "drive",
    "free_port",
    "open_sessions",
    "percentile",
    "pin",
    "server_cpu",
    "verify",
    "wait_for_port",
    "wait_for_workers",
]

#: The response header that names the worker process (its pid).
PID_HEADER = "X-Pid"
#: The response header of a write that took more than one compare-and-set.
ATTEMPTS_HEADER = "X-Attempts"
#: Connections :func:`pin` may open looking for one to each worker process.
PIN_TRIES = 200
#: Samples of each kind of problem kept per client.
SAMPLES = 5


@dataclass
class Shared:
    """One session several clients use at once, and what the end check found."""

    index: int
    cookie: str
    #: Worker pid -> requests of this session it answered (over every client; by :func:`verify`).
    pids: Counter[str] = field(default_factory=Counter)
    #: Acknowledged keys missing at the end, from any worker's view.
    lost: list[str] = field(default_factory=list)
    checked: bool = False


@dataclass
class Client:
    """One simulated browser tab: its session, the keys it wrote and what it saw."""

    index: int
    session: Shared
    seq: int = 0
    #: Sequence numbers of its writes answered 200.
    acked: set[int] = field(default_factory=set)
    #: Sequence numbers of its writes with no 200 (busy, error, broken connection).
    unknown: set[int] = field(default_factory=set)
    #: Acknowledged sequence numbers that a later read of this client lacked.
    missed: set[int] = field(default_factory=set)
    reads: int = 0
    writes: int = 0
    busy: int = 0
    #: Acknowledged writes that lost a compare-and-set first (they overlapped another).
    retried: int = 0
    errors: list[str] = field(default_factory=list)
    miss_samples: list[str] = field(default_factory=list)
    latencies_ns: list[int] = field(default_factory=list)
    pids: Counter[str] = field(default_factory=Counter)


class Answer(NamedTuple):
    status: int
    body: str
    pid: str
    #: The session cookie value the response set, or None.
    cookie: str | None
    retry_after: str | None
    attempts: int


def _request(conn: http.client.HTTPConnection, path: str, cookie: str) -> Answer:
    conn.request("GET", path, headers={"Cookie": f"session={cookie}"} if cookie else {})
    response = conn.getresponse()
    body = response.read().decode()
    set_cookie = None
    for name, value in response.getheaders():
        if name.lower() == "set-cookie" and value.startswith("session="):
            set_cookie = value.split(";", 1)[0].removeprefix("session=")
    pid = response.getheader(PID_HEADER) or "?"
    attempts = int(response.getheader(ATTEMPTS_HEADER) or 1)
    retry_after = response.getheader("Retry-After")
    return Answer(response.status, body, pid, set_cookie, retry_after, attempts)


def _connect(port: int) -> http.client.HTTPConnection:
    return http.client.HTTPConnection("127.0.0.1", port, timeout=30)


def pin(port: int, wanted: int) -> dict[str, http.client.HTTPConnection]:
    """Return keep-alive connections to up to *wanted* distinct worker processes.

    The kernel hands a new connection to whichever worker accepts first, so
    this opens connections (``/whoami``, no session) until the answers have
    named *wanted* pids, closing the duplicates. Returns them by worker pid.
    """
    found: dict[str, http.client.HTTPConnection] = {}
    for _ in range(PIN_TRIES):
        conn = _connect(port)
        try:
            pid = _request(conn, "/whoami", "").pid
        except (OSError, http.client.HTTPException):
            conn.close()
            time.sleep(0.05)
            continue
        if pid in found:
            conn.close()
            time.sleep(0.005)  # let another worker's accept loop have the next one
        else:
            found[pid] = conn
        if len(found) >= wanted:
            break
    return found


def wait_for_workers(port: int, wanted: int, timeout: float = 30) -> None:
    """Return once *wanted* worker processes answer (the master listens before they do)."""
    deadline = time.monotonic() + timeout
    while True:
        conns = pin(port, wanted)
        for conn in conns.values():
            conn.close()
        if len(conns) >= wanted:
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"only {len(conns)} worker process(es) answered in {timeout} s")
        time.sleep(0.2)


def open_sessions(port: int, count: int) -> list[Shared]:
    """Create *count* sessions (``/start``) and return them."""
    sessions = []
    conn = _connect(port)
    try:
        for index in range(count):
            answer = _request(conn, "/start", "")
            if answer.status != 200 or not answer.cookie:
                raise RuntimeError(f"/start answered {answer.status} with no session cookie")
            sessions.append(Shared(index, answer.cookie))
    finally:
        conn.close()
    return sessions


def _seqs(body: str) -> set[int]:
    """Return the sequence numbers a ``/read`` answered (:raises ValueError: for anything else)."""
    return {int(s) for s in body.split()}


def drive(
    port: int,
    client: Client,
    conns: list[http.client.HTTPConnection],
    deadline: float,
    write_share: float,
    seed: int,
) -> None:
    """Send *client*'s reads and writes until *deadline*, alternating over *conns*."""
    try:
        _drive(port, client, conns, deadline, write_share, seed)
    except BaseException as err:  # noqa: BLE001 - a client that stops early is an error
        client.errors.append(f"client {client.index} stopped early: {type(err).__name__}: {err}")
    finally:
        for conn in conns:
            conn.close()


def _drive(
    port: int,
    client: Client,
    conns: list[http.client.HTTPConnection],
    deadline: float,
    write_share: float,
    seed: int,
) -> None:
    rng = random.Random(seed)
    perf = time.perf_counter_ns
    cookie = client.session.cookie
    turn = rng.randrange(len(conns))
    while time.monotonic() < deadline:
        write = rng.random() < write_share
        if write:
            client.seq += 1
            path = f"/mark?k={client.index}-{client.seq}"
        else:
            path = f"/read?c={client.index}"
            expected = set(client.acked)  # every write acknowledged before this read
        turn = (turn + 1) % len(conns)
        t0 = perf()
        try:
            answer = _request(conns[turn], path, cookie)
        except (OSError, http.client.HTTPException, ValueError) as err:
            client.errors.append(f"{path}: {type(err).__name__}: {err}")
            if write:
                client.unknown.add(client.seq)
            conns[turn].close()
            conns[turn] = _connect(port)  # to whichever worker accepts it
            continue
        client.latencies_ns.append(perf() - t0)
        if answer.pid == "?":
            client.errors.append(f"{path}: answered without {PID_HEADER}")
        else:
            client.pids[answer.pid] += 1
        if write:
            client.writes += 1
        else:
            client.reads += 1
        if answer.cookie is not None and answer.cookie != cookie:
            client.errors.append(f"{path}: the response set another session cookie")
            if write:
                client.unknown.add(client.seq)
            continue
        if answer.status == 503 and answer.retry_after and answer.body == "busy":
            client.busy += 1
            if write:
                client.unknown.add(client.seq)
            continue
        if answer.status != 200:
            client.errors.append(f"{path}: answered {answer.status}: {answer.body[:80]!r}")
            if write:
                client.unknown.add(client.seq)
            continue
        if write:
            client.acked.add(client.seq)
            client.retried += answer.attempts > 1
            continue
        try:
            present = _seqs(answer.body)
        except ValueError:
            client.errors.append(f"{path}: answered {answer.body[:80]!r}, not key numbers")
            continue
        missing = expected - present
        if missing:
            fresh = missing - client.missed
            client.missed |= missing
            if fresh and len(client.miss_samples) < SAMPLES:
                client.miss_samples.append(
                    f"client {client.index} (session {client.session.index}): read through"
                    f" pid {answer.pid} lacks acknowledged write(s) {sorted(fresh)[:5]}"
                )
        strange = present - client.acked - client.unknown
        if strange:
            client.errors.append(f"{path}: keys never sent {sorted(strange)[:5]}")


def verify(port: int, sessions: list[Shared], clients: list[Client], workers: int) -> None:
    """Read every session's keys through each worker process; note the lost ones.

    Fills :attr:`Shared.lost` and :attr:`Shared.checked`; a session that could
    not be read through some worker is not checked.
    """
    acked: dict[int, set[str]] = {s.index: set() for s in sessions}
    for client in clients:
        acked[client.session.index].update(f"{client.index}-{n}" for n in client.acked)
    for client in clients:
        client.session.pids.update(client.pids)
    conns = list(pin(port, workers).values())
    try:
        for session in sessions:
            views = []
            for conn in conns:
                try:
                    answer = _request(conn, "/read", session.cookie)
                except (OSError, http.client.HTTPException):
                    continue
                if answer.status == 200 and answer.cookie in (None, session.cookie):
                    views.append(set(answer.body.split()))
            session.checked = len(views) == workers  # read through every worker process
            if session.checked:
                lost = [k for k in acked[session.index] if any(k not in v for v in views)]
                session.lost = sorted(lost, key=lambda k: tuple(map(int, k.split("-"))))
    finally:
        for conn in conns:
            conn.close()


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


def empty_servers(kinds: Collection[str], urls: dict[str, str], table: str) -> None:
    """Empty a scenario's Redis db and drop its SQL *table*, on the servers in *kinds*."""
    if "redis" in kinds:
        import redis

        client = redis.Redis.from_url(urls["redis"])
        try:
            client.flushdb()
        finally:
            client.close()
    for kind in ("postgresql", "mariadb"):
        if kind in kinds:
            import sqlalchemy as sa

            engine = sa.create_engine(urls[kind], isolation_level="AUTOCOMMIT")
            try:
                with engine.connect() as conn:
                    conn.execute(sa.text(f"DROP TABLE IF EXISTS {table}"))
            finally:
                engine.dispose()


def stop_after(seconds: float) -> None:
    """End this process after *seconds*, whatever it is doing: a served app's watchdog.

    Armed in gunicorn's master (``--preload``), so the server ends by itself if
    the benchmark dies or hangs (the workers follow their master).
    """

    def stop_by_itself() -> None:
        time.sleep(seconds)
        os._exit(3)

    threading.Thread(target=stop_by_itself, daemon=True).start()
