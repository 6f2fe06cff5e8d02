"""Write a session to its store: create, update with merge, move to a new id.

Every write is a compare-and-set on the version this request loaded. When
another request of the same session wrote first, this one reloads the
record, re-applies its *own* key-level changes (the keys it set and the keys
it deleted, against what it loaded) on top, and tries again:

- writers in this process take turns per store key (:data:`.contention.KEY_LOCKS`),
  so they never fail each other's compare-and-set; only writers in other
  processes can;
- those retries back off with jitter inside ``conflict_timeout`` seconds;
  when the budget runs out, :class:`~pyramid_sessionstore.exceptions.SessionBusyError`
  is raised: this request's changes are not saved, nothing saved before is lost;
- a record that vanished meanwhile (another request invalidated the
  session, or logged the user out everywhere) is never brought back, under
  its old id or a new one.

A move (``regenerate_id``) claims the old record first, with a
compare-and-set that turns it into a tombstone, then creates the new record,
adds it to the user's index, and finishes only if the tombstone is still
there: a logout-everywhere that ran at any point meanwhile ends the new
record too.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING
from typing import Any

from . import users
from .contention import KEY_LOCKS
from .contention import Budget
from .contention import LockTimeout
from .cookies import new_session_id
from .cookies import store_key
from .exceptions import ConflictError
from .exceptions import SessionBusyError
from .exceptions import StoreUnavailableError
from .payload import TOMBSTONE
from .payload import Header
from .payload import is_tombstone

if TYPE_CHECKING:
    from .policy import Policy
    from .session import Session
    from .stores.base import Record

__all__ = ["TOMBSTONE_TTL", "create", "empty", "move", "update"]

log = logging.getLogger(__name__)
security_log = logging.getLogger("pyramid_sessionstore.security")

#: Seconds a moved session's tombstone lives if the move is interrupted.
TOMBSTONE_TTL = 60

_Changes = tuple[dict[str, Any], list[str]]


def header_of(session: Session, now: float) -> Header:
    """Return the stored header of *session*, written at *now*."""
    return Header(session.created, now, session._userid, session._timeout)


def create(policy: Policy, session: Session, data_bytes: bytes, now: float) -> None:
    """Store *session* under a new id (create-only); set its id, key and version."""
    header = header_of(session, now)
    ttl = policy.ttl_of(session)
    for _ in range(3):  # a collision of 256-bit ids does not happen; be safe anyway
        session_id = new_session_id()
        key = store_key(session_id)
        payload = policy.pack(session_id, header, data_bytes)
        try:
            session._version = policy.store.save(key, payload, ttl, None)
        except ConflictError:
            continue
        session._id, session._key = session_id, key
        session._loaded_bytes, session._written = data_bytes, now
        return
    raise ConflictError("could not create a session under a fresh id", policy.store)


def own_changes(policy: Policy, session: Session) -> _Changes:
    """Return the keys this request set (with values) and deleted, against what it loaded."""
    loaded = {} if session._loaded_bytes is None else policy.serializer.loads(session._loaded_bytes)
    current = session._data
    if session._forced:  # changed(): every key this request holds counts as set
        sets = dict(current)
    else:
        sets = {
            k: v for k, v in current.items() if k not in loaded or _differs(policy, loaded[k], v)
        }
    return sets, [k for k in loaded if k not in current]


def _differs(policy: Policy, before: Any, after: Any) -> bool:
    """Return True if *after* is a change from *before*, as stored (``1`` and ``True``
    are equal in Python but not in the session)."""
    try:
        if type(before) is not type(after) or before != after:
            return True
        return bool(policy.serializer.dumps([before]) != policy.serializer.dumps([after]))
    except Exception:  # noqa: BLE001 - values that cannot even be compared count as changed
        return True


def _merge(
    policy: Policy, session: Session, session_id: str | None, record: Record, changes: _Changes
) -> bytes:
    """Put this request's *changes* on top of *record*; return the merged data bytes.

    Raises whatever decoding a corrupt record raises (the caller ends the session).
    """
    header, their_bytes = policy.unpack(session_id, record.data)
    merged = policy.serializer.loads(their_bytes)
    if type(merged) is not dict:
        raise ValueError("session data is not a dict")
    sets, deletes = changes
    merged.update(sets)
    for name in deletes:
        merged.pop(name, None)
    if not session._user_changed:
        session._userid = header.userid
    if not session._timeout_changed:
        session._timeout = header.timeout
    session._data = merged
    return policy.serializer.dumps(merged)


def _busy(policy: Policy, key: str, budget: Budget) -> SessionBusyError:
    log.error(
        "session %s… still lost its compare-and-set after %d attempts in %.1f s;"
        " this request's changes are not saved",
        key[:12],
        budget.attempts,
        budget.timeout,
    )
    return SessionBusyError(
        f"the session was written by other requests on every one of {budget.attempts} attempts"
        f" within session.conflict_timeout ({budget.timeout:g} s); this request's changes"
        " were not saved",
        policy.store,
        attempts=budget.attempts,
        retry_after=budget.retry_after(),
    )


def _contended(
    policy: Policy,
    session: Session,
    key: str,
    session_id: str | None,
    data_bytes: bytes,
    write: Callable[[bytes, str | None], str],
) -> str | None:
    """Run *write(data_bytes, version)* until it wins; merge and back off on each loss.

    Return the version *write* returned, or None when the record vanished
    or turned out corrupt (the session ended elsewhere). Writers of *key* in
    this process take turns; the wait for a turn counts in the budget.

    :raises SessionBusyError: when ``conflict_timeout`` ran out.
    """
    budget = Budget(policy.conflict_timeout)
    try:
        held = KEY_LOCKS.acquire(key, budget.turn_wait())
    except LockTimeout:
        raise _busy(policy, key, budget) from None
    try:
        budget.restart()
        return _retry(policy, session, key, session_id, data_bytes, write, budget)
    finally:
        KEY_LOCKS.release(key, held)


def _retry(
    policy: Policy,
    session: Session,
    key: str,
    session_id: str | None,
    data_bytes: bytes,
    write: Callable[[bytes, str | None], str],
    budget: Budget,
) -> str | None:
    version = session._version
    changes: _Changes | None = None
    while True:
        budget.attempt()
        session._attempts = budget.attempts
        try:
            return write(data_bytes, version)
        except ConflictError:
            pass
        if budget.spent():
            raise _busy(policy, key, budget)
        if budget.attempts > 1:  # the first loss is retried at once
            budget.pause()
        record = policy.store.load(key, policy.ttl_of(session))
        if record is None or is_tombstone(record.data):
            log.info("session %s… ended in another request; changes here dropped", key[:12])
            return None
        if changes is None:
            changes = own_changes(policy, session)
        try:
            data_bytes = _merge(policy, session, session_id, record, changes)
        except Exception as err:  # noqa: BLE001 - any decoder's failure on stored bytes
            security_log.warning("corrupt session record %s… deleted: %s", key[:12], err)
            policy.store.delete(key)
            return None
        version = record.version
        session._loaded_record = record.data


def empty(policy: Policy, session: Session, now: float) -> bool:
    """End *session*, emptied by deleting its keys, with a compare-and-set.

    Return True when its record is gone (ended here, or elsewhere meanwhile);
    False when another request had set keys meanwhile: they were merged in
    and saved, and the session lives on.
    """
    key = session._key
    assert key is not None
    kept: list[bool] = []

    def write(data: bytes, version: str | None) -> str:
        if not session._data:
            return policy.store.save(key, TOMBSTONE, TOMBSTONE_TTL, version)
        payload = policy.pack(session._id, header_of(session, now), data)
        new_version = policy.store.save(key, payload, policy.ttl_of(session), version)
        session._loaded_bytes, session._written = data, now
        kept.append(True)
        return new_version

    version = _contended(policy, session, key, session._id, policy.serializer.dumps({}), write)
    if version is None:
        return True
    if kept:
        session._version = version
        return False
    policy.store.delete(key)  # a tombstone no write can pass: every writer's version is older
    return True


def update(policy: Policy, session: Session, data_bytes: bytes, now: float) -> bool:
    """Compare-and-set *session* under its key; False if it ended in another request."""
    key = session._key
    assert key is not None

    def write(data: bytes, version: str | None) -> str:
        payload = policy.pack(session._id, header_of(session, now), data)
        new_version = policy.store.save(key, payload, policy.ttl_of(session), version)
        session._loaded_bytes, session._written = data, now
        return new_version

    version = _contended(policy, session, key, session._id, data_bytes, write)
    if version is None:
        return False
    session._version = version
    return True


def move(
    policy: Policy,
    session: Session,
    data_bytes: bytes,
    now: float,
    client: dict[str, Any] | None = None,
) -> bool:
    """Move *session* from the record it was loaded from to a new id.

    Return False (nothing written) when the old record ended in another
    request before the move finished.
    """
    assert session._moved_from is not None
    old_key, session._version, old_id = session._moved_from
    store = policy.store
    claimed: list[bytes] = []

    def claim(data: bytes, version: str | None) -> str:
        new_version = store.save(old_key, TOMBSTONE, TOMBSTONE_TTL, version)
        claimed.append(data)
        return new_version

    tombstone = _contended(policy, session, old_key, old_id, data_bytes, claim)
    if tombstone is None:
        return False
    try:
        create(policy, session, claimed[-1], now)
        assert session._key is not None
        if session._userid is not None:
            users.remember(policy, session._userid, session._key, client)
    except BaseException:
        _undo_move(policy, session, old_key, tombstone)
        raise
    after = store.load(old_key, TOMBSTONE_TTL)
    if after is None or after.version != tombstone:
        log.info("session %s… ended in another request while it moved; ended", old_key[:12])
        store.delete(session._key)
        return False
    store.delete(old_key)
    return True


def _undo_move(policy: Policy, session: Session, old_key: str, tombstone: str) -> None:
    """Put the old record back after a move failed half-way.

    The store may be failing (the move failed for a reason): retry with
    backoff inside ``conflict_timeout``; after that the old session ends
    with its tombstone, and the error says so.
    """
    budget = Budget(policy.conflict_timeout)
    while True:
        budget.attempt()
        try:
            if session._key is not None:
                policy.store.delete(session._key)
            if session._loaded_record is not None:
                ttl = policy.ttl_of(session)
                policy.store.save(old_key, session._loaded_record, ttl, tombstone)
            return
        except ConflictError:
            log.info("session %s… changed while a failed move was undone", old_key[:12])
            return
        except StoreUnavailableError:
            if budget.spent():
                log.error("session %s… could not be put back after a failed move", old_key[:12])
                return
            budget.pause()
