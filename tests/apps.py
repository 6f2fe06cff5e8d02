"""A small Pyramid app that exercises every session behaviour, for WebTest."""

from __future__ import annotations

import json
import threading
from collections import Counter
from collections.abc import Iterator
from typing import Any

from pyramid.config import Configurator
from pyramid.httpexceptions import HTTPFound
from pyramid.request import Request
from pyramid.response import Response
from webtest import TestApp

from pyramid_sessionstore import SessionFactory
from pyramid_sessionstore import invalidate_user_sessions
from pyramid_sessionstore.stores.base import Record
from pyramid_sessionstore.stores.base import Store


class CountingStore:
    """Wrap a store and count the calls the factory makes."""

    def __init__(self, inner: Store) -> None:
        self.inner = inner
        self.calls: Counter[str] = Counter()

    def load(self, key: str, ttl: int | None) -> Record | None:
        self.calls["load"] += 1
        return self.inner.load(key, ttl)

    def save(self, key: str, data: bytes, ttl: int | None, expected_version: str | None) -> str:
        self.calls["save"] += 1
        return self.inner.save(key, data, ttl, expected_version)

    def touch(self, key: str, ttl: int | None) -> bool:
        self.calls["touch"] += 1
        return self.inner.touch(key, ttl)

    def delete(self, key: str) -> None:
        self.calls["delete"] += 1
        self.inner.delete(key)

    def close(self) -> None:
        self.inner.close()

    def reset(self) -> None:
        self.calls.clear()

    def total(self) -> int:
        return sum(self.calls.values())


def _text(request: Request, body: Any) -> Response:
    if isinstance(body, str):
        request.response.text = body
    else:
        request.response.content_type = "application/json"
        request.response.text = json.dumps(body)
    return request.response


def _views() -> Iterator[tuple[str, str, Any]]:
    def nosession(request: Request) -> Response:
        return _text(request, "no session")

    def get(request: Request) -> Response:
        return _text(request, {"value": request.session.get(request.matchdict["key"])})

    def set_(request: Request) -> Response:
        request.session[request.matchdict["key"]] = request.matchdict["value"]
        return _text(request, "ok")

    def delete(request: Request) -> Response:
        request.session.pop(request.matchdict["key"], None)
        return _text(request, "ok")

    def append(request: Request) -> Response:
        # Mutates a nested list in place, without calling changed().
        request.session.setdefault(request.matchdict["key"], []).append(request.matchdict["value"])
        return _text(request, "ok")

    def incr(request: Request) -> Response:
        session = request.session
        session["n"] = session.get("n", 0) + 1
        return _text(request, {"n": session["n"]})

    def dump(request: Request) -> Response:
        session = request.session
        return _text(
            request,
            {
                "data": dict(session.items()),
                "created": session.created,
                "new": session.new,
                "userid": session.userid,
            },
        )

    def fred(request: Request) -> Response:
        # The example from Pyramid's narrative documentation on sessions.
        session = request.session
        if "abc" in session:
            session["fred"] = "yes"
        session["abc"] = "123"
        if "fred" in session:
            return _text(request, "Fred was in the session")
        return _text(request, "Fred was not in the session")

    def flash(request: Request) -> Response:
        request.session.flash(request.matchdict["msg"], request.params.get("queue", ""))
        return HTTPFound(location="/pop_flash")

    def pop_flash(request: Request) -> Response:
        return _text(request, request.session.pop_flash(request.params.get("queue", "")))

    def peek_flash(request: Request) -> Response:
        return _text(request, request.session.peek_flash(request.params.get("queue", "")))

    def csrf(request: Request) -> Response:
        return _text(request, request.session.get_csrf_token())

    def post_form(request: Request) -> Response:
        return _text(request, "posted")

    def invalidate(request: Request) -> Response:
        request.session.invalidate()
        if "then" in request.params:
            request.session["after"] = request.params["then"]
        return _text(request, "ok")

    def regenerate(request: Request) -> Response:
        session = request.session
        if "before" in request.params:
            session["before"] = request.params["before"]
        session.regenerate_id()
        if "after" in request.params:
            session["after"] = request.params["after"]
        return _text(request, "ok")

    def bind(request: Request) -> Response:
        request.session.bind_user(request.matchdict["user"])
        request.session["user"] = request.matchdict["user"]
        return _text(request, "ok")

    def set_timeout(request: Request) -> Response:
        seconds = request.matchdict["seconds"]
        request.session.set_timeout(None if seconds == "default" else int(seconds))
        request.session["t"] = seconds
        return _text(request, "ok")

    def everywhere(request: Request) -> Response:
        ended = invalidate_user_sessions(
            request, request.matchdict["user"], except_current="keep" in request.params
        )
        return _text(request, {"ended": ended})

    def boom(request: Request) -> Response:
        request.session["before_error"] = "yes"
        raise RuntimeError("view failed")

    def clear(request: Request) -> Response:
        request.session.clear()
        return _text(request, "ok")

    yield "nosession", "/nosession", nosession
    yield "get", "/get/{key}", get
    yield "set", "/set/{key}/{value}", set_
    yield "delete", "/delete/{key}", delete
    yield "append", "/append/{key}/{value}", append
    yield "incr", "/incr", incr
    yield "dump", "/dump", dump
    yield "fred", "/fred", fred
    yield "flash", "/flash/{msg}", flash
    yield "pop_flash", "/pop_flash", pop_flash
    yield "peek_flash", "/peek_flash", peek_flash
    yield "csrf", "/csrf", csrf
    yield "post_form", "/post_form", post_form
    yield "invalidate", "/invalidate", invalidate
    yield "regenerate", "/regenerate", regenerate
    yield "bind", "/bind/{user}", bind
    yield "set_timeout", "/set_timeout/{seconds}", set_timeout
    yield "everywhere", "/everywhere/{user}", everywhere
    yield "boom", "/boom", boom
    yield "clear", "/clear", clear


def error_view(exc: Exception, request: Request) -> Response:
    request.response.status = 500
    request.response.text = f"handled: {exc}"
    return request.response


def make_wsgi_app(
    factory: SessionFactory,
    csrf_policy: Any = None,
    require_csrf: bool = False,
    extra_views: Any = (),
) -> Any:
    """Return the test WSGI app using *factory*."""
    with Configurator() as config:
        config.set_session_factory(factory)
        if csrf_policy is not None:
            config.set_csrf_storage_policy(csrf_policy)
        if require_csrf:
            config.set_default_csrf_options(require_csrf=True)
        for name, pattern, view in [*_views(), *extra_views]:
            config.add_route(name, pattern)
            config.add_view(view, route_name=name)
        config.add_exception_view(error_view, context=RuntimeError)
        return config.make_wsgi_app()


def make_app(factory: SessionFactory, **kwargs: Any) -> TestApp:
    """Return a WebTest app (a browser with a cookie jar) around the test app."""
    return TestApp(make_wsgi_app(factory, **kwargs))


def session_cookie(app: TestApp, name: str = "session") -> str | None:
    """Return the session cookie the browser *app* holds, or None."""
    return app.cookies.get(name)


class Gate:
    """Hold two requests inside their views at once (a barrier for races)."""

    def __init__(self, parties: int = 2) -> None:
        self.barrier = threading.Barrier(parties, timeout=20)

    def wait(self) -> None:
        self.barrier.wait()
