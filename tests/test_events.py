"""Every lifecycle event fires, with a key prefix and never a session id, on real stores."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pyramid.config import Configurator
from pyramid.request import Request
from pyramid.response import Response
from webtest import TestApp

from apps import make_wsgi_app
from apps import session_cookie
from pyramid_sessionstore import SessionFactory
from pyramid_sessionstore import StoreUnavailableError
from pyramid_sessionstore import end_session
from pyramid_sessionstore import list_user_sessions
from pyramid_sessionstore.cookies import store_key
from pyramid_sessionstore.events import SessionCookieRejected
from pyramid_sessionstore.events import SessionCreated
from pyramid_sessionstore.events import SessionEnded
from pyramid_sessionstore.events import SessionEvent
from pyramid_sessionstore.events import SessionIdRegenerated
from pyramid_sessionstore.events import SessionStoreError
from pyramid_sessionstore.events import SessionWriteConflict
from pyramid_sessionstore.users import index_keys
from stores import build
from stores import drop
from stores import params

SECRET = "events-tests-" + "Pk5sA9dZ" * 6


@pytest.fixture(params=params(["sqlite", "redis"]))
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    kind = str(request.param)
    store = build(kind, tmp_path)
    yield store
    drop(kind, store)


class Recorder:
    def __init__(self) -> None:
        self.seen: list[SessionEvent] = []

    def __call__(self, event: SessionEvent) -> None:
        self.seen.append(event)

    def of(self, kind: type[SessionEvent]) -> list[Any]:
        return [e for e in self.seen if type(e) is kind]


def _end_view(request: Request) -> Response:
    handle = next(i.handle for i in list_user_sessions(request, "u") if not i.current)
    request.response.text = str(end_session(request, "u", handle))
    return request.response


def app_with(factory: SessionFactory, recorder: Recorder) -> TestApp:
    wsgi = make_wsgi_app(factory, extra_views=[("end_other", "/end_other", _end_view)])
    with Configurator(registry=wsgi.registry) as config:
        config.add_subscriber(recorder, SessionEvent)
    return TestApp(wsgi)


def test_every_event_fires_without_a_session_id(store: Any) -> None:
    recorder = Recorder()
    factory = SessionFactory(SECRET, store=store, max_lifetime=3600, max_sessions_per_user=2)
    app = app_with(factory, recorder)

    app.get("/set/a/1")
    created = recorder.of(SessionCreated)
    cookie = session_cookie(app)
    assert cookie and len(created) == 1 and created[0].request is not None
    assert created[0].key_prefix == store_key(cookie.split(".")[0])[:12]

    app.get("/regenerate")
    (moved,) = recorder.of(SessionIdRegenerated)
    assert moved.old_key_prefix == created[0].key_prefix != moved.key_prefix

    app.get("/invalidate")
    assert [e.reason for e in recorder.of(SessionEnded)] == [SessionEnded.INVALIDATED]

    tampered = TestApp(app.app)
    tampered.set_cookie("session", cookie[:-2] + ("AA" if not cookie.endswith("AA") else "BB"))
    tampered.get("/get/a")
    unknown = TestApp(app.app)
    unknown.set_cookie("session", cookie)  # validly signed, its session ended
    unknown.get("/get/a")
    reasons = [e.reason for e in recorder.of(SessionCookieRejected)]
    assert reasons == [SessionCookieRejected.TAMPERED, SessionCookieRejected.UNKNOWN]

    devices = [TestApp(app.app) for _ in range(3)]
    for device in devices:
        device.get("/bind/u")  # the third pushes the first out of max_sessions_per_user
    assert SessionEnded.CAP in [e.reason for e in recorder.of(SessionEnded)]
    assert devices[2].get("/end_other").text == "True"
    assert SessionEnded.END_SESSION in [e.reason for e in recorder.of(SessionEnded)]
    devices[2].get("/everywhere/u")
    assert SessionEnded.LOGOUT_EVERYWHERE in [e.reason for e in recorder.of(SessionEnded)]
    for key in index_keys(factory.policy, "u"):
        store.delete(key)

    for event in recorder.seen:  # no event shows the id, in any attribute
        shown = repr(vars(event))
        assert cookie.split(".")[0] not in shown


def test_write_conflict_event_reports_the_attempts(store: Any) -> None:
    from test_write_path import Pause
    from test_write_path import finish
    from test_write_path import paused_app
    from test_write_path import run_paused

    recorder = Recorder()
    pause = Pause()
    app = paused_app(store, pause)
    with Configurator(registry=app.app.registry) as config:
        config.add_subscriber(recorder, SessionEvent)
    app.get("/set/base/1")
    _, pending = run_paused(app, "/then/set", pause)
    other = TestApp(app.app)
    other.set_cookie("session", session_cookie(app))
    other.get("/set/other/2")
    finish(pause, pending)
    (conflict,) = recorder.of(SessionWriteConflict)
    assert conflict.attempts == 2


class DownStore:
    def __init__(self, inner: Any) -> None:
        self.inner, self.down = inner, False

    def __getattr__(self, name: str) -> Any:
        method = getattr(self.inner, name)
        if name in ("load", "save") and self.down:

            def fail(*args: Any) -> Any:
                raise StoreUnavailableError("down", self)

            return fail
        return method


def test_store_error_event_names_the_operation(store: Any) -> None:
    recorder = Recorder()
    down = DownStore(store)
    app = app_with(SessionFactory(SECRET, store=down), recorder)  # type: ignore[arg-type]
    app.get("/set/a/1")
    down.down = True
    with pytest.raises(StoreUnavailableError):
        app.get("/get/a")
    assert [e.operation for e in recorder.of(SessionStoreError)] == ["load"]
    fresh = TestApp(app.app)
    fresh.get("/set/b/2", status=503)
    assert [e.operation for e in recorder.of(SessionStoreError)] == ["load", "save"]


def test_lifetime_end_is_an_expired_event(store: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    import time

    recorder = Recorder()
    app = app_with(SessionFactory(SECRET, store=store, max_lifetime=100), recorder)
    app.get("/set/a/1")
    real = time.time
    monkeypatch.setattr(time, "time", lambda: real() + 101)
    app.get("/get/a")
    assert [e.reason for e in recorder.of(SessionEnded)] == [SessionEnded.EXPIRED]
