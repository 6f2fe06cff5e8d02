"""RedisStore: records in Redis or Valkey, standalone, behind Sentinel, or in a Cluster.

A record is one string key: a 20-byte header (``pss1``, a 16-hex-digit version),
then the data; so every operation is single-key (single-slot on Cluster) and one
round trip: ``GETEX`` loads and refreshes the expiry, ``SET NX EX`` creates, Lua
scripts (``EVALSHA``) update conditionally or peek (``GET``, ``PTTL``), ``EXPIRE``
touches, ``DEL`` deletes. Redis expires records itself; never reads from replicas
(a read must see the last write) nor keeps a second key per record; ``keys`` scans.
"""

from __future__ import annotations

import logging
import os
import re
import threading
from collections.abc import Iterator
from collections.abc import Sequence
from typing import TYPE_CHECKING
from typing import Any
from typing import ClassVar

from ..exceptions import ConflictError
from ..exceptions import StoreError
from ..exceptions import StoreUnavailableError
from ..exceptions import missing_dependency
from .base import Converter
from .base import Record
from .base import as_bool
from .base import as_list
from .base import as_positive_float
from .base import as_positive_int
from .base import mask_url

if TYPE_CHECKING:
    from ._redis_commands import Client
    from ._redis_commands import ClientCommands
    from ._redis_commands import LeanCommands

try:
    import redis

    # No server can take this now: down, timed out, failing over, resharding.
    _DOWN: tuple[type[Exception], ...] = (redis.ConnectionError, redis.TimeoutError)
    _DOWN += (redis.ReadOnlyError, redis.exceptions.ClusterError, redis.exceptions.TryAgainError)
    _DOWN += (redis.exceptions.RedisClusterException,)  # no node reachable, slot not covered
    _ERRORS: tuple[type[Exception], ...] = (redis.RedisError,)
    _ERRORS += (redis.exceptions.RedisClusterException,)
    _RETRY_ON: tuple[type[Exception], ...] = (redis.ConnectionError,)
except ImportError:  # the OPTIONS table stays readable without the driver
    redis = None  # type: ignore[assignment]
    _DOWN = _ERRORS = ()

__all__ = ["RedisStore"]

security_log = logging.getLogger("pyramid_sessionstore.security")
MAGIC = b"pss1"
#: The magic, then the record's version as 16 hex digits.
HEADER = len(MAGIC) + 16
_FRAME = re.compile(rb"pss1([0-9a-f]{16})")
_VERSION = re.compile(r"[0-9a-f]{16}\Z")


def _as_sentinels(value: Any) -> list[str]:
    """Convert ``host:port`` words (whitespace- or newline-separated, or a list)."""
    sentinels = as_list(value)
    if bad := [a for a in sentinels if not re.fullmatch(r".+:\d{1,5}", a)]:
        raise ValueError(f"expected host:port, got {bad[0]!r}")
    return sentinels


class RedisStore:
    """Keep records in Redis or Valkey, one round trip per operation.

    :param url: ``redis://``, ``rediss://`` (TLS) or ``unix://``; with *sentinels*
        only its db, credentials, query and scheme count.
    :param prefix: prepended to every key. Default: ``session:``.
    :param cluster: *url* is a node of a Redis Cluster. Default: false.
    :param sentinels: ``host:port`` of Sentinels; *service_name* names the master.
    :param password: used when *url* has none (a user name goes in *url*).
    :param sentinel_password: password of the Sentinels themselves.
    :param socket_timeout: and *socket_connect_timeout*: seconds. Default: 5.
    :param max_connections: per server; past it, StoreUnavailableError. Default: none.
    :param client: a ready ``Redis``/``RedisCluster``, used as is and not closed.
    """

    _TEXT = ("url", "prefix", "service_name", "password", "sentinel_password")
    OPTIONS: ClassVar[dict[str, Converter]] = {
        **dict.fromkeys(_TEXT, str),
        **dict.fromkeys(("socket_timeout", "socket_connect_timeout"), as_positive_float),
        **{"cluster": as_bool, "sentinels": _as_sentinels, "max_connections": as_positive_int},
    }
    CODE_ONLY: ClassVar[frozenset[str]] = frozenset({"client"})

    def __init__(
        self,
        *,
        url: str = "redis://127.0.0.1:6379/0",
        prefix: str = "session:",
        cluster: bool = False,
        sentinels: Sequence[str] = (),
        service_name: str | None = None,
        password: str | None = None,
        sentinel_password: str | None = None,
        socket_timeout: float = 5.0,
        socket_connect_timeout: float = 5.0,
        max_connections: int | None = None,
        client: redis.Redis | redis.RedisCluster | None = None,
    ) -> None:
        if redis is None:
            raise missing_dependency("RedisStore", "redis", "redis")
        # parse_url's errors name the bad part of the url, never the password.
        self._url_options: dict[str, Any] = redis.connection.parse_url(url)  # type: ignore[no-untyped-call]
        given = {"password": password, "max_connections": max_connections}
        self._kwargs: dict[str, Any] = {k: v for k, v in given.items() if v is not None}
        self.sentinels = _as_sentinels(list(sentinels))
        if cluster and (self.sentinels or self._url_options.get("db", 0) != 0):
            raise ValueError("cluster: a Cluster has no sentinels, and only db 0 in its url")
        if self.sentinels and not service_name:
            raise ValueError("service_name: required with sentinels (the master's name)")
        self.url, self.prefix, self.cluster, self.service_name = url, prefix, cluster, service_name
        self._pattern = re.sub(r"([*?\[\]\\])", r"\\\1", prefix) + "*"
        self._kwargs["socket_timeout"] = as_positive_float(socket_timeout)
        self._kwargs["socket_connect_timeout"] = as_positive_float(socket_connect_timeout)
        self._watch = {**self._kwargs, "password": sentinel_password}  # for the Sentinels
        # Not redis-py's default of 10 retries with backoff: fail fast. One retry on a
        # fresh connection replaces a stale pooled one (server restarted); never a timeout.
        self._kwargs["retry"] = redis.retry.Retry(redis.backoff.NoBackoff(), 1, _RETRY_ON)
        self._owned, self._lock = client is None, threading.Lock()
        self._client: redis.Redis | redis.RedisCluster | None = None
        self._sentinel: redis.Sentinel | None = None
        self._commands: LeanCommands | ClientCommands | None = None
        where = f"Sentinel {' '.join(self.sentinels)} ({service_name}) " if self.sentinels else ""
        where = f"Redis {where or ('Cluster ' if cluster else '')}at {mask_url(url)}"
        self._where = where if client is None else f"Redis (the {type(client).__name__} given)"
        if client is not None and client.get_encoder().decode_responses:
            raise ValueError("client: must be created with decode_responses=False")
        if client is not None or not cluster:  # RedisCluster connects when built: at first use
            self._use(client)

    def __repr__(self) -> str:
        return f"RedisStore({self._where}, prefix={self.prefix!r})"

    def _use(self, client: Client | None) -> LeanCommands | ClientCommands:
        """Send commands through *client*, or a client the settings describe."""
        from ._redis_commands import commands_for
        from ._redis_commands import connect

        if client is None:
            client, self._sentinel = connect(self, self._url_options, self._kwargs, self._watch)
        self._client = client
        self._commands = commands_for(client)
        return self._commands

    def _run(self) -> LeanCommands | ClientCommands:
        """Return how to send commands, building a Cluster client on first use."""
        if (commands := self._commands) is not None:
            return commands
        with self._lock:
            return self._use(None) if self._commands is None else self._commands

    def _error(self, err: Exception, action: str) -> StoreError:
        if isinstance(err, _DOWN):
            return StoreUnavailableError(f"{self._where} is unavailable ({action}): {err}", self)
        return StoreError(f"{self._where}: {action} failed: {err}", self)

    def load(self, key: str, ttl: int | None) -> Record | None:
        try:
            refresh = ("PERSIST",) if ttl is None else ("EX", max(ttl, 1))
            value = self._run()("GETEX", self.prefix + key, *refresh)
        except _ERRORS as err:
            if not str(err).startswith("WRONGTYPE"):
                raise self._error(err, "load") from err
            value = b"another type"
        return None if value is None else self._record(key, value)

    def peek(self, key: str) -> tuple[Record, float | None] | None:
        """Return the record of *key* and when it expires: GET and PTTL in one script run."""
        try:
            found = self._run().peek(self.prefix + key)
        except _ERRORS as err:
            raise self._error(err, "peek") from err
        if found is None or (record := self._record(key, found[0])) is None:
            return None
        return record, found[1]

    def _record(self, key: str, value: bytes) -> Record | None:
        """Return the record framed in *value*; delete what is not one."""
        if (match := _FRAME.match(value)) is None:
            security_log.warning("RedisStore: deleting unreadable record %s…", key[:40])
            self.delete(key)
            return None
        return Record(value[HEADER:], match.group(1).decode())

    def save(self, key: str, data: bytes, ttl: int | None, expected_version: str | None) -> str:
        name = self.prefix + key
        version = os.urandom(8).hex()
        value = b"".join((MAGIC, version.encode(), data))
        expiry = None if ttl is None else max(ttl, 1)
        try:
            ex = () if expiry is None else ("EX", expiry)
            if expected_version is None:
                done = self._run()("SET", name, value, "NX", *ex)
            elif not _VERSION.match(expected_version):  # none this store wrote: a conflict
                done = False
            else:
                header = MAGIC + expected_version.encode()
                done = self._run().conditional_set(name, [header, value, *ex])
        except _ERRORS as err:
            raise self._error(err, "save") from err
        if not done:
            raise ConflictError(f"record {key[:12]}… exists, changed or vanished", self)
        return version

    def touch(self, key: str, ttl: int | None) -> bool:
        try:
            if ttl is None:  # not PERSIST: it answers 0 for a key without expiry too
                return self._run()("GETEX", self.prefix + key, "PERSIST") is not None
            return bool(self._run()("EXPIRE", self.prefix + key, max(ttl, 1)))
        except _ERRORS as err:
            if str(err).startswith("WRONGTYPE"):  # not a record; the next load deletes it
                return False
            raise self._error(err, "touch") from err

    def delete(self, key: str) -> None:
        try:
            self._run()("DEL", self.prefix + key)
        except _ERRORS as err:
            raise self._error(err, "delete") from err

    def close(self) -> None:
        """Disconnect the pools (not those of a client given by the caller)."""
        if self._commands is not None:
            self._commands.close()
        if self._owned and self._client is not None:
            self._client.close()  # redis-py swallows socket errors on close
            for sentinel in self._sentinel.sentinels if self._sentinel else ():
                sentinel.close()

    def keys(self) -> Iterator[str]:
        try:
            self._run()  # builds a Cluster client on first use
            assert self._client is not None
            for name in self._client.scan_iter(match=self._pattern, count=1000):
                yield name.decode(errors="replace")[len(self.prefix) :]
        except _ERRORS as err:
            raise self._error(err, "scan") from err

    def count(self) -> int:
        return sum(1 for _ in self.keys())
