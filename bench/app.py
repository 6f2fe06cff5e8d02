"""The minimal Pyramid app every session factory is timed in.

Four views, one per scenario:

- ``/nosession`` never touches the session;
- ``/read`` reads one key of an existing session and returns it;
- ``/write`` sets one key of an existing session (to the request's
  ``bench.value``);
- ``/new`` is a first visit: it fills a new session with a small, realistic
  payload (a user id, a name, a CSRF-sized token, a counter).

The bare app (no session factory) has the same routes with views that do the
same work minus the session, so "cost over bare" is what the session costs.
"""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Sequence
from typing import Any

from pyramid.config import Configurator
from pyramid.response import Response

__all__ = ["PAYLOAD", "make_app"]

#: What ``/new`` puts in a session (about 120 bytes as JSON).
PAYLOAD: dict[str, Any] = {
    "user_id": 4242,
    "name": "alice@example.com",
    "csrf": "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b",
    "n": 0,
}


def _nosession(request: Any) -> Response:
    return Response(body=b"ok", content_type="text/plain")


def _read(request: Any) -> Response:
    return Response(body=str(request.session.get("n")).encode(), content_type="text/plain")


def _write(request: Any) -> Response:
    request.session["n"] = request.environ["bench.value"]
    return Response(body=b"ok", content_type="text/plain")


def _new(request: Any) -> Response:
    session = request.session
    for key, value in PAYLOAD.items():
        session[key] = value
    return Response(body=b"ok", content_type="text/plain")


def _bare_read(request: Any) -> Response:
    return Response(body=str(None).encode(), content_type="text/plain")


def _bare_write(request: Any) -> Response:
    request.environ["bench.value"]  # noqa: B018 - same lookup as the session view
    return Response(body=b"ok", content_type="text/plain")


def make_app(
    session_factory: Any | None, subscribers: Sequence[tuple[Callable[[Any], None], type]] = ()
) -> Any:
    """Return the WSGI app, with *session_factory* (None: the bare app) and *subscribers*."""
    config = Configurator()
    for subscriber, event_type in subscribers:
        config.add_subscriber(subscriber, event_type)
    if session_factory is not None:
        config.set_session_factory(session_factory)
        views = {"/read": _read, "/write": _write, "/new": _new}
    else:
        views = {"/read": _bare_read, "/write": _bare_write, "/new": _bare_write}
    views["/nosession"] = _nosession
    for path, view in views.items():
        name = path.strip("/")
        config.add_route(name, path)
        config.add_view(view, route_name=name)
    return config.make_wsgi_app()
