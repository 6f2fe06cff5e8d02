"""The user index: which sessions belong to a user, for logout everywhere.

Built once, on the store protocol, so it works on every server store. Each
user has one index record (key: a 40-hex-digit hash of the user id, so it is
never mistaken for a 64-digit session key) holding the keys of the sessions
bound to that user, updated with compare-and-set.

Both updates (binding a session, ending a user's sessions) retry lost
compare-and-sets with backoff inside ``conflict_timeout``, taking turns
with writers of the same index in this process; when the budget runs out
they raise :class:`~pyramid_sessionstore.exceptions.SessionBusyError`,
never giving up silently. Ending sessions deletes every listed record
*before* the index is rewritten, so a session bound meanwhile makes the
rewrite fail, and the next round ends it too.

Each entry keeps what the active-sessions page shows that the session
record does not: when the session was bound, and, as ``session.record_client``
says, the client's user agent and address (:mod:`.active` reads them).

The index never expires by itself (a session refreshed on every load can
outlive any fixed expiry). It is bounded instead: past ``MAX_SESSIONS`` keys
the oldest are dropped, and with ``max_lifetime`` set, keys older than it.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
import time
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING
from typing import Any

from pyramid.interfaces import ISessionFactory

from . import events
from .contention import KEY_LOCKS
from .contention import Budget
from .contention import LockTimeout
from .events import SessionEnded
from .exceptions import ConfigurationError
from .exceptions import ConflictError
from .exceptions import SessionBusyError
from .payload import encode_userid
from .policy import Policy
from .policy import policy_of

if TYPE_CHECKING:
    from pyramid.request import Request

__all__ = [
    "MAX_SESSIONS",
    "end_user_sessions",
    "forget",
    "index_key",
    "index_keys",
    "invalidate_user_sessions",
    "lists",
    "migrate",
    "read_index",
    "remember",
]

log = logging.getLogger(__name__)

#: Sessions remembered per user; the oldest beyond this are forgotten.
MAX_SESSIONS = 1000
_SESSION_KEY = re.compile(r"[0-9a-f]{64}")


def index_key(userid: Any) -> str:
    """Return the key 0.1 kept *userid*'s index under (40 hex digits, unsalted).

    Indexes are written under :func:`index_keys`' first key now; this one is
    still read, so sessions bound before the upgrade are found.
    """
    raw = f"pyramid_sessionstore.user\x00{userid}".encode()
    return hashlib.blake2b(raw, digest_size=20).hexdigest()


def index_keys(policy: Policy, userid: Any) -> list[str]:
    """Return the store keys *userid*'s index may be under, the one written first.

    With ``encrypt``, the index is kept under a 40-hex-digit HMAC of the user
    id under a key derived from the newest secret, so a store dump does not
    tell which index belongs to a guessable user id; while older secrets are
    configured (a rotation), it is mirrored under theirs too, so workers not
    yet given the new secret find the same index. Without ``encrypt`` it is
    kept under the plain hash (:func:`index_key`). The keys of the other mode
    come last: they are read, and their entries moved over.
    """
    raw = b"pyramid_sessionstore.user\x00" + encode_userid(userid)
    keyed = [hmac.new(salt, raw, hashlib.sha256).hexdigest()[:40] for salt in policy.index_salts]
    plain = index_key(userid)
    return [*keyed, plain] if policy.encrypt else [plain, *keyed]


def _mirrors(policy: Policy, keys: list[str]) -> list[str]:
    """Return the keys written besides the first (the older secrets' keys, with encrypt)."""
    return keys[1 : len(policy.index_salts)] if policy.encrypt else []


#: One session in a user's index: ``b`` when it was bound (Unix seconds), and
#: optionally ``ua`` (user agent) and ``ip`` (client address).
Entry = dict[str, Any]


def _entry(value: Any) -> Entry:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return {"b": float(value)}  # written by 0.1: the bind time alone
    if type(value) is not dict or not isinstance(value.get("b"), (int, float)):
        raise ValueError(f"bad entry {value!r:.60}")
    return {k: v for k, v in value.items() if k in ("b", "ua", "ip")}


def read_index(policy: Policy, userid: Any) -> dict[str, Entry]:
    """Return *userid*'s index entries by session key (from every key it may be under)."""
    keys = index_keys(policy, userid)
    entries, _ = _read(policy, keys[0])
    return {**_read_others(policy, keys)[0], **entries}


def _read_others(policy: Policy, keys: list[str]) -> tuple[dict[str, Entry], list[str]]:
    """Return the entries under every key but the first, and the keys that held some."""
    found: dict[str, Entry] = {}
    held = []
    for key in keys[1:]:
        entries, version = _read(policy, key)
        if version is not None:
            found.update(entries)
            held.append(key)
    return found, held


def _settle(policy: Policy, keys: list[str], entries: dict[str, Entry], held: list[str]) -> None:
    """After the first key was written with *entries*: mirror them, retire the rest.

    :param held: the keys besides the first that held an index when read.
    """
    mirrors = _mirrors(policy, keys)
    for key in keys[1:]:
        if key not in mirrors:
            if key in held:
                policy.store.delete(key)  # the other mode's key: its entries moved over
            continue
        for _ in range(2):  # best effort: only writers on older workers race here
            found, version = _read(policy, key)
            if found == entries:
                break
            try:
                _write(policy, key, entries, version)
                break
            except ConflictError:
                continue


def _read(policy: Policy, key: str) -> tuple[dict[str, Entry], str | None]:
    record = policy.store.load(key, policy.max_lifetime)
    if record is None:
        return {}, None
    try:
        entries = json.loads(record.data)
        if type(entries) is not dict:
            raise ValueError("not an object")
        # Only session keys (64 hex digits) can be listed: anything else is dropped.
        good = {k: _entry(v) for k, v in entries.items() if _SESSION_KEY.fullmatch(k)}
        return good, record.version
    except (ValueError, TypeError, RecursionError) as err:
        log.warning("user index %s… was unreadable and is rebuilt: %s", key[:12], err)
        return {}, record.version


def lists(policy: Policy, userid: Any, session_key: str) -> bool:
    """Return True if *userid*'s index lists *session_key* (one store read, usually)."""
    keys = index_keys(policy, userid)
    if session_key in _read(policy, keys[0])[0]:
        return True
    return session_key in _read_others(policy, keys)[0]


def _write(policy: Policy, key: str, entries: dict[str, Entry], version: str | None) -> None:
    if not entries:
        if version is not None:
            # A compare-and-set to an empty index that expires by itself; never
            # a delete, which could drop a session bound after the read.
            policy.store.save(key, b"{}", 1, version)
        return
    data = json.dumps(entries, separators=(",", ":")).encode()
    policy.store.save(key, data, policy.max_lifetime, version)


def _busy(policy: Policy, key: str, budget: Budget, what: str) -> SessionBusyError:
    log.error("user index %s… lost every %s attempt (%d)", key[:12], what, budget.attempts)
    return SessionBusyError(
        f"the user's session index was written by other requests on every one of"
        f" {budget.attempts} attempts to {what} within session.conflict_timeout"
        f" ({budget.timeout:g} s)",
        policy.store,
        attempts=budget.attempts,
        retry_after=budget.retry_after(),
    )


def remember(policy: Policy, userid: Any, session_key: str, client: Entry | None = None) -> int:
    """Add *session_key* to *userid*'s index, with what is known of its *client*.

    Return how many sessions the index lists now.

    :raises SessionBusyError: when the index stayed contended for ``conflict_timeout``.
    """

    dropped: list[str] = []

    def add(entries: dict[str, Entry]) -> dict[str, Entry]:
        now = time.time()
        entries[session_key] = {"b": now, **(client or {})}
        if policy.max_lifetime is not None:
            horizon = now - policy.max_lifetime
            entries = {k: e for k, e in entries.items() if e["b"] > horizon}
        if len(entries) > MAX_SESSIONS:
            by_age = sorted(entries.items(), key=lambda kv: float(kv[1]["b"]))
            dropped[:] = [k for k, _ in by_age[:-MAX_SESSIONS]]
            entries = dict(by_age[-MAX_SESSIONS:])
        return entries

    count = len(_change(policy, userid, add, "record a session"))
    for key in dropped:  # a session the index no longer lists must not outlive a logout
        policy.store.delete(key)
    return count


def migrate(policy: Policy, userid: Any) -> None:
    """Move *userid*'s index from older keys (an older secret, or 0.1's) to the first.

    Called when a bound session arrives with a cookie signed by an older
    secret: once that secret is removed, an index left under its key could
    not be found by logout-everywhere.
    """
    _change(policy, userid, lambda entries: entries, "move the index")


def forget(policy: Policy, userid: Any, session_keys: set[str]) -> None:
    """Remove *session_keys* from *userid*'s index (they ended).

    :raises SessionBusyError: when the index stayed contended for ``conflict_timeout``.
    """

    def drop(entries: dict[str, Entry]) -> dict[str, Entry]:
        return {k: e for k, e in entries.items() if k not in session_keys}

    _change(policy, userid, drop, "forget a session")


def _change(
    policy: Policy,
    userid: Any,
    change: Callable[[dict[str, Entry]], dict[str, Entry]],
    what: str,
) -> dict[str, Entry]:
    """Apply *change* to *userid*'s index with compare-and-set; return the new entries.

    Entries still under an older key (another secret, or 0.1's) move to the
    first key on the way.
    """
    keys = index_keys(policy, userid)
    key = keys[0]
    budget = Budget(policy.conflict_timeout)
    try:
        with KEY_LOCKS.hold(key, budget.turn_wait()):
            budget.restart()
            older, held = _read_others(policy, keys)
            while True:
                budget.attempt()
                entries, version = _read(policy, key)
                changed = change({**older, **entries})
                if changed == entries and set(held) == set(_mirrors(policy, keys)):
                    return entries  # nothing to write, nothing to move
                try:
                    _write(policy, key, changed, version)
                    _settle(policy, keys, changed, held)
                    return changed
                except ConflictError:
                    pass
                if budget.spent():
                    raise _busy(policy, key, budget, what)
                budget.pause()
    except LockTimeout:
        raise _busy(policy, key, budget, what) from None


def end_user_sessions(
    owner: Any,
    userid: Any,
    except_key: str | None = None,
    request: Request | None = None,
) -> int:
    """End every session bound to *userid*; return how many were alive.

    The request-free core of :func:`invalidate_user_sessions`, also used by
    ``psessions purge --user``.

    :param owner: the session factory (or its policy) whose store keeps the sessions.
    :param userid: the user, as given to ``session.bind_user``.
    :param except_key: the store key of a session to keep alive, or None.
    :param request: the request asking, for the events (None from a script).
    :raises ConfigurationError: for the cookie store, which keeps no records.
    :raises SessionBusyError: when the index stayed contended for ``conflict_timeout``.
    """
    policy = policy_of(owner)
    if policy.sealer is not None:
        raise ConfigurationError(
            "cannot end sessions kept in browser cookies (session.store = cookie):"
            " there is no server-side record to delete"
        )
    keys = index_keys(policy, userid)
    budget = Budget(policy.conflict_timeout)
    try:
        with KEY_LOCKS.hold(keys[0], budget.turn_wait()):
            budget.restart()
            ended = _end(policy, userid, keys, except_key, budget)
    except LockTimeout:
        raise _busy(policy, keys[0], budget, "end sessions") from None
    for key in ended:
        events.notify(request, partial(SessionEnded, request, key, SessionEnded.LOGOUT_EVERYWHERE))
    return len(ended)


def _end(
    policy: Policy, userid: Any, keys: list[str], except_key: str | None, budget: Budget
) -> set[str]:
    ended: set[str] = set()
    key = keys[0]
    older, held = _read_others(policy, keys)
    while True:
        budget.attempt()
        entries, version = _read(policy, key)
        entries = {**older, **entries}
        keep = {k: t for k, t in entries.items() if k == except_key}
        for session_key in entries:
            if session_key in keep or session_key in ended:
                continue
            if policy.belongs_elsewhere(session_key, userid):
                keep[session_key] = entries[session_key]  # 0.1 kept 42 and "42" in one index
                continue
            if policy.store.touch(session_key, 1):
                ended.add(session_key)
            policy.store.delete(session_key)
        try:
            _write(policy, key, keep, version)
            _settle(policy, keys, keep, held)
            return ended
        except ConflictError:
            pass  # a session was bound meanwhile: end it too
        if budget.spent():
            raise _busy(policy, key, budget, "end sessions")
        budget.pause()


def invalidate_user_sessions(request: Request, userid: Any, except_current: bool = False) -> int:
    """End every session bound to *userid* ("log out everywhere"); return how many.

    :param request: the current request (it finds the session factory).
    :param userid: the user, as given to ``session.bind_user``.
    :param except_current: keep the session of this request alive.
    :raises ConfigurationError: when the session factory is not ours, or keeps
        sessions in cookies (there is no record to delete).
    :raises SessionBusyError: when the index stayed contended for ``conflict_timeout``.
    """
    policy = policy_of(request.registry.queryUtility(ISessionFactory))
    if policy.sealer is not None:
        raise ConfigurationError(
            "invalidate_user_sessions cannot end sessions kept in browser cookies"
            " (session.store = cookie): there is no server-side record to delete"
        )
    if userid is None:
        return 0  # nobody is logged in: there is no user whose sessions could end
    current = request.session  # loads it if the view has not yet
    mine = current.userid == userid
    # The current session's record: its key, or the one it is moving from
    # (regenerate_id earlier in this request); None for a session not stored yet.
    current_key = current._key or (current._moved_from[0] if current._moved_from else None)
    keep = current_key if mine and except_current else None
    ended = end_user_sessions(policy, userid, keep, request)
    if mine and not except_current:
        if current_key is not None:  # its end was announced just now: once is enough
            request.__dict__.setdefault("_sessionstore_announced", set()).add(current_key)
        current.invalidate()
    return ended
