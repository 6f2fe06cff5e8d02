"""One request's session, from the cookie to the store and back.

:func:`begin` turns the request's cookie into a :class:`~.session.Session`
(one store round trip, none for a missing or bad cookie). :func:`finish`
runs when the response goes out and decides what to write:

- nothing, for a session that did not change (changes are found by
  comparing with what was loaded: keys set or deleted and, when a mutable
  value was handed out, the serialized data against the loaded bytes, so a
  nested list changed in place is saved without ``changed()``);
- a delete and an expired cookie, for a session that was invalidated or
  emptied;
- a compare-and-set, with merge and retry (:mod:`.writes`), otherwise.

A request that Pyramid's CSRF check rejected stores nothing and sets no
cookie: the check mints a token in a new session, which must not outlive
the rejected request.

This module uses the store, the cookie codec, the payload and the user
index, through the factory's :class:`~.policy.Policy`; it never imports the
factory.
"""

from __future__ import annotations

import logging
import time
from functools import partial
from typing import TYPE_CHECKING
from typing import Any

from pyramid.exceptions import BadCSRFOrigin
from pyramid.exceptions import BadCSRFToken

from . import active
from . import events
from . import users
from . import writes
from .cookies import DEFAULT
from .events import SessionCookieRejected
from .events import SessionEnded
from .exceptions import MissingDependencyError
from .exceptions import StoreUnavailableError
from .payload import CorruptPayloadError
from .payload import decode
from .payload import encode
from .payload import is_tombstone
from .session import CSRF_KEY
from .session import Session

if TYPE_CHECKING:
    from pyramid.request import Request

    from .policy import Policy
    from .stores.base import SealsCookies

__all__ = ["begin", "finish", "finish_sealed"]

log = logging.getLogger(__name__)
security_log = logging.getLogger("pyramid_sessionstore.security")


# -- begin ---------------------------------------------------------------------


def begin(policy: Policy, request: Request) -> Session:
    """Return the session the cookies of *request* name (a new one when none does).

    Every value under the cookie's name is tried in order (a browser sends
    several after a path or domain change, RFC 6265 §5.4); the first that
    verifies and names a live session wins.

    :raises StoreUnavailableError: when the store cannot be reached and
        ``on_store_error`` is ``raise``.
    """
    values = policy.cookie.read_all(request.environ)
    for value in values:
        if policy.sealer is not None:
            session = _unseal(policy, policy.sealer, value)
            if session is not None:
                session._id, session._key = "cookie", ""  # "" lets invalidate() expire it
                return session
            continue
        session = _load(policy, value, request)
        if session is not None:
            return session
    return Session(check=policy.check)


def _load(policy: Policy, value: str, request: Request) -> Session | None:
    """Return the stored session the cookie *value* names, or None."""
    if (known := policy.verify(value)) is None:
        if policy.import_from is not None:
            imported = _unseal(policy, policy.import_from, value)
            if imported is not None:
                imported.changed()  # saved under a new id; the response replaces the cookie
                return imported
        security_log.warning(
            "rejected a session cookie that is not validly signed (from %s)", request.remote_addr
        )
        events.notify(request, lambda: SessionCookieRejected(request, None, "tampered"))
        return None
    verified, key = known
    own_timeout: int | None = None
    if verified.timeout is not DEFAULT:
        own_timeout = verified.timeout  # type: ignore[assignment]
    loaded_ttl = policy.cap_ttl(policy.idle_timeout(own_timeout), None)
    try:
        record = policy.store.load(key, loaded_ttl)
    except StoreUnavailableError as err:
        events.notify(request, partial(events.SessionStoreError, request, key, "load", err))
        if policy.on_store_error == "raise":
            raise
        log.exception("session store unavailable; using an empty session (on_store_error)")
        session = Session(check=policy.check)
        session._degraded = True
        return session
    if record is None or is_tombstone(record.data):
        security_log.info("session cookie names an unknown or expired session")
        events.notify(request, lambda: SessionCookieRejected(request, key, "unknown"))
        return None
    try:
        header, data_bytes, reseal = policy.unpack_record(verified.session_id, record.data)
        data = policy.serializer.loads(data_bytes)
        if type(data) is not dict:
            raise CorruptPayloadError("session data is not a dict")
    except MissingDependencyError:
        raise
    except Exception as err:  # noqa: BLE001 - any serializer's failure on stored bytes
        security_log.warning("corrupt session record %s… deleted: %s", key[:12], err)
        policy.store.delete(key)
        events.notify(request, lambda: SessionCookieRejected(request, key, "corrupt"))
        return None
    if policy.max_lifetime is not None and time.time() >= header.created + policy.max_lifetime:
        log.info("session %s… reached max_lifetime; ended", key[:12])
        policy.store.delete(key)
        events.notify(request, lambda: SessionEnded(request, key, SessionEnded.EXPIRED))
        events.notify(request, lambda: SessionCookieRejected(request, key, "expired"))
        return None
    if (
        policy.verify_index
        and header.userid is not None
        and not users.lists(policy, header.userid, key)
    ):
        # Ended everywhere, or the index was evicted: either way, fail safe.
        log.info("session %s… is not in its user's index; ended", key[:12])
        policy.store.delete(key)
        events.notify(request, lambda: SessionEnded(request, key, SessionEnded.UNLISTED))
        return None
    # The record, not the cookie, says how long the session lives: a replayed
    # older cookie must not stretch it, and the lifetime cap counts what is left.
    if header.timeout != own_timeout or policy.max_lifetime is not None:
        ttl = policy.cap_ttl(policy.idle_timeout(header.timeout), header.created)
        if ttl != loaded_ttl and not policy.store.touch(key, ttl):
            return None
    session = Session(
        data,
        created=header.created,
        session_id=verified.session_id,
        key=key,
        version=record.version,
        loaded_bytes=data_bytes,
        userid=header.userid,
        timeout=header.timeout,
        written=header.written,
        check=policy.check,
    )
    session._loaded_record = record.data
    session._reseal = reseal
    if policy.encrypt and not verified.current and header.userid is not None:
        # The cookie is re-signed under the newest secret on this response; its
        # user's index moves to the newest secret's key now, so that removing
        # the older secret later cannot hide it from logout-everywhere.
        users.migrate(policy, header.userid)
    # Re-send the cookie when it was signed with an older secret, or its copy
    # of the timeout lags the record's.
    session._cookie_stale = header.timeout != own_timeout or not verified.current
    return session


def _unseal(policy: Policy, sealer: SealsCookies, value: str) -> Session | None:
    """Return the session inside a sealed cookie, or None (logged) when there is none."""
    unsealed = sealer.unseal(value)
    if unsealed is None:
        security_log.warning("rejected a session cookie that does not decrypt")
        return None
    payload, current = unsealed
    try:
        header, data_bytes = decode(payload)
        data = policy.serializer.loads(data_bytes)
        if type(data) is not dict:
            raise CorruptPayloadError("session data is not a dict")
    except Exception as err:  # noqa: BLE001 - authentic but unreadable (serializer change)
        security_log.warning("unreadable session cookie ignored: %s", err)
        return None
    now = time.time()
    idle = policy.idle_timeout(header.timeout)
    if (idle is not None and now >= header.written + idle) or (
        policy.max_lifetime is not None and now >= header.created + policy.max_lifetime
    ):
        security_log.info("expired session cookie ignored")
        return None
    session = Session(
        data,
        created=header.created,
        loaded_bytes=data_bytes,
        userid=header.userid,
        timeout=header.timeout,
        written=header.written,
        check=policy.check,
    )
    session.new = False
    session._cookie_stale = not current
    return session


# -- finish --------------------------------------------------------------------


#: Nothing to store: a new session with no data.
OUTCOME_NOTHING = "nothing to store"
#: Read, and nothing changed (the cookie may have been re-sent).
OUTCOME_UNCHANGED = "unchanged"
#: A new session was stored.
OUTCOME_CREATED = "created"
#: The session's record was updated (``session._attempts > 1``: after a merge).
OUTCOME_UPDATED = "updated"
#: The session moved to a new id.
OUTCOME_MOVED = "moved to a new id"
#: The record was deleted and the cookie expired.
OUTCOME_DELETED = "deleted"
#: Another request ended the session meanwhile; this one's changes were dropped.
OUTCOME_ENDED_ELSEWHERE = "ended by another request; changes dropped"
#: The store was down at load (``on_store_error = fresh``): nothing written.
OUTCOME_READ_ONLY = "store unavailable at load; nothing written"


def rejected_by_csrf(policy: Policy, request: Request, session: Session) -> bool:
    """Return True when Pyramid's CSRF check rejected *request* and *session* is new.

    The check mints a token before it fails; storing a new session for it
    would let junk POSTs fill the store. In an existing session the minted
    token is taken back, and what else the request did (an exception view
    that logs the user out, say) is saved as usual.
    """
    if not isinstance(request.exception, (BadCSRFToken, BadCSRFOrigin)):
        return False
    if session._key is None and session._moved_from is None and not session._ended:
        return True
    if CSRF_KEY in session._data and session._loaded_bytes is not None:
        if CSRF_KEY not in policy.serializer.loads(session._loaded_bytes):
            del session._data[CSRF_KEY]  # minted by the failed check
    return False


def _changed_bytes(policy: Policy, session: Session) -> bytes | None:
    """Return the serialized data if the session changed, else None."""
    header_changed = session._user_changed or session._timeout_changed or session._reseal
    if not (session._dirty or session._exposed or header_changed):
        return None
    data_bytes = policy.serializer.dumps(session._data)
    if data_bytes == session._loaded_bytes and not (header_changed or session._forced):
        return None  # set back to what it was, or read without change
    return data_bytes


def _reissue_due(policy: Policy, session: Session, now: float) -> bool:
    return (
        policy.reissue_time is not None
        and policy.max_age is not None
        and now - session._written >= policy.reissue_time
    )


def finish(policy: Policy, session: Session, request: Request, response: Any) -> str:
    """Persist *session* at the end of *request*; set or expire its cookie on *response*.

    Return what was done, one of the ``OUTCOME_*`` strings (for tools such as
    the debug-toolbar panel).

    :raises StoreUnavailableError: when the store cannot be reached to save a change.
    :raises SessionBusyError: when other requests kept winning the write for
        ``conflict_timeout`` seconds.
    """
    if session._degraded:
        if session._data:  # cannot happen through the Session API; be sure anyway
            raise StoreUnavailableError("the session store was unreachable; changes not saved")
        return OUTCOME_READ_ONLY
    store = policy.store
    if not session._data and session._key is not None and not session._ended:
        # Emptied by deleting its keys: end it with a compare-and-set, so a key
        # another request set meanwhile is merged in and kept, not lost.
        emptied = session._key
        if not writes.empty(policy, session, time.time()):
            _conflicted(request, session)
            return OUTCOME_UPDATED  # another request's keys survived the merge
        _ended(request, emptied)
        policy.cookie.expire(response)
        return OUTCOME_DELETED
    if not session._data:
        ended = [*session._ended, session._key]
        if session._moved_from is not None:
            ended.append(session._moved_from[0])
        for key in ended:
            if key is not None:
                store.delete(key)
                _ended(request, key)
        if any(key is not None for key in ended):
            policy.cookie.expire(response)
            return OUTCOME_DELETED
        return OUTCOME_NOTHING
    now = time.time()
    if session._key is None:
        data_bytes = policy.serializer.dumps(session._data)
        client = active.client_entry(policy, request) if session._userid is not None else None
        moved = session._moved_from
        if moved is not None:
            if not writes.move(policy, session, data_bytes, now, client):
                return OUTCOME_ENDED_ELSEWHERE  # leave it ended
            _conflicted(request, session)
            events.notify(
                request, lambda: events.SessionIdRegenerated(request, session._key, moved[0])
            )
        else:
            writes.create(policy, session, data_bytes, now)
            if session._userid is not None:
                users.remember(policy, session._userid, session._key, client)  # type: ignore[arg-type]
            events.notify(request, lambda: events.SessionCreated(request, session._key))
        for key in session._ended:
            store.delete(key)
            _ended(request, key)
        policy.cookie.set(response, policy.cookie_value(session))
        if session._userid is not None and policy.max_sessions_per_user is not None:
            active.enforce_cap(policy, session._userid, session._key, request)  # type: ignore[arg-type]
        return OUTCOME_MOVED if moved is not None else OUTCOME_CREATED
    changed = _changed_bytes(policy, session)
    if changed is None:
        if session._cookie_stale or _reissue_due(policy, session, now):
            policy.cookie.set(response, policy.cookie_value(session))
        return OUTCOME_UNCHANGED
    if not writes.update(policy, session, changed, now):
        return OUTCOME_ENDED_ELSEWHERE  # leave it ended
    _conflicted(request, session)
    if session._timeout_changed or session._cookie_stale or policy.max_age is not None:
        policy.cookie.set(response, policy.cookie_value(session))
    return OUTCOME_UPDATED


def _ended(request: Request, key: str) -> None:
    if key not in request.__dict__.get("_sessionstore_announced", ()):
        events.notify(request, lambda: SessionEnded(request, key, SessionEnded.INVALIDATED))


def _conflicted(request: Request, session: Session) -> None:
    if session._attempts > 1:
        events.notify(
            request, lambda: events.SessionWriteConflict(request, session._key, session._attempts)
        )


def finish_sealed(policy: Policy, session: Session, response: Any) -> str:
    """Write *session* into the cookie itself (the cookie store); return the outcome."""
    sealer = policy.sealer
    assert sealer is not None
    if not session._data:
        if session._id is not None or session._ended or session._moved_from:
            policy.cookie.expire(response)
            return OUTCOME_DELETED
        return OUTCOME_NOTHING
    now = time.time()
    loaded = session._id is not None or session._moved_from is not None
    data_bytes = (
        _changed_bytes(policy, session) if loaded else policy.serializer.dumps(session._data)
    )
    if data_bytes is None:
        refresh = policy.reissue_time is not None and now - session._written >= policy.reissue_time
        if not (refresh or session._cookie_stale):
            return OUTCOME_UNCHANGED  # re-seal a cookie of an older key or format at once
        data_bytes = session._loaded_bytes
        assert data_bytes is not None
        outcome = OUTCOME_UNCHANGED
    else:
        outcome = OUTCOME_UPDATED if loaded else OUTCOME_CREATED
    policy.cookie.set(response, sealer.seal(encode(writes.header_of(session, now), data_bytes)))
    return outcome
