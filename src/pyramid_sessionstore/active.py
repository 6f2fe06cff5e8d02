"""Active sessions: the devices a user is signed in on, and ending any one of them.

Built on the user index (:mod:`.users`), so it works on every server store.
A listing reads the index (one round trip) and then each listed session's
record without refreshing it (one round trip per session, through the
store's ``peek``): that tells whether the session is still alive, when it
was created, and when it was last active, which is derived from what the
store keeps anyway (the expiry it refreshes on each load, and the time of
the last write), so reading a session never becomes a write to track it.
Entries whose session ended are dropped from the index as the listing
meets them (compare-and-set), with no separate clean-up.

A session is named by a *handle*: an HMAC of the user id and the session's
store key under a key derived from the factory's secret. It is safe to put
in a page or a URL, cannot be turned into a cookie or a session id, and
means nothing for another user (each user's handles are computed with
their own id, and only that user's index is searched).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING
from typing import Any

from pyramid.interfaces import ISessionFactory

from . import events
from . import users
from .events import SessionEnded
from .exceptions import ConfigurationError
from .payload import encode_userid
from .payload import is_tombstone
from .policy import policy_of
from .stores.base import SupportsPeek

if TYPE_CHECKING:
    from pyramid.request import Request

    from .policy import Policy

__all__ = [
    "SessionInfo",
    "end_one",
    "end_session",
    "enforce_cap",
    "list_sessions",
    "list_user_sessions",
]

log = logging.getLogger(__name__)

#: Longest user agent kept in the index, in characters.
MAX_USER_AGENT = 256
#: Longest client address kept (an IPv6 address in text is at most 45).
MAX_IP = 45


@dataclass(frozen=True)
class SessionInfo:
    """One active session of a user, as :func:`list_user_sessions` returns it."""

    #: Opaque name of the session for :func:`end_session` (safe in a page or URL).
    handle: str
    #: When the session was created, Unix seconds.
    created: float
    #: When the session was last active, Unix seconds (see the module docs for
    #: each store's accuracy).
    last_active: float
    #: The client's ``User-Agent`` when the session was bound, if recorded.
    user_agent: str | None
    #: The client's address when the session was bound, if recorded.
    ip: str | None
    #: True for the session of the request that asked.
    current: bool


#: Length of a handle: 16 bytes of HMAC in unpadded base64url.
HANDLE_LENGTH = 22


def _well_formed(handle: object) -> bool:
    return isinstance(handle, str) and len(handle) == HANDLE_LENGTH and handle.isascii()


def handle_of(policy: Policy, userid: Any, session_key: str) -> str:
    """Return the handle of *userid*'s session stored under *session_key*."""
    raw = encode_userid(userid) + b"\x00" + session_key.encode()
    mac = hmac.new(policy.handle_key, raw, hashlib.sha256)
    return base64.urlsafe_b64encode(mac.digest()[:16]).decode("ascii").rstrip("=")


def client_entry(policy: Policy, request: Request) -> users.Entry:
    """Return what ``session.record_client`` says to keep about *request*'s client."""
    entry: users.Entry = {}
    if "user_agent" in policy.record_client and request.user_agent:
        entry["ua"] = str(request.user_agent)[:MAX_USER_AGENT]
    if "ip" in policy.record_client and request.client_addr:
        entry["ip"] = str(request.client_addr)[:MAX_IP]
    return entry


def _policy(request: Request, what: str) -> Policy:
    policy = policy_of(request.registry.queryUtility(ISessionFactory))
    if policy.sealer is not None:
        raise ConfigurationError(
            f"{what} cannot see sessions kept in browser cookies (session.store = cookie):"
            " there is no server-side record"
        )
    return policy


ENDED, MOVING, FOREIGN = "ended", "moving", "foreign"


def _inspect(
    policy: Policy, userid: Any, key: str, entry: users.Entry
) -> tuple[float, float] | str:
    """Return (created, last_active) of a live session of *userid*, or why not.

    :data:`ENDED` (no record: forget it), :data:`MOVING` (a tombstone: it is
    moving to a new id), :data:`FOREIGN` (the record is another user's: an
    index of 0.1 kept ``42`` and ``"42"`` together).
    """
    store = policy.store
    if not isinstance(store, SupportsPeek):
        bound = float(entry["b"])
        return bound, bound  # nothing better is known without reading the record
    peeked = store.peek(key)
    if peeked is None:
        return ENDED
    if is_tombstone(peeked[0].data):
        return MOVING
    record, expires = peeked
    owned = policy.owned_by(record.data, userid)
    if owned is None:
        return FOREIGN if policy.is_record(record.data) else ENDED
    created, last, own_timeout = owned
    idle = policy.idle_timeout(own_timeout)
    # A load set the expiry to "then + idle", unless the lifetime cap set it
    # (at or past created + max_lifetime: that says nothing about activity).
    lifetime_end = None if policy.max_lifetime is None else created + policy.max_lifetime
    if (
        expires is not None
        and idle is not None
        and (lifetime_end is None or expires < lifetime_end)
    ):
        last = max(last, expires - idle)
    return float(created), last


def _live(policy: Policy, userid: Any) -> dict[str, tuple[float, float, users.Entry]]:
    """Return *userid*'s live sessions by key; forget the ones that ended."""
    entries = users.read_index(policy, userid)
    live: dict[str, tuple[float, float, users.Entry]] = {}
    ended: set[str] = set()
    for key, entry in entries.items():
        seen = _inspect(policy, userid, key, entry)
        if seen == ENDED:
            ended.add(key)
        elif not isinstance(seen, str):
            live[key] = (*seen, entry)
    if ended:
        users.forget(policy, userid, ended)
    return live


def list_sessions(policy: Policy, userid: Any, current_key: str | None = None) -> list[SessionInfo]:
    """Return *userid*'s active sessions, most recently active first; no request needed.

    The request-free core of :func:`list_user_sessions`, also used by
    ``psessions list``.

    :param policy: the session factory's policy (``factory.policy``).
    :param current_key: the store key of the session to mark ``current``, if any.
    """
    infos = [
        SessionInfo(
            handle=handle_of(policy, userid, key),
            created=created,
            last_active=last,
            user_agent=entry.get("ua"),
            ip=entry.get("ip"),
            current=key == current_key,
        )
        for key, (created, last, entry) in _live(policy, userid).items()
    ]
    infos.sort(key=lambda info: info.last_active, reverse=True)
    return infos


def end_one(policy: Policy, userid: Any, handle: str, request: Request | None = None) -> bool:
    """End *userid*'s session named *handle*; return True if it was alive.

    The request-free core of :func:`end_session`, also used by
    ``psessions purge --session``. A handle of another user's session, a
    made-up one, or one of a session that already ended ends nothing.
    """
    if not _well_formed(handle):
        return False
    entries = users.read_index(policy, userid)
    key = next(
        (k for k in entries if hmac.compare_digest(handle_of(policy, userid, k), handle)), None
    )
    if key is None:
        return False
    seen = _inspect(policy, userid, key, entries[key])
    if seen == FOREIGN:
        return False
    # A session in the middle of a move (regenerate_id) is alive: deleting its
    # tombstone makes the move end it too. touch tells whether the record was
    # still there, on stores that cannot peek as well.
    alive = seen == MOVING or (seen != ENDED and policy.store.touch(key, 1))
    policy.store.delete(key)
    if alive:
        events.notify(request, partial(SessionEnded, request, key, SessionEnded.END_SESSION))
    users.forget(policy, userid, {key})
    return alive


def list_user_sessions(request: Request, userid: Any) -> list[SessionInfo]:
    """Return *userid*'s active sessions, most recently active first.

    :param request: the current request (it finds the session factory, and
        marks its own session as ``current``).
    :param userid: the user, as given to ``session.bind_user``.
    :raises ConfigurationError: with the cookie store, which keeps no records.
    """
    policy = _policy(request, "list_user_sessions")
    session = request.session
    return list_sessions(policy, userid, session._key if session.userid == userid else None)


def end_session(request: Request, userid: Any, handle: str) -> bool:
    """End the session of *userid* named by *handle*; return True if it was alive.

    A handle of another user's session, a made-up one, or one of a session
    that already ended gives False and changes nothing. The current
    session's handle ends it as ``request.session.invalidate()`` does.

    :raises ConfigurationError: with the cookie store, which keeps no records.
    """
    policy = _policy(request, "end_session")
    session = request.session
    key = session._key
    if (
        _well_formed(handle)
        and key is not None
        and session.userid == userid
        and hmac.compare_digest(handle_of(policy, userid, key), handle)
    ):
        session.invalidate()  # the response announces the end (SessionEnded)
        policy.store.delete(key)  # now: the response might never save
        users.forget(policy, userid, {key})
        return True
    return end_one(policy, userid, handle, request)


def enforce_cap(policy: Policy, userid: Any, keep: str, request: Request | None = None) -> int:
    """End *userid*'s least recently active sessions beyond ``max_sessions_per_user``.

    The session stored under *keep* (the one just bound) is never ended.
    Return how many were ended.
    """
    cap = policy.max_sessions_per_user
    if cap is None:
        return 0
    live = _live(policy, userid)
    if len(live) <= cap or keep not in live:
        return 0
    # Only sessions bound before this one are candidates: two logins at once
    # must not end each other (the later one ends the earlier).
    mine = (float(live[keep][2]["b"]), keep)
    earlier = [k for k in live if k != keep and (float(live[k][2]["b"]), k) < mine]
    earlier.sort(key=lambda k: live[k][1])
    doomed = set(earlier[: len(live) - cap])
    for key in doomed:
        policy.store.delete(key)
        events.notify(request, partial(SessionEnded, request, key, SessionEnded.CAP))
    users.forget(policy, userid, doomed)
    log.info("ended %d session(s) of a user beyond max_sessions_per_user=%d", len(doomed), cap)
    return len(doomed)
