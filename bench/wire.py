"""Count store traffic on the wire: a loopback proxy in front of a server.

Counting in the client (redis-py hooks, SQLAlchemy's execute events) misses
what a driver sends on its own (``BEGIN``, a ``ROLLBACK`` at pool check-in,
pings, ``SET`` statements, a statement prepared before it runs), and counting
on the server (``INFO commandstats``, memcached ``stats``) mixes in every
other client of a shared server. A :class:`CountingProxy` sits between the
benchmark's twin subjects and one server; the twins are counted one at a
time (each pass reads the counters before and after it), so a pass sees
exactly what the server receives from that subject and nothing else:

- **round trips**: a round trip starts when the client sends after the server
  last spoke (a pipeline of several commands is one);
- **commands**, by name: PostgreSQL simple queries and executions of
  (prepared) statements, named by their first SQL word; MariaDB/MySQL
  ``COM_QUERY`` by first SQL word, other commands as ``COM_<hex>``; Redis
  commands; memcached commands (data blocks skipped).

It is for counting passes only, never for timing: the extra hop costs time.
PostgreSQL clients must not negotiate TLS or GSS encryption through it
(:func:`proxied_url` turns them off), or there is nothing to read.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections import Counter
from urllib.parse import urlsplit
from urllib.parse import urlunsplit

__all__ = ["CountingProxy", "proxied_url"]

_PG_UNTYPED = (80877103, 80877104)  # SSLRequest, GSSENCRequest: a startup packet follows
_MEMCACHED_STORAGE = {b"set", b"add", b"replace", b"append", b"prepend", b"cas"}


def proxied_url(url: str, port: int, protocol: str) -> str:
    """Return *url* pointed at the proxy's *port* on the loopback interface."""
    if protocol == "memcached":
        return f"127.0.0.1:{port}"
    parts = urlsplit(url)
    netloc = parts.netloc.rpartition("@")
    host = f"127.0.0.1:{port}"
    netloc_new = f"{netloc[0]}@{host}" if netloc[1] else host
    query = parts.query
    if protocol == "postgresql":
        extra = "sslmode=disable&gssencmode=disable"
        query = f"{query}&{extra}" if query else extra
    return urlunsplit(parts._replace(netloc=netloc_new, query=query))


class CountingProxy:
    """Forward loopback connections to *target*, counting what clients send.

    :param protocol: ``postgresql``, ``mysql``, ``redis`` or ``memcached``.
    :param target: (host, port) of the server.
    """

    def __init__(self, protocol: str, target: tuple[str, int]) -> None:
        self.protocol, self.target = protocol, target
        self.round_trips = 0
        self.commands: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._sockets: list[socket.socket] = [self._listener]
        self._closed = False
        threading.Thread(target=self._accept, name="counting-proxy", daemon=True).start()

    def reset(self) -> None:
        """Count from zero."""
        with self._lock:
            self.round_trips = 0
            self.commands = Counter()

    def snapshot(self) -> tuple[int, Counter[str]]:
        """Return (round trips, commands) counted since the last reset."""
        with self._lock:
            return self.round_trips, Counter(self.commands)

    def close(self) -> None:
        """Stop accepting and drop every connection."""
        self._closed = True
        for sock in list(self._sockets):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    # -- plumbing -----------------------------------------------------------------

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
                server = socket.create_connection(self.target, timeout=10)
                server.settimeout(None)
            except OSError:
                if self._closed:
                    return
                continue
            for sock in (client, server):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._sockets += [client, server]
            link = {"waiting": False}  # the client sent and the server has not answered yet
            args = (server, client, link, False)
            threading.Thread(target=self._pump, args=args, daemon=True).start()
            args = (client, server, link, True)
            threading.Thread(target=self._pump, args=args, daemon=True).start()

    def _pump(
        self, source: socket.socket, sink: socket.socket, link: dict[str, bool], up: bool
    ) -> None:
        parser = _Parser(self.protocol) if up else None
        while True:
            try:
                chunk = source.recv(65536)
            except OSError:
                chunk = b""
            if not chunk:
                with contextlib.suppress(OSError):
                    sink.shutdown(socket.SHUT_WR)
                return
            if parser is not None:  # counted before the server sees it: no reply overtakes
                names = parser.feed(chunk)
                with self._lock:
                    if not link["waiting"]:
                        self.round_trips += 1
                    self.commands.update(names)
                link["waiting"] = True
            else:
                link["waiting"] = False
            try:
                sink.sendall(chunk)
            except OSError:
                return


class _Parser:
    """Split one client's byte stream into named commands."""

    def __init__(self, protocol: str) -> None:
        self.protocol = protocol
        self.buffer = b""
        self.started = protocol != "postgresql"
        self.prepared: dict[bytes, str] = {}  # PostgreSQL statement name -> first word
        self.portal = "?"

    def feed(self, chunk: bytes) -> list[str]:
        """Add *chunk*; return the names of the commands it completed."""
        self.buffer += chunk
        step = getattr(self, "_" + self.protocol)
        names: list[str] = []
        while True:
            used = step(names)
            if not used:
                return names
            self.buffer = self.buffer[used:]

    @staticmethod
    def _word(sql: bytes) -> str:
        words = sql.strip(b"\0 \t\r\n(").split(None, 1)
        return words[0].decode("ascii", "replace").upper() if words else "?"

    def _postgresql(self, names: list[str]) -> int:
        buf = self.buffer
        if not self.started:  # startup packets have no type byte
            if len(buf) < 8 or len(buf) < int.from_bytes(buf[:4], "big"):
                return 0
            self.started = int.from_bytes(buf[4:8], "big") not in _PG_UNTYPED
            return int.from_bytes(buf[:4], "big")
        if len(buf) < 5 or len(buf) < 1 + int.from_bytes(buf[1:5], "big"):
            return 0
        size = 1 + int.from_bytes(buf[1:5], "big")
        kind, body = buf[:1], buf[5:size]
        if kind == b"Q":
            names.append(self._word(body))
        elif kind == b"P":  # Parse: statement name, then its SQL
            name, _, rest = body.partition(b"\0")
            self.prepared[name] = self._word(rest.split(b"\0", 1)[0])
        elif kind == b"B":  # Bind: portal name, then statement name
            self.portal = self.prepared.get(body.split(b"\0")[1], "?")
        elif kind == b"E":
            names.append(self.portal)
        return size

    def _mysql(self, names: list[str]) -> int:
        buf = self.buffer
        if len(buf) < 4 or len(buf) < 4 + int.from_bytes(buf[:3], "little"):
            return 0
        size = 4 + int.from_bytes(buf[:3], "little")
        if buf[3] == 0 and size > 4:  # sequence 0: a command (the handshake reply is 1)
            command = buf[4]
            if command == 0x03:
                names.append(self._word(buf[5:size]))
            elif command != 0x01:  # COM_QUIT gets no reply
                names.append(f"COM_{command:02x}")
        return size

    def _redis(self, names: list[str]) -> int:
        buf = self.buffer
        end = buf.find(b"\r\n")
        if end < 0:
            return 0
        if buf[:1] != b"*":  # an inline command
            names.append(self._word(buf[:end]))
            return end + 2
        count, at, first = int(buf[1:end]), end + 2, None
        for _ in range(count):
            line = buf.find(b"\r\n", at)
            if line < 0:
                return 0
            length = int(buf[at + 1 : line])
            if len(buf) < line + 2 + length + 2:
                return 0
            if first is None:
                first = buf[line + 2 : line + 2 + length]
            at = line + 2 + length + 2
        names.append(self._word(first or b"?"))
        return at

    def _memcached(self, names: list[str]) -> int:
        buf = self.buffer
        end = buf.find(b"\r\n")
        if end < 0:
            return 0
        words = buf[:end].split()
        used = end + 2
        if words and (words[0] in _MEMCACHED_STORAGE or words[0] == b"ms"):
            size = int(words[4] if words[0] != b"ms" else words[2])
            if len(buf) < used + size + 2:
                return 0
            used += size + 2
        if words:
            names.append(words[0].decode("ascii", "replace").lower())
        return used
