"""Tell a browser that its session ended while it was away.

When another browser presses *Log out everywhere*, or the session's idle
timeout passes, this browser's next request simply has no session: the
library cannot tell "ended" from "never logged in", and must not (an unknown
session id is a fresh session, whatever the cookie says). The demo remembers
the difference itself, in a small cookie of its own, kept apart from the
session: ``demo_logged_in=1`` while the browser is logged in. When that cookie
comes back with a session that has no user, the session ended elsewhere or
expired, and the page says so once; the cookie is then removed.

The cookie holds no id and no secret, only "this browser was logged in".
Logging out in this browser removes it in the same response, so a deliberate
logout is not reported as an ending.
"""

from __future__ import annotations

from pyramid.events import NewResponse
from pyramid.interfaces import ISessionFactory
from pyramid.request import Request

from pyramid_sessionstore.cookie_header import CookieHeader

__all__ = ["COOKIE", "session_ended", "track_login"]

#: The demo's own cookie: "1" while this browser is logged in.
COOKIE = "demo_logged_in"


# Read with the library's reader: WebOb's request.cookies parses the whole
# header in time quadratic in its length (a 32 KB header takes seconds).
_READER = CookieHeader(
    COOKIE, max_age=None, path="/", domain=None, secure=False, httponly=True, samesite=None
)


def _marked(request: Request) -> bool:
    return _READER.read(request.environ) == "1"


def session_ended(request: Request) -> bool:
    """Tell whether this browser was logged in and its session is gone."""
    return _marked(request) and request.session.userid is None


def track_login(event: NewResponse) -> None:
    """Set or remove :data:`COOKIE` on a response, to match the session.

    Subscribed to :class:`pyramid.events.NewResponse`. The cookie follows the
    session cookie's lifetime and path, so a "remember me" login survives a
    browser restart on both; responses of views that did not touch the session
    are left alone.
    """
    request, response = event.request, event.response
    if "session" not in request.__dict__:  # Pyramid's request.session is reified
        return
    logged_in = request.session.userid is not None
    marked = _marked(request)
    factory = request.registry.getUtility(ISessionFactory)
    if logged_in and not marked:
        response.set_cookie(
            COOKIE,
            "1",
            max_age=factory.max_age,
            path=factory.path,
            secure=factory.secure,
            httponly=True,
            samesite="Lax",
        )
    elif marked and not logged_in:
        response.delete_cookie(COOKIE, path=factory.path)
