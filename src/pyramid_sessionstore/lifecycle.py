"""The end of a request: decide what to write, write it, set the cookie.

Nothing is written for a session that did not change. Changes are found by
comparing with what was loaded: keys set or deleted, and, when a mutable
value was handed out, the serialized data against the loaded bytes (so a
nested list changed in place is saved without ``changed()``).

Writes are compare-and-set on the loaded version. When another request of the
same session won the race, this one reloads the record, applies its own
key-level changes (sets and deletes against what it had loaded) on top, and
tries again: two requests touching different keys both survive, the last
writer wins only on the same key. A record that vanished meanwhile (another
request invalidated the session or gave it a new id) is not brought back.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING
from typing import Any

from . import users
from .cookies import new_session_id
from .cookies import store_key
from .exceptions import ConflictError
from .payload import Header
from .payload import decode
from .payload import encode

if TYPE_CHECKING:
    from pyramid.request import Request

    from .factory import SessionFactory
    from .session import Session

__all__ = ["finish", "finish_sealed"]

log = logging.getLogger(__name__)


def _changed_bytes(factory: SessionFactory, session: Session) -> bytes | None:
    """Return the serialized data if the session changed, else None."""
    header_changed = session._user_changed or session._timeout_changed
    if not (session._dirty or session._exposed or header_changed):
        return None
    data_bytes = factory.serializer.dumps(session._data)
    if data_bytes == session._loaded_bytes and not header_changed:
        return None  # set back to what it was, or read without change
    return data_bytes


def _reissue_due(factory: SessionFactory, session: Session, now: float) -> bool:
    return (
        factory.reissue_time is not None
        and factory.max_age is not None
        and now - session._written >= factory.reissue_time
    )


def finish(factory: SessionFactory, session: Session, request: Request, response: Any) -> None:
    """Persist *session* to the store at the end of *request*; set its cookie on *response*."""
    store = factory.store
    if not session._data:
        had_record = session._key is not None or bool(session._doomed)
        for key in (session._key, *session._doomed):
            if key is not None:
                store.delete(key)
        if had_record:
            factory.expire_cookie(response)
        return
    now = time.time()
    new_id = session._key is None
    data_bytes = (
        factory.serializer.dumps(session._data) if new_id else _changed_bytes(factory, session)
    )
    if data_bytes is None:
        if session._cookie_stale or _reissue_due(factory, session, now):
            factory.set_cookie(response, factory.cookie_value(session))
        return
    if new_id:
        _create(factory, session, data_bytes, now)
    elif not _update(factory, session, data_bytes, now):
        return  # the session ended in another request meanwhile: leave it ended
    for key in session._doomed:
        store.delete(key)
    if session._userid is not None and (new_id or session._user_changed):
        assert session._key is not None
        users.remember(factory, session._userid, session._key)
    if new_id or session._timeout_changed or session._cookie_stale or factory.max_age is not None:
        factory.set_cookie(response, factory.cookie_value(session))


def _header(session: Session, now: float) -> Header:
    return Header(session.created, now, session._userid, session._timeout)


def _create(factory: SessionFactory, session: Session, data_bytes: bytes, now: float) -> None:
    payload = encode(_header(session, now), data_bytes)
    ttl = factory.ttl_of(session)
    for _ in range(3):  # a collision of 256-bit ids does not happen; be safe anyway
        session_id = new_session_id()
        key = store_key(session_id)
        try:
            session._version = factory.store.save(key, payload, ttl, None)
        except ConflictError:
            continue
        session._id, session._key = session_id, key
        session._loaded_bytes, session._written = data_bytes, now
        return
    raise ConflictError("could not create a session under a fresh id", factory.store)


def _update(factory: SessionFactory, session: Session, data_bytes: bytes, now: float) -> bool:
    """Compare-and-set *session*; merge and retry on conflict. False if it vanished."""
    store = factory.store
    key = session._key
    assert key is not None
    ttl = factory.ttl_of(session)
    version = session._version
    payload = encode(_header(session, now), data_bytes)
    sets: dict[str, Any] | None = None
    deletes: list[str] = []
    for attempt in range(factory.conflict_retries + 1):
        try:
            session._version = store.save(key, payload, ttl, version)
            session._loaded_bytes, session._written = data_bytes, now
            return True
        except ConflictError:
            if attempt == factory.conflict_retries:
                raise
        record = store.load(key, ttl)
        if record is None:
            log.info("session %s… ended by another request; its changes here are dropped", key[:12])
            return False
        if sets is None:
            sets, deletes = _own_changes(factory, session)
        header, their_bytes = decode(record.data)
        merged = factory.serializer.loads(their_bytes)
        merged.update(sets)
        for name in deletes:
            merged.pop(name, None)
        if not session._user_changed:
            session._userid = header.userid
        if not session._timeout_changed:
            session._timeout = header.timeout
        session._data = merged
        version = record.version
        data_bytes = factory.serializer.dumps(merged)
        payload = encode(_header(session, now), data_bytes)
    raise AssertionError("unreachable")  # pragma: no cover


def _own_changes(factory: SessionFactory, session: Session) -> tuple[dict[str, Any], list[str]]:
    """Return the keys this request set (with values) and deleted, against what it loaded."""
    loaded = (
        {} if session._loaded_bytes is None else factory.serializer.loads(session._loaded_bytes)
    )
    current = session._data
    sets = {k: v for k, v in current.items() if k not in loaded or loaded[k] != v}
    deletes = [k for k in loaded if k not in current]
    return sets, deletes


def finish_sealed(factory: SessionFactory, session: Session, response: Any) -> None:
    """Write *session* into the cookie itself (the cookie store)."""
    sealer = factory.sealer
    assert sealer is not None
    if not session._data:
        if session._id is not None or session._doomed:
            factory.expire_cookie(response)
        return
    now = time.time()
    loaded = session._id is not None
    data_bytes = (
        _changed_bytes(factory, session) if loaded else factory.serializer.dumps(session._data)
    )
    if data_bytes is None:
        refresh = (
            factory.reissue_time is not None and now - session._written >= factory.reissue_time
        )
        if not (refresh or session._cookie_stale):
            return  # re-seal a cookie of an older key or format at once
        data_bytes = session._loaded_bytes
        assert data_bytes is not None
    factory.set_cookie(response, sealer.seal(encode(_header(session, now), data_bytes)))
