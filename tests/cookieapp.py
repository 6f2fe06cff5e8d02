"""Small Pyramid apps for the cookie store tests: ours, and Pyramid's own cookie sessions."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from pyramid.config import Configurator
from pyramid.request import Request
from pyramid.response import Response
from pyramid.session import SignedCookieSessionFactory
from webtest import TestApp

from pyramid_sessionstore import SessionFactory

#: The secret our factory signs ids with (the cookie store has its own).
FACTORY_SECRET = "factory-secret-" + "f" * 60


def _json(request: Request, body: Any) -> Response:
    request.response.content_type = "application/json"
    request.response.text = json.dumps(body)
    return request.response


def _views() -> dict[str, Callable[[Request], Response]]:
    def set_(request: Request) -> Response:
        request.session[request.matchdict["key"]] = request.matchdict["value"]
        return _json(request, "ok")

    def get(request: Request) -> Response:
        return _json(request, request.session.get(request.matchdict["key"]))

    def dump(request: Request) -> Response:
        session = request.session
        data = {k: session[k] for k in session}
        return _json(request, {"data": data, "created": session.created, "new": session.new})

    def fill(request: Request) -> Response:
        size = int(request.matchdict["size"])
        request.session["blob"] = request.params.get("char", "x") * size
        return _json(request, "ok")

    def flash(request: Request) -> Response:
        request.session.flash(request.matchdict["key"])
        token = request.session.new_csrf_token()
        return _json(request, token)

    def peek(request: Request) -> Response:
        session = request.session
        return _json(request, {"flash": session.peek_flash(), "csrf": session.get_csrf_token()})

    def invalidate(request: Request) -> Response:
        request.session.invalidate()
        return _json(request, "ok")

    return {
        "/set/{key}/{value}": set_,
        "/get/{key}": get,
        "/dump": dump,
        "/fill/{size}": fill,
        "/flash/{key}": flash,
        "/peek": peek,
        "/invalidate": invalidate,
    }


def make_app(factory: Any, settings: dict[str, Any] | None = None) -> TestApp:
    """Return a WebTest app using *factory* (or, if None, ``config.include`` of *settings*)."""
    config = Configurator(settings=settings)
    if factory is None:
        config.include("pyramid_sessionstore")
    else:
        config.set_session_factory(factory)
    for n, (pattern, view) in enumerate(_views().items()):
        config.add_route(f"r{n}", pattern)
        config.add_view(view, route_name=f"r{n}")
    return TestApp(config.make_wsgi_app())


def our_app(store: Any, **options: Any) -> TestApp:
    """Return an app whose SessionFactory keeps sessions in *store*."""
    return make_app(SessionFactory(secret=FACTORY_SECRET, store=store, **options))


def pyramid_app(secret: str, **options: Any) -> TestApp:
    """Return an app using Pyramid's own ``SignedCookieSessionFactory``."""
    return make_app(SignedCookieSessionFactory(secret, **options))


def set_cookie_value(response: Any, name: str = "session") -> str | None:
    """Return the value the response sets for cookie *name*, or None when it sets none."""
    for header in response.headers.getall("Set-Cookie"):
        cookie_name, _, rest = header.partition("=")
        if cookie_name == name:
            return str(rest.split(";", 1)[0])
    return None
