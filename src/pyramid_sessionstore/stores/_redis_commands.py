"""How RedisStore's commands reach the server: lean for a Redis, routed for a Cluster.

A session load is one command, so redis-py's per-command machinery is most of
its cost: taking a connection from the pool and giving it back (two locks,
events, metrics) and the retry wrapper cost more than the loopback round trip
itself. :class:`LeanCommands` keeps the connections it has used checked out,
on a LIFO list (append and pop are atomic), and talks through redis-py's own
``Connection`` objects, so connecting, AUTH, TLS, Sentinel's master lookup,
health checks and the RESP parser (hiredis when installed) stay redis-py's.

Every other client keeps its own path (:class:`ClientCommands`): a Cluster,
which routes each command to its slot's master; a pipeline; a subclass; and a
client whose ``execute_command`` tracing has wrapped (OpenTelemetry, Sentry,
ddtrace), so what those add still happens.

:func:`connect` builds the client the settings describe: one server, a
Cluster, or the master a set of Sentinels names.

Updates and peeks run Lua scripts by their SHA: one compares the record's
header with the one loaded and sets the new value, so a compare-and-set is one
round trip; the other reads a record and the time it has left (``GET`` and
``PTTL``) together, without refreshing it. Each touches one key: one slot.
"""

from __future__ import annotations

import hashlib
import os
import time
from typing import TYPE_CHECKING
from typing import Any

import redis

from .redis import HEADER

if TYPE_CHECKING:
    from .redis import RedisStore

__all__ = ["Client", "ClientCommands", "LeanCommands", "commands_for", "connect"]

#: What RedisStore sends commands through (a Sentinel master is a ``Redis``).
Client = redis.Redis | redis.RedisCluster

# KEYS[1]; ARGV: expected header, new value, then "EX", ttl or nothing. pcall:
# a value of another type under the key is a mismatch, not a script error.
UPDATE = f"""
if redis.pcall('GETRANGE', KEYS[1], 0, {HEADER - 1}) ~= ARGV[1] then return 0 end
return redis.call('SET', KEYS[1], ARGV[2], unpack(ARGV, 3)) and 1
"""
UPDATE_SHA = hashlib.sha1(UPDATE.encode()).hexdigest()
# KEYS[1]. Returns nil when there is no key, else {value, milliseconds left (-1:
# no expiry)}; a value of another type comes back as text that is not a record
# (the store deletes it), any other error (an ACL without GET) as the error.
PEEK = """
local value = redis.pcall('GET', KEYS[1])
if type(value) == 'table' then
  if not string.find(value.err, '^WRONGTYPE') then return value end
  value = 'another type'
end
if not value then return false end
return {value, redis.call('PTTL', KEYS[1])}
"""
PEEK_SHA = hashlib.sha1(PEEK.encode()).hexdigest()


def _expiring(sent: float, reply: Any) -> tuple[bytes, float | None] | None:
    """Turn the peek script's *reply* into (value, expiry in Unix seconds, None: never).

    The time left is counted from *sent*, before the script ran: never late.
    """
    return None if reply is None else (reply[0], None if reply[1] < 0 else sent + reply[1] / 1000)


def commands_for(client: Client) -> LeanCommands | ClientCommands:
    """Return how to send commands through *client*: lean only for a plain ``Redis``."""
    traced = hasattr(redis.Redis.execute_command, "__wrapped__")
    if type(client) is redis.Redis and not traced:
        return LeanCommands(client.connection_pool)
    return ClientCommands(client)


def connect(
    store: RedisStore, url: dict[str, Any], kwargs: dict[str, Any], watch: dict[str, Any]
) -> tuple[Client, redis.Sentinel | None]:
    """Return a client of *store*'s server, Cluster or Sentinel master, and the Sentinel.

    Behind Sentinel, the master's address comes from the Sentinels; the url's
    other parts (*url*, as parsed) and *kwargs* configure the client, *watch*
    the connections to the Sentinels.
    """
    if store.cluster:
        return redis.RedisCluster.from_url(store.url, **kwargs), None
    if not store.sentinels:
        return redis.Redis.from_url(store.url, **kwargs), None
    options = {k: v for k, v in url.items() if k not in {"host", "port"}}
    tls = {"ssl": options.pop("connection_class", None) is redis.SSLConnection}
    addresses = [(h, int(p)) for h, _, p in (a.rpartition(":") for a in store.sentinels)]
    sentinel = redis.Sentinel(addresses, sentinel_kwargs=watch | tls, **kwargs | options | tls)  # type: ignore[no-untyped-call]
    return sentinel.master_for(store.service_name), sentinel  # type: ignore[no-untyped-call]


class LeanCommands:
    """Execute commands on connections of *pool*, returning redis-py's raw replies."""

    def __init__(self, pool: redis.ConnectionPool) -> None:
        self._pool = pool
        self._idle: list[Any] = []
        self._pid = os.getpid()

    def __call__(self, *args: Any) -> Any:
        """Send *args* as one command and return its reply (one reconnect on a dropped link)."""
        if self._pid != os.getpid():  # a forked worker: the parent's sockets are not ours
            self._idle, self._pid = [], os.getpid()
        try:
            conn = self._idle.pop()
        except IndexError:
            conn = self._pool.get_connection()  # past max_connections: ConnectionError
        reconnect = getattr(conn, "should_reconnect", None)  # redis-py >= 7
        if reconnect is not None and reconnect():  # the server announced maintenance
            conn.disconnect()
        try:
            try:
                conn.connect()  # a no-op when connected; for Sentinel, asks for the master
                conn.send_command(*args)
                return conn.read_response()
            except redis.ConnectionError:  # a stale connection (server restarted): once more
                conn.disconnect()
                conn.connect()
                conn.send_command(*args)
                return conn.read_response()
        except redis.ResponseError:
            raise  # the reply was read whole: the connection is in step
        except BaseException:
            conn.disconnect()  # a late reply must never answer the next command
            raise
        finally:
            self._idle.append(conn)

    def _script(self, source: str, sha: str, name: str, args: list[Any]) -> Any:
        """Run a script on key *name* by its SHA (sent whole once per server, after a NOSCRIPT)."""
        try:
            return self("EVALSHA", sha, 1, name, *args)
        except redis.exceptions.NoScriptError:  # SCRIPT LOAD, not EVAL: see the ACL in the docs
            self("SCRIPT", "LOAD", source)
            return self("EVALSHA", sha, 1, name, *args)

    def conditional_set(self, name: str, args: list[Any]) -> Any:
        """Run the update script."""
        return self._script(UPDATE, UPDATE_SHA, name, args)

    def peek(self, name: str) -> tuple[bytes, float | None] | None:
        """Run the peek script: None, or the value and when it expires (None: never)."""
        return _expiring(time.time(), self._script(PEEK, PEEK_SHA, name, []))

    def close(self) -> None:
        """Give every connection back to the pool."""
        idle, self._idle = self._idle, []
        for conn in idle:
            self._pool.release(conn)


class ClientCommands:
    """Execute commands through the client's own path (a Cluster routes each to its slot)."""

    def __init__(self, client: redis.Redis | redis.RedisCluster) -> None:
        self._client = client
        self._update = client.register_script(UPDATE)
        self._peek = client.register_script(PEEK)

    def __call__(self, *args: Any) -> Any:
        return self._client.execute_command(*args)  # type: ignore[no-untyped-call]

    def conditional_set(self, name: str, args: list[Any]) -> Any:
        """Run the update script; redis-py loads it (on the slot's node) when missing."""
        return self._update([name], args)

    def peek(self, name: str) -> tuple[bytes, float | None] | None:
        """Run the peek script: None, or the value and when it expires (None: never)."""
        return _expiring(time.time(), self._peek([name]))

    def close(self) -> None:
        """Nothing of its own: the client's pools are the store's to close."""
