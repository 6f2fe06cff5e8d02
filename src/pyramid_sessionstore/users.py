"""The user index: which sessions belong to a user, for logout everywhere.

Built once, on the store protocol, so it works on every server store. Each
user has one index record (key: a 40-hex-digit hash of the user id, so it is
never mistaken for a 64-digit session key) holding the keys of the sessions
bound to that user, updated with compare-and-set when a session is bound.

The index never expires by itself (a session refreshed on every load can
outlive any fixed expiry). It is bounded instead: past ``MAX_SESSIONS`` keys
the oldest are dropped, and with ``max_lifetime`` set, keys older than it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from typing import TYPE_CHECKING
from typing import Any

from pyramid.interfaces import ISessionFactory

from .exceptions import ConfigurationError
from .exceptions import ConflictError

if TYPE_CHECKING:
    from pyramid.request import Request

    from .factory import SessionFactory

__all__ = [
    "MAX_SESSIONS",
    "end_user_sessions",
    "index_key",
    "invalidate_user_sessions",
    "remember",
]

log = logging.getLogger(__name__)

#: Sessions remembered per user; the oldest beyond this are forgotten.
MAX_SESSIONS = 1000
_RETRIES = 10


def index_key(userid: Any) -> str:
    """Return the store key of *userid*'s index (40 hex digits)."""
    raw = f"pyramid_sessionstore.user\x00{userid}".encode()
    return hashlib.blake2b(raw, digest_size=20).hexdigest()


def _read(factory: SessionFactory, key: str) -> tuple[dict[str, float], str | None]:
    record = factory.store.load(key, factory.max_lifetime)
    if record is None:
        return {}, None
    try:
        entries = json.loads(record.data)
        if type(entries) is not dict:
            raise ValueError("not an object")
        return {str(k): float(v) for k, v in entries.items()}, record.version
    except (ValueError, TypeError) as err:
        log.warning("user index %s… was unreadable and is rebuilt: %s", key[:12], err)
        return {}, record.version


def _write(
    factory: SessionFactory, key: str, entries: dict[str, float], version: str | None
) -> None:
    if not entries:
        factory.store.delete(key)
        return
    data = json.dumps(entries, separators=(",", ":")).encode()
    factory.store.save(key, data, factory.max_lifetime, version)


def remember(factory: SessionFactory, userid: Any, session_key: str) -> None:
    """Add *session_key* to *userid*'s index."""
    key = index_key(userid)
    for _ in range(_RETRIES):
        entries, version = _read(factory, key)
        now = time.time()
        entries[session_key] = now
        if factory.max_lifetime is not None:
            horizon = now - factory.max_lifetime
            entries = {k: t for k, t in entries.items() if t > horizon}
        if len(entries) > MAX_SESSIONS:
            newest = sorted(entries.items(), key=lambda kv: kv[1])[-MAX_SESSIONS:]
            entries = dict(newest)
        try:
            _write(factory, key, entries, version)
            return
        except ConflictError:
            continue
    log.warning("could not record a session in the index of user %r (contention)", userid)


def _factory_of(request: Request) -> SessionFactory:
    from .factory import SessionFactory

    factory = request.registry.queryUtility(ISessionFactory)
    if not isinstance(factory, SessionFactory):
        raise ConfigurationError(
            "invalidate_user_sessions needs pyramid_sessionstore's SessionFactory as the session"
            " factory (config.include('pyramid_sessionstore') or config.set_session_factory)"
        )
    return factory


def end_user_sessions(factory: SessionFactory, userid: Any, except_key: str | None = None) -> int:
    """End every session bound to *userid* in *factory*'s store; return how many.

    The request-free core of :func:`invalidate_user_sessions`, also used by
    ``psessions purge --user``.

    :param factory: the session factory whose store keeps the sessions.
    :param userid: the user, as given to ``session.bind_user``.
    :param except_key: the store key of a session to keep alive, or None.
    """
    if factory.client_side:
        raise ConfigurationError(
            "cannot end sessions kept in browser cookies (session.store = cookie):"
            " there is no server-side record to delete"
        )
    key = index_key(userid)
    ended = 0
    for _ in range(_RETRIES):
        entries, version = _read(factory, key)
        keep = {k: t for k, t in entries.items() if except_key is not None and k == except_key}
        for session_key in entries:
            if session_key in keep:
                continue
            if factory.store.touch(session_key, 1):
                ended += 1
            factory.store.delete(session_key)
        try:
            _write(factory, key, keep, version)
            break
        except ConflictError:
            continue  # a session was bound meanwhile: end it too
    return ended


def invalidate_user_sessions(request: Request, userid: Any, except_current: bool = False) -> int:
    """End every session bound to *userid* ("log out everywhere"); return how many.

    :param request: the current request (it finds the session factory).
    :param userid: the user, as given to ``session.bind_user``.
    :param except_current: keep the session of this request alive.
    """
    factory = _factory_of(request)
    if factory.client_side:
        raise ConfigurationError(
            "invalidate_user_sessions cannot end sessions kept in browser cookies"
            " (session.store = cookie): there is no server-side record to delete"
        )
    current = request.session  # loads it if the view has not yet
    current_key = current._key if current.userid == userid else None
    ended = end_user_sessions(factory, userid, current_key if except_current else None)
    if current_key is not None and not except_current:
        current.invalidate()
    return ended
