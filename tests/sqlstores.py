"""Build SQLStores for the tests, one table each (dropped at teardown); count their traffic."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections import Counter
from collections.abc import Callable
from collections.abc import Iterator
from typing import Any

import sqlalchemy as sa

from pyramid_sessionstore.stores.sql import SQLStore
from servers import MYSQL_URL
from servers import POSTGRES_URL
from servers import closed_port
from servers import ensure_server

#: What a contract module's ``store_factory`` fixture yields.
Factories = Iterator[Callable[[str], SQLStore]]
#: Per engine: the url and its ensure_server arguments.
SERVERS = {"postgresql": (POSTGRES_URL, 5432), "mysql": (MYSQL_URL, 3306)}


def server_url(kind: str) -> str:
    """Return the url of the *kind* server ("postgresql" or "mysql"), started if needed."""
    url, port = SERVERS[kind]
    ensure_server(kind, url, port)
    return url


def closed_url(kind: str) -> str:
    """Return a url of *kind* pointing at a closed loopback port."""
    scheme = SERVERS[kind][0].split("://")[0]
    return f"{scheme}://u:secret@127.0.0.1:{closed_port()}/test"


def tables(url: str, **options: Any) -> Factories:
    """Yield a factory of stores on *url*, one table per name; drop them all after."""
    made: list[SQLStore] = []

    def factory(table: str) -> SQLStore:
        made.append(SQLStore(url=url, table=table, **options))
        return made[-1]

    yield factory
    for store in made:
        store.close()  # returns its kept connections to the pool first
        store.table.drop(store.engine, checkfirst=True)
        store.engine.dispose()


def load_in_threads(store: SQLStore, key: str, threads: int, loads: int) -> None:
    """Have *threads* threads, released together, each load *key* *loads* times.

    A burst: the store ends up holding (or having returned) that many connections.
    """
    barrier = threading.Barrier(threads)

    def burst() -> None:
        barrier.wait()
        for _ in range(loads):
            store.load(key, 600)

    pool = [threading.Thread(target=burst) for _ in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()


class WireCounter:
    """A loopback proxy in front of PostgreSQL or MariaDB that counts what clients send.

    It counts on the wire, as the server receives it, so a ``BEGIN``, a
    ``ROLLBACK`` at pool check-in or a ping a driver sends on its own counts too
    (SQLAlchemy's execute events see none of those). PostgreSQL: a simple query
    (``Q``) or a ``Sync`` ends a round trip; a ``Q`` or an ``Execute`` is a
    statement, named by its first word (``Parse`` tells the words of a prepared
    statement). MariaDB: every command packet is a round trip; a ``COM_QUERY``
    is a statement.
    """

    def __init__(self, kind: str, url: str) -> None:
        self.kind = kind
        self.round_trips = 0
        self.parses = 0
        self.statements: Counter[str] = Counter()
        self._lock = threading.Lock()
        target = sa.engine.make_url(url)
        self._target = (target.host or "127.0.0.1", target.port or SERVERS[kind][1])
        self._listener = socket.create_server(("127.0.0.1", 0))
        port = self._listener.getsockname()[1]
        proxied = target.set(host="127.0.0.1", port=port)
        if kind == "postgresql":  # plain text on the wire, or there is nothing to read
            proxied = proxied.update_query_dict({"sslmode": "disable", "gssencmode": "disable"})
        self.url = proxied.render_as_string(hide_password=False)
        self._sockets: list[socket.socket] = [self._listener]
        threading.Thread(target=self._accept, daemon=True).start()

    def reset(self) -> None:
        """Start counting from zero."""
        with self._lock:
            self.round_trips, self.parses = 0, 0
            self.statements.clear()

    def close(self) -> None:
        """Stop the proxy and drop its connections."""
        for sock in self._sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            server = socket.create_connection(self._target)
            self._sockets += [client, server]
            threading.Thread(target=self._pump, args=(server, client, False), daemon=True).start()
            threading.Thread(target=self._pump, args=(client, server, True), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket, count: bool) -> None:
        """Copy *source* to *sink*; when *count*, count each message before passing it on."""
        buffer, state = b"", {"started": self.kind != "postgresql"}
        while True:
            try:
                chunk = source.recv(65536)
                if count:  # before the server sees it, so the reply never overtakes the count
                    buffer = self._messages(buffer + chunk, state)
                sink.sendall(chunk)
            except OSError:
                chunk = b""
            if not chunk:
                with contextlib.suppress(OSError):
                    sink.shutdown(socket.SHUT_WR)
                return

    def _messages(self, buffer: bytes, state: dict[str, Any]) -> bytes:
        """Count the whole messages at the start of *buffer*; return the rest."""
        while True:
            if self.kind != "postgresql":  # MariaDB: 3-byte length, sequence number
                if len(buffer) < 4 or len(buffer) < 4 + int.from_bytes(buffer[:3], "little"):
                    return buffer
                size = 4 + int.from_bytes(buffer[:3], "little")
                if buffer[3] == 0:  # sequence 0: a command
                    self._mariadb(buffer[4:size])
            elif not state["started"]:  # untyped: startup, SSL or GSS request
                if len(buffer) < 8 or len(buffer) < int.from_bytes(buffer[:4], "big"):
                    return buffer
                size = int.from_bytes(buffer[:4], "big")
                state["started"] = int.from_bytes(buffer[4:8], "big") not in (80877103, 80877104)
            else:
                if len(buffer) < 5 or len(buffer) < 1 + int.from_bytes(buffer[1:5], "big"):
                    return buffer
                size = 1 + int.from_bytes(buffer[1:5], "big")
                self._postgresql(buffer[:1], buffer[5:size], state)
            buffer = buffer[size:]

    def _count(self, round_trip: bool, statement: bytes | None, parse: bool = False) -> None:
        with self._lock:
            self.round_trips += round_trip
            self.parses += parse
            if statement is not None:
                self.statements[(statement.split(None, 1) or [b"?"])[0].decode().upper()] += 1

    def _postgresql(self, kind: bytes, body: bytes, names: dict[str, Any]) -> None:
        if kind == b"Q":
            self._count(True, body.rstrip(b"\0"))
        elif kind == b"S":
            self._count(True, None)
        elif kind == b"P":
            name, _, rest = body.partition(b"\0")
            names[name] = rest.split(b"\0", 1)[0].lstrip(b"( \n")
            self._count(False, None, parse=True)
        elif kind == b"B":
            names[b"\0portal"] = names.get(body.split(b"\0")[1], b"?")
        elif kind == b"E":
            self._count(False, names.get(b"\0portal", b"?"))

    def _mariadb(self, packet: bytes) -> None:
        command = packet[:1]
        if command == b"\x03":  # COM_QUERY
            self._count(True, packet[1:])
        elif command != b"\x01":  # anything but COM_QUIT gets a reply
            self._count(True, f"COM_{command.hex()}".encode())
