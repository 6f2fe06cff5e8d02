"""How MemcachedStore's commands reach memcached through pymemcache, and what survives a fork.

pymemcache 4 has no ``gats`` and no meta commands: :func:`gats` runs its own
fetch loop (the one ``gets`` uses, reading the value by its length, so binary
values are safe), :func:`meta_set` sends ``ms`` as a raw command, whose reply
carries the new CAS value, and :func:`meta_get` sends ``mg`` and reads its
value by its length with pymemcache's own readers. :func:`close_inherited` closes a process's
copies of the sockets a client held when the process was forked, and
:func:`after_fork` gives a forked process clients of its own.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from pymemcache.client.base import PooledClient
from pymemcache.client.base import _readline
from pymemcache.client.base import _readvalue
from pymemcache.exceptions import MemcacheUnknownError
from pymemcache.serde import LegacyWrappingSerde

__all__ = ["after_fork", "close_inherited", "exptime", "gats", "meta_get", "meta_set"]
__all__ += ["reads_bytes"]

#: memcached reads an expiry over 30 days as an absolute Unix time.
MONTH = 30 * 24 * 3600
_BYTES = LegacyWrappingSerde(None, None).deserialize.__func__


def exptime(ttl: int | None) -> int:
    """Return memcached's expiry for *ttl* seconds: 0 never, -1 now, > 30 days absolute."""
    if ttl is None:
        return 0
    if ttl <= 0:
        return -1  # not 0, which would mean "never"
    if ttl <= MONTH:
        return ttl
    # memcached keeps an absolute expiry in 32 bits: past 2038 it would wrap into
    # the past, so the record would be gone at once. Keep it as long as it can.
    return min(int(time.time()) + ttl, 2**31 - 1)


def reads_bytes(client: Any) -> bool:
    """Return whether *client* hands values back as stored, whatever their flags.

    A serde would turn a value someone else stored with a flag into an object
    (pymemcache's pickle serde would unpickle it), before the store can check
    that the value is one of its own.
    """
    return getattr(client.serde.deserialize, "__func__", None) is _BYTES


def gats(client: Any, key: bytes, exptime: int) -> tuple[Any, bytes] | None:
    """Run ``gats``: return (value, cas) of *key* and set its expiry, or None."""
    if isinstance(client, PooledClient):
        with client.client_pool.get_and_release(destroy_on_fail=True) as one:
            return gats(one, key, exptime)
    found = client._fetch_cmd(b"gats %d" % exptime, [key], True, key_prefix=client.key_prefix)
    return found.get(key)  # type: ignore[no-any-return]


def meta_get(client: Any, key: bytes) -> tuple[bytes, bytes, float | None] | None:
    """Send ``mg <key> v c t``: return (value, cas, expiry) of *key*, or None; no touch.

    The reply is ``VA <size> c<cas> t<seconds left, -1: never>`` then the value,
    or ``EN`` when there is no such item. Without a ``T`` flag the expiry stays
    as it is. The expiry is Unix seconds (None: never), from memcached's whole
    seconds: up to a second off.
    """
    if isinstance(client, PooledClient):
        with client.client_pool.get_and_release(destroy_on_fail=True) as one:
            return meta_get(one, key)
    name, sent = client.check_key(key, key_prefix=client.key_prefix), time.time()
    if client.sock is None:
        client._connect()
    try:
        client.sock.sendall(b"mg %s v c t\r\n" % name)
        buf, line = _readline(client.sock, b"")
        client._raise_errors(line, b"mg")
        if line == b"EN":
            return None
        head, size, *words = line.split() + [b"", b""]
        if head != b"VA" or not size.isdigit():
            raise MemcacheUnknownError(line[:32])
        _, value = _readvalue(client.sock, buf, int(size))
    except BaseException:
        client.close()  # a reply half read must never answer the next command
        raise
    flags = {word[:1]: word[1:] for word in words if word}
    left = int(flags.get(b"t", b"-1"))
    return value, flags.get(b"c", b"0"), None if left < 0 else sent + left


def meta_set(client: Any, name: bytes, value: bytes, exptime: int, mode: bytes) -> list[bytes]:
    """Send ``ms <name> <size> T<exptime> <mode> c`` and return the reply's words.

    *mode* is ``ME`` (add: only when missing) or ``C<cas>`` (only at this CAS).
    The reply is ``HD c<cas>`` when stored; ``NS``, ``EX`` or ``NF`` when not.
    """
    full = client.key_prefix + name
    command = b"ms %s %d T%d %s c\r\n%s" % (full, len(value), exptime, mode, value)
    return client.raw_command(command, b"\r\n").split()  # type: ignore[no-any-return]


def close_inherited(client: Any) -> None:
    """Close this process's copies of the sockets *client* held at a fork.

    Closing a copy of a descriptor leaves the other process's connection open;
    its pool's lists are read without its lock, which another thread of the
    parent may have held when the process was forked.
    """
    pool = getattr(client, "client_pool", None)
    for one in (*pool.free, *pool.used) if pool is not None else (client,):
        one.close()


def after_fork(
    clients: dict[str, Any], owned: bool, connect: Callable[[], dict[str, Any]]
) -> dict[str, Any]:
    """Return the clients a forked process uses, having closed its copies of the old sockets.

    Both processes reading one socket would get each other's replies; closing a
    copy leaves the parent's connection open. The store's own pools are built
    anew (*connect*); a client given to the store (not *owned*) is kept: it
    reconnects.
    """
    for client in clients.values():
        close_inherited(client)
    return connect() if owned else clients
