"""MemcachedStore: records in memcached, through pymemcache; one round trip per operation.

The version is memcached's own CAS value. A load is ``gats`` (get, touch and
return the CAS in one command), a peek ``mg ... v c t`` (no touch; the time
left); a create is a meta set in add mode (``ms ... ME c``), an update one on
the CAS (``ms ... C<cas> c``): both return the new CAS, so a save needs no
read-back (classic ``add``/``cas`` return only ``STORED``). ``touch``/``gat``
keep the CAS (checked against memcached 1.6): what a save returns is what a
load sees. Values start with a 4-byte mark: a foreign value is noticed.

Memcached evicts live items under memory pressure: a session may end early.
It cannot list keys (no ``keys``/``count``) and expires items itself (no
``delete_expired``). Several servers share keys by rendezvous hashing (as
pymemcache's HashClient does) without its failover: a key never moves to
another server, where a logged-out session could come back. Needs memcached
>= 1.6 (meta commands).
"""

from __future__ import annotations

import logging
import os
import re
import threading
from collections.abc import Sequence
from typing import Any
from typing import ClassVar

from ..exceptions import ConflictError
from ..exceptions import SessionTooLargeError
from ..exceptions import StoreError
from ..exceptions import StoreUnavailableError
from ..exceptions import missing_dependency
from .base import Converter
from .base import Record
from .base import as_bool
from .base import as_float
from .base import as_int
from .base import as_list

try:
    import pymemcache
    from pymemcache.client.base import Client
    from pymemcache.client.base import PooledClient
    from pymemcache.client.base import normalize_server_spec
    from pymemcache.client.rendezvous import RendezvousHash

    from ._memcached_commands import after_fork
    from ._memcached_commands import exptime
    from ._memcached_commands import gats
    from ._memcached_commands import meta_get
    from ._memcached_commands import meta_set
    from ._memcached_commands import reads_bytes

    # Down, timed out, closed mid-reply, pool exhausted (RuntimeError), errors it reports.
    _ERRORS: tuple[type[Exception], ...] = (pymemcache.MemcacheError, OSError, RuntimeError)
except ImportError:  # the OPTIONS table stays readable without the driver
    pymemcache = None
    _ERRORS = ()

__all__ = ["MemcachedStore"]

security = logging.getLogger("pyramid_sessionstore.security")

_MARK = b"pss\x01"
_CAS = re.compile(r"[0-9]{1,20}\Z")  # memcached's CAS values are 64-bit unsigned integers


def _as_servers(value: Any) -> list[str]:
    """Convert ``host:port`` words (``[v6]:port``, or a unix socket path) to a list."""
    servers = as_list(value)
    for server in servers:
        host, _, port = server.rpartition(":")
        if not server.startswith("/") and not (host and port.isdigit() and 0 < int(port) < 65536):
            raise ValueError(f"expected host:port or a socket path, got {server!r}")
    if not servers:
        raise ValueError("expected at least one host:port")
    return servers


def _as_optional_int(value: Any) -> int | None:
    """Convert a whole number >= 1; ``none`` means no limit."""
    if value is None or str(value).strip().lower() in {"", "none"}:
        return None
    if (number := as_int(value)) < 1:
        raise ValueError(f"expected a whole number >= 1 or none, got {value!r}")
    return number


class MemcachedStore:
    """Keep records in memcached; the version is the CAS value.

    :param servers: ``host:port`` (or socket paths); several share keys by hash.
        Default: ``127.0.0.1:11211``.
    :param prefix: prepended to every key. Default: ``session:``.
    :param connect_timeout: and *timeout*: seconds. Default: 2.
    :param no_delay: set ``TCP_NODELAY``. Default: true.
    :param max_pool_size: connections per server; past it, StoreUnavailableError.
        Default: no limit (one per concurrent thread).
    :param client: a ready pymemcache ``Client`` or ``PooledClient`` (one server,
        no ``ignore_exc``), used instead of *servers* and not closed.
    """

    #: memcached evicts live items when its memory is full (LRU).
    evicts_live_records: ClassVar[bool] = True
    OPTIONS: ClassVar[dict[str, Converter]] = {"servers": _as_servers, "prefix": str}
    OPTIONS |= {"connect_timeout": as_float, "timeout": as_float, "no_delay": as_bool}
    OPTIONS |= {"max_pool_size": _as_optional_int}
    CODE_ONLY: ClassVar[frozenset[str]] = frozenset({"client"})

    def __init__(
        self,
        *,
        servers: Sequence[str] = ("127.0.0.1:11211",),
        prefix: str = "session:",
        connect_timeout: float = 2.0,
        timeout: float = 2.0,
        no_delay: bool = True,
        max_pool_size: int | None = None,
        client: Client | PooledClient | None = None,
    ) -> None:
        if pymemcache is None:
            raise missing_dependency("MemcachedStore", "pymemcache", "memcached")
        if not prefix.isascii() or not prefix.isprintable() or " " in prefix or len(prefix) > 150:
            raise ValueError(f"prefix: printable ASCII without spaces, <= 150 chars: {prefix!r}")
        if min(connect_timeout, timeout) <= 0:
            raise ValueError("connect_timeout, timeout: expected seconds > 0")
        self.servers, self.prefix, self._owned = _as_servers(list(servers)), prefix, client is None
        self._where = "memcached at " + " ".join(self.servers)
        self._pid, self._fork_lock = os.getpid(), threading.Lock()
        # default_noreply=False: a write must say whether it happened.
        self._options: dict[str, Any] = {"connect_timeout": connect_timeout, "timeout": timeout}
        self._options |= {"no_delay": no_delay, "max_pool_size": max_pool_size}
        self._options |= {"default_noreply": False}
        if client is not None:
            if not isinstance(client, (Client, PooledClient)) or client.ignore_exc:
                raise ValueError("client: a pymemcache Client or PooledClient without ignore_exc")
            if not reads_bytes(client):
                raise ValueError("client: without a serde or deserializer (the store keeps bytes)")
            self._where = f"memcached at {client.server} (the client given)"
        self._clients: dict[str, Any] = {"given": client} if client else self._connect()
        self._ring = RendezvousHash(list(self._clients)) if len(self._clients) > 1 else None

    def __repr__(self) -> str:
        return f"MemcachedStore({self._where}, prefix={self.prefix!r})"

    def _connect(self) -> dict[str, Any]:
        return {s: PooledClient(normalize_server_spec(s), **self._options) for s in self.servers}

    def _client(self, name: str) -> Any:
        """Return the client of the server that holds *name*."""
        if self._pid != os.getpid():
            self._forked()
        if self._ring is None:
            return next(iter(self._clients.values()))
        return self._clients[self._ring.get_node(name)]

    def _error(self, err: Exception, action: str) -> StoreError:
        if isinstance(err, pymemcache.MemcacheUnknownCommandError):  # its text is our command
            text = "unknown command: meta commands need memcached >= 1.6"
        else:
            text = f"{type(err).__name__}: {err}"
        return StoreUnavailableError(f"{self._where} is unavailable ({action}): {text}", self)

    def load(self, key: str, ttl: int | None) -> Record | None:
        name = self.prefix + key
        try:
            found = gats(self._client(name), name.encode(), exptime(ttl))
        except _ERRORS as err:
            raise self._error(err, "load") from err
        return None if found is None else self._record(key, *found)

    def peek(self, key: str) -> tuple[Record, float | None] | None:
        """Return the record of *key* and when it expires: one ``mg``, which does not touch."""
        name = self.prefix + key
        try:
            found = meta_get(self._client(name), name.encode())
        except _ERRORS as err:
            raise self._error(err, "peek") from err
        if found is None or (record := self._record(key, found[0], found[1])) is None:
            return None
        return record, found[2]

    def _record(self, key: str, value: Any, cas: bytes) -> Record | None:
        """Return the record framed in *value*; delete what is not one (another's value)."""
        if not isinstance(value, bytes) or not value.startswith(_MARK):
            security.warning("MemcachedStore: deleting unreadable record %s…", key[:40])
            self.delete(key)
            return None
        return Record(value[len(_MARK) :], cas.decode())

    def save(self, key: str, data: bytes, ttl: int | None, expected_version: str | None) -> str:
        name = self.prefix + key
        client = self._client(name)
        if expected_version is None:
            mode = b"ME"  # add: only when the key is missing (or expired)
        elif _CAS.match(expected_version) and int(expected_version) < 1 << 64:
            mode = b"C" + expected_version.encode()  # only at this CAS value
        else:
            raise ConflictError(f"record {key[:12]}… has no version {expected_version!r}", self)
        value = _MARK + data
        try:
            reply = meta_set(client, name.encode(), value, exptime(ttl), mode)
        except _ERRORS as err:
            if b"too large" in str(err).encode() and isinstance(err, pymemcache.MemcacheError):
                raise self._too_large(client, key, len(value)) from err
            raise self._error(err, "save") from err
        if reply[:1] != [b"HD"]:  # NS: exists; EX: another CAS; NF: gone
            state = "exists" if expected_version is None else "changed, vanished or expired"
            raise ConflictError(f"record {key[:12]}… {state} in {self._where}", self)
        version = next((flag[1:] for flag in reply[1:] if flag[:1] == b"c"), b"0").decode()
        if version == "0":
            raise StoreUnavailableError(f"{self._where} runs with CAS disabled (-C)", self)
        return version

    def _too_large(self, client: Any, key: str, size: int) -> SessionTooLargeError:
        try:  # one more trip, on this failure only: what the limit is (memcached -I)
            limit = int(client.stats("settings").get(b"item_size_max", 1 << 20))
        except _ERRORS as err:
            raise self._error(err, "save") from err
        message = f"record {key[:12]}… is {size} bytes, over the {limit}-byte item limit"
        return SessionTooLargeError(f"{message} of {self._where} (memcached -I)", size, limit)

    def touch(self, key: str, ttl: int | None) -> bool:
        name = self.prefix + key
        try:
            return bool(self._client(name).touch(name, exptime(ttl), noreply=False))
        except _ERRORS as err:
            raise self._error(err, "touch") from err

    def delete(self, key: str) -> None:
        name = self.prefix + key
        try:
            self._client(name).delete(name, noreply=False)
        except _ERRORS as err:
            raise self._error(err, "delete") from err

    def close(self) -> None:
        """Close the pooled connections (not those of a client given by the caller)."""
        self._forked()  # in a forked process, only its own
        if self._owned:
            for client in self._clients.values():
                client.close()

    def _forked(self) -> None:
        """Stop using the sockets inherited through fork (see ``after_fork``), once per process."""
        with self._fork_lock:
            if self._pid != os.getpid():  # else another thread did it
                self._clients = after_fork(self._clients, self._owned, self._connect)
                self._pid = os.getpid()
