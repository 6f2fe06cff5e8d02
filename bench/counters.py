"""Count the store traffic of a batch of requests.

- Redis: round trips and command names on the client (every redis-py
  connection's ``send_packed_command`` is one round trip; a pipeline is one),
  and ``INFO commandstats`` deltas on the server (which also show the
  commands a Lua script ran).
- SQL (SQLAlchemy): statements from the ``before_cursor_execute`` event, and
  transactions from ``begin``/``commit``/``rollback``.
- SQLite (stdlib ``sqlite3``): statements from a trace callback on every
  connection opened while the meters are installed.
- memcached: ``stats`` deltas on the server (one command per round trip for
  the single-key commands sessions use).

Server-side deltas include whatever other clients of the same server did
meanwhile, so callers count several passes and keep the quietest
(:func:`quietest`). The counting hooks cost time, so they are only installed
while counting, never while timing.
"""

from __future__ import annotations

import socket
import sqlite3
import weakref
from collections import Counter
from collections.abc import Callable
from collections.abc import Sequence
from dataclasses import dataclass
from dataclasses import field
from typing import Any

__all__ = [
    "MemcachedMeter",
    "Meter",
    "RedisMeter",
    "SQLAlchemyMeter",
    "SQLiteMeter",
    "Traffic",
    "memcached_stats",
    "quietest",
]


@dataclass
class Traffic:
    """Store traffic of one counted batch."""

    #: Round trips to the server (client side, exact).
    round_trips: int = 0
    #: Command or statement names and counts (server side where the engine tells).
    commands: Counter[str] = field(default_factory=Counter)
    #: Command names as the client sent them (exact; for cross-checking).
    client_commands: Counter[str] = field(default_factory=Counter)

    def merge(self, other: Traffic) -> None:
        """Add *other*'s counts to this one."""
        self.round_trips += other.round_trips
        self.commands.update(other.commands)
        self.client_commands.update(other.client_commands)


class Meter:
    """Count one engine's traffic between :meth:`begin` and :meth:`end`."""

    engine = ""

    def begin(self) -> None:
        """Start counting."""

    def end(self) -> Traffic:
        """Stop counting; return what was counted."""
        return Traffic()


def quietest(passes: Sequence[Traffic]) -> Traffic:
    """Return the pass with the fewest server-side commands (others' traffic only adds)."""
    return min(passes, key=lambda t: (sum(t.commands.values()), t.round_trips))


# -- Redis ----------------------------------------------------------------------


class RedisMeter(Meter):
    """Count redis-py round trips in this process and commandstats on the server."""

    engine = "redis"

    def __init__(self, url: str) -> None:
        import redis

        self._redis = redis
        self._admin = redis.Redis.from_url(url)
        self._before: dict[str, int] = {}
        self._traffic = Traffic()
        self._saved: list[tuple[Any, str, Any]] = []

    def _commandstats(self) -> dict[str, int]:
        stats = self._admin.info("commandstats")
        return {name.removeprefix("cmdstat_"): int(v["calls"]) for name, v in stats.items()}

    def begin(self) -> None:
        from redis import connection

        self._before = self._commandstats()
        traffic = self._traffic = Traffic()
        original_send = connection.AbstractConnection.send_packed_command

        def send_packed_command(conn: Any, command: Any, check_health: bool = True) -> Any:
            traffic.round_trips += 1
            return original_send(conn, command, check_health)

        self._saved = [(connection.AbstractConnection, "send_packed_command", original_send)]
        connection.AbstractConnection.send_packed_command = send_packed_command  # type: ignore[method-assign]
        for packer in (connection.PythonRespSerializer, connection.HiredisRespSerializer):
            original_pack = packer.pack

            def pack(self: Any, *args: Any, _original: Any = original_pack) -> Any:
                name = args[0].decode() if isinstance(args[0], bytes) else str(args[0])
                traffic.client_commands[name.split()[0].lower()] += 1
                return _original(self, *args)

            self._saved.append((packer, "pack", original_pack))
            packer.pack = pack  # type: ignore[method-assign]

    def end(self) -> Traffic:
        while self._saved:
            owner, name, original = self._saved.pop()
            setattr(owner, name, original)
        after = self._commandstats()
        delta = Counter({name: calls - self._before.get(name, 0) for name, calls in after.items()})
        # Our own INFO calls are not the subject's traffic.
        delta.pop("info", None)
        self._traffic.commands = +delta
        return self._traffic


# -- SQLAlchemy -----------------------------------------------------------------


def _autocommit(conn: Any) -> bool:
    """Return whether a SQLAlchemy connection is in autocommit (engine or connection level)."""
    level = conn.get_execution_options().get("isolation_level")
    level = level or getattr(conn.dialect, "_on_connect_isolation_level", None)
    return bool(level == "AUTOCOMMIT")


class SQLAlchemyMeter(Meter):
    """Count statements and transactions on every SQLAlchemy engine."""

    engine = "sql"

    def __init__(self) -> None:
        self._traffic = Traffic()
        self._hooks: list[tuple[str, Callable[..., None]]] = []

    def begin(self) -> None:
        from sqlalchemy import event
        from sqlalchemy.engine import Engine

        traffic = self._traffic = Traffic()

        def on_execute(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
            traffic.round_trips += 1
            traffic.commands[statement.split(None, 1)[0].upper()] += 1

        def on_tx(name: str) -> Callable[..., None]:
            def hook(conn: Any, *args: Any) -> None:
                # In autocommit SQLAlchemy still marks transactions, but
                # nothing is sent: only count the ones the server sees.
                if not _autocommit(conn):
                    traffic.commands[name] += 1

            return hook

        self._hooks = [("before_cursor_execute", on_execute)]
        self._hooks += [(name, on_tx(name.upper())) for name in ("begin", "commit", "rollback")]
        for name, hook in self._hooks:
            event.listen(Engine, name, hook)

    def end(self) -> Traffic:
        from sqlalchemy import event
        from sqlalchemy.engine import Engine

        for name, hook in self._hooks:
            event.remove(Engine, name, hook)
        self._hooks = []
        traffic = self._traffic
        # Outside autocommit the DBAPI sends BEGIN and COMMIT as statements of
        # their own (psycopg does): each is a round trip too.
        traffic.round_trips += traffic.commands["BEGIN"] + traffic.commands["COMMIT"]
        traffic.round_trips += traffic.commands["ROLLBACK"]
        traffic.client_commands = Counter(traffic.commands)
        return traffic


# -- sqlite3 --------------------------------------------------------------------


class SQLiteMeter(Meter):
    """Count statements on stdlib ``sqlite3`` connections (trace callbacks)."""

    engine = "sqlite"
    _connections: weakref.WeakSet[sqlite3.Connection] = weakref.WeakSet()
    _patched = False

    @classmethod
    def watch_connections(cls) -> None:
        """Remember every sqlite3 connection opened from now on (call before building)."""
        if cls._patched:
            return
        original = sqlite3.connect

        def connect(*args: Any, **kwargs: Any) -> sqlite3.Connection:
            conn = original(*args, **kwargs)
            cls._connections.add(conn)
            return conn

        sqlite3.connect = connect  # type: ignore[assignment]
        cls._patched = True

    def __init__(self) -> None:
        self._traffic = Traffic()

    def begin(self) -> None:
        traffic = self._traffic = Traffic()

        def trace(statement: str) -> None:
            traffic.round_trips += 1
            traffic.commands[statement.split(None, 1)[0].upper()] += 1

        for conn in list(self._connections):
            try:
                conn.set_trace_callback(trace)
            except sqlite3.ProgrammingError:  # closed meanwhile
                continue

    def end(self) -> Traffic:
        for conn in list(self._connections):
            try:
                conn.set_trace_callback(None)
            except sqlite3.ProgrammingError:
                continue
        traffic = self._traffic
        traffic.client_commands = Counter(traffic.commands)
        return traffic


# -- memcached ------------------------------------------------------------------

#: memcached ``stats`` counters → the commands they count (one round trip each).
_MEMCACHED_COMMANDS = {
    "cmd_get": "get/gets",
    "cmd_set": "set/add/cas",
    "cmd_touch": "touch/gat/gats",
    "delete_hits": "delete",
    "delete_misses": "delete",
    "incr_hits": "incr",
    "incr_misses": "incr",
    "decr_hits": "decr",
    "decr_misses": "decr",
}


def memcached_stats(host: str, port: int, command: bytes = b"stats") -> dict[str, str]:
    """Return memcached's ``stats`` (or another stats *command*) as a dict."""
    with socket.create_connection((host, port), timeout=5) as sock:
        sock.sendall(command + b"\r\n")
        data = b""
        while not data.endswith(b"END\r\n"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    stats: dict[str, str] = {}
    for line in data.decode().splitlines():
        parts = line.split(" ", 2)
        if len(parts) == 3 and parts[0] == "STAT":
            stats[parts[1]] = parts[2]
    return stats


class MemcachedMeter(Meter):
    """Count memcached commands from ``stats`` deltas."""

    engine = "memcached"

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self._before: dict[str, str] = {}

    def begin(self) -> None:
        self._before = memcached_stats(self.host, self.port)

    def end(self) -> Traffic:
        after = memcached_stats(self.host, self.port)
        traffic = Traffic()
        for stat, command in _MEMCACHED_COMMANDS.items():
            delta = int(after.get(stat, 0)) - int(self._before.get(stat, 0))
            if delta:
                traffic.commands[command] += delta
        traffic.round_trips = sum(traffic.commands.values())
        traffic.client_commands = Counter(traffic.commands)
        return traffic
