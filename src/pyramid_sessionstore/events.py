"""Events of the session lifecycle, for ``config.add_subscriber``.

Subscribe the way Pyramid's own events are subscribed::

    from pyramid_sessionstore.events import SessionEnded

    def count_logouts(event):
        if event.reason == SessionEnded.LOGOUT_EVERYWHERE:
            ...

    config.add_subscriber(count_logouts, SessionEnded)

Every event carries the request that caused it (None when there is none, as
in ``psessions purge``) and :attr:`~SessionEvent.key_prefix`, the first 12
hex digits of the session's store key: enough to follow one session through
logs, never the session id or anything that works as a cookie.

An event is built only when something subscribes (Pyramid's
``registry.has_listeners``), so an application without subscribers pays one
attribute look-up where an event could fire.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING
from typing import Any

if TYPE_CHECKING:
    from pyramid.request import Request

__all__ = [
    "SessionCookieRejected",
    "SessionCreated",
    "SessionEnded",
    "SessionEvent",
    "SessionIdRegenerated",
    "SessionStoreError",
    "SessionWriteConflict",
    "notify",
]

#: Digits of the store key an event shows.
KEY_PREFIX_LENGTH = 12


class SessionEvent:
    """Base of every event here.

    :param request: the request that caused it, or None.
    :param key: the session's store key (only its first 12 digits are kept).
    """

    def __init__(self, request: Request | None, key: str | None) -> None:
        #: The request that caused the event, or None.
        self.request = request
        #: The first 12 hex digits of the session's store key ("" when it has none yet).
        self.key_prefix = (key or "")[:KEY_PREFIX_LENGTH]

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.key_prefix or '-'}>"


class SessionCreated(SessionEvent):
    """A new session was stored for the first time (its first write)."""


class SessionEnded(SessionEvent):
    """A stored session ended; :attr:`reason` says how.

    :param reason: one of the class's reason constants.
    """

    #: ``session.invalidate()``, or every key of the session deleted.
    INVALIDATED = "invalidated"
    #: ``max_lifetime`` reached, found on load.
    EXPIRED = "expired"
    #: ``invalidate_user_sessions`` (or ``psessions purge --user``).
    LOGOUT_EVERYWHERE = "logout_everywhere"
    #: ``end_session`` on the active-sessions list.
    END_SESSION = "end_session"
    #: Ended to keep its user within ``max_sessions_per_user``.
    CAP = "cap"
    #: Its user's index was gone on a store that evicts (see docs/lifecycle.md).
    UNLISTED = "unlisted"

    def __init__(self, request: Request | None, key: str | None, reason: str) -> None:
        super().__init__(request, key)
        #: How the session ended.
        self.reason = reason


class SessionIdRegenerated(SessionEvent):
    """A session moved to a new id (``regenerate_id``, or ``bind_user`` to a new user).

    :attr:`key_prefix` is the new key's; :attr:`old_key_prefix` the old one's.
    """

    def __init__(self, request: Request | None, key: str | None, old_key: str) -> None:
        super().__init__(request, key)
        #: The first 12 hex digits of the store key it moved from.
        self.old_key_prefix = old_key[:KEY_PREFIX_LENGTH]


class SessionWriteConflict(SessionEvent):
    """Another request wrote the session first, and this one's changes were merged.

    :param attempts: compare-and-set attempts, the successful one included.
    """

    def __init__(self, request: Request | None, key: str | None, attempts: int) -> None:
        super().__init__(request, key)
        #: Compare-and-set attempts, the successful one included.
        self.attempts = attempts


class SessionStoreError(SessionEvent):
    """The store could not be reached.

    :param operation: ``load`` or ``save``.
    :param error: the :class:`~pyramid_sessionstore.StoreUnavailableError`.
    """

    def __init__(
        self, request: Request | None, key: str | None, operation: str, error: Exception
    ) -> None:
        super().__init__(request, key)
        #: What was being done: ``load`` or ``save``.
        self.operation = operation
        #: The error the store raised.
        self.error = error


class SessionCookieRejected(SessionEvent):
    """A request's session cookie named no session it could use; it got a fresh one.

    Never carries the cookie's value.
    """

    #: The signature does not verify (forged, garbled, or an unknown secret).
    TAMPERED = "tampered"
    #: Validly signed, but the store has no such session (ended or unknown).
    UNKNOWN = "unknown"
    #: Validly signed, but the session passed ``max_lifetime``.
    EXPIRED = "expired"
    #: The stored record could not be read (corrupt, or it failed authentication).
    CORRUPT = "corrupt"

    def __init__(self, request: Request | None, key: str | None, reason: str) -> None:
        super().__init__(request, key)
        #: Why the cookie was not used.
        self.reason = reason


def notify(request: Request | None, make: Callable[[], Any]) -> None:
    """Send the event *make* builds to *request*'s subscribers, if there are any."""
    registry = getattr(request, "registry", None)
    if registry is not None and getattr(registry, "has_listeners", False):
        registry.notify(make())
