"""Count the store traffic of a batch of requests.

- Servers (Redis, PostgreSQL, MariaDB, memcached): on the wire, by a
  :class:`~bench.wire.CountingProxy` between the subject and the server
  (:class:`WireMeter`): round trips and commands as the server receives
  them, a driver's own ``BEGIN``/``ROLLBACK``/pings included, and nothing of
  other clients of the same server.
- SQLite (stdlib ``sqlite3``): statements from a trace callback on every
  connection opened while the meters are installed (``BEGIN`` and ``COMMIT``
  included: the library runs them as statements).

The counting hooks cost time, so they are only installed while counting,
never while timing.
"""

from __future__ import annotations

import sqlite3
import weakref
from collections import Counter
from dataclasses import dataclass
from dataclasses import field
from typing import Any

from .wire import CountingProxy

__all__ = ["Meter", "SQLiteMeter", "Traffic", "WireMeter"]


@dataclass
class Traffic:
    """Store traffic of one counted batch."""

    #: Round trips to the server.
    round_trips: int = 0
    #: Command or statement names and counts.
    commands: Counter[str] = field(default_factory=Counter)

    def merge(self, other: Traffic) -> None:
        """Add *other*'s counts to this one."""
        self.round_trips += other.round_trips
        self.commands.update(other.commands)


class Meter:
    """Count one engine's traffic between :meth:`begin` and :meth:`end`."""

    engine = ""

    def begin(self) -> None:
        """Start counting."""

    def end(self) -> Traffic:
        """Stop counting; return what was counted."""
        return Traffic()


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
        return self._traffic


# -- on the wire ----------------------------------------------------------------


class WireMeter(Meter):
    """Count what one :class:`~bench.wire.CountingProxy` forwards to its server."""

    def __init__(self, proxy: CountingProxy) -> None:
        self.proxy = proxy
        self.engine = proxy.protocol

    def begin(self) -> None:
        self.proxy.reset()

    def end(self) -> Traffic:
        round_trips, commands = self.proxy.snapshot()
        return Traffic(round_trips, commands)
