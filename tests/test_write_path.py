"""The end of a request against races with logout, corruption and callbacks, on every store.

Each test here failed before the write path was reshaped (issue 10): a
regeneration that brought back a session logged out meanwhile, a delete
lost in a merge, a record gone corrupt between load and save, a change made
by a response callback registered later, a CSRF rejection that stored a
session, and store expiries set by a replayed cookie instead of the record.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pyramid.csrf import SessionCSRFStoragePolicy
from pyramid.request import Request
from pyramid.response import Response
from webtest import TestApp

from apps import CountingStore
from apps import make_app
from apps import session_cookie
from pyramid_sessionstore import SessionFactory
from pyramid_sessionstore.cookies import store_key
from stores import SERVER_SIDE_KINDS
from stores import build
from stores import drop
from stores import params

SECRET = "write-path-tests-" + "Hv3nQ8rT" * 6


class Pause:
    """Hold a view after it loaded the session until the test lets it go on."""

    def __init__(self) -> None:
        self.loaded = threading.Event()
        self.go = threading.Event()

    def __call__(self) -> None:
        self.loaded.set()
        assert self.go.wait(20)


@pytest.fixture(params=params(SERVER_SIDE_KINDS))
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def store(kind: str, tmp_path: Path) -> Iterator[Any]:
    store = build(kind, tmp_path)
    yield store
    drop(kind, store)


def paused_app(store: Any, pause: Pause, **options: Any) -> TestApp:
    def then(request: Request) -> Response:
        session = request.session
        session.get("x")  # load, then let the test act on the store
        pause()
        action = request.matchdict["action"]
        if action == "regenerate":
            session.regenerate_id()
        elif action == "rebind":
            session.bind_user("mallory")
        elif action == "forget":
            del session["gone"]
            session.changed()
        elif action == "set":
            session["mine"] = "yes"
        request.response.text = "ok"
        return request.response

    return make_app(
        SessionFactory(SECRET, store=store, **options),
        extra_views=[("then", "/then/{action}", then)],
    )


def run_paused(app: TestApp, path: str, pause: Pause) -> tuple[TestApp, list[Any]]:
    """Start *path* in a browser holding the app's cookie; return it once loaded."""
    browser = TestApp(app.app)
    browser.set_cookie("session", session_cookie(app))
    result: list[Any] = []
    thread = threading.Thread(target=lambda: result.append(browser.get(path)))
    thread.start()
    assert pause.loaded.wait(20)
    result.append(thread)
    return browser, result


def finish(pause: Pause, result: list[Any]) -> Any:
    pause.go.set()
    thread = result.pop()
    thread.join(30)
    return result[0]


@pytest.mark.parametrize("action", ["regenerate", "rebind"])
def test_new_id_after_logout_everywhere_does_not_resurrect(store: Any, action: str) -> None:
    pause = Pause()
    app = paused_app(store, pause)
    app.get("/bind/alice")
    browser, pending = run_paused(app, f"/then/{action}", pause)
    other = TestApp(app.app)
    other.set_cookie("session", session_cookie(app))
    assert other.get("/everywhere/alice").json == {"ended": 1}
    finish(pause, pending)
    assert browser.get("/dump").json["data"] == {}
    assert app.get("/dump").json["data"] == {}


def test_new_id_after_invalidate_elsewhere_does_not_resurrect(store: Any) -> None:
    pause = Pause()
    app = paused_app(store, pause)
    app.get("/set/base/1")
    browser, pending = run_paused(app, "/then/regenerate", pause)
    other = TestApp(app.app)
    other.set_cookie("session", session_cookie(app))
    other.get("/invalidate")
    finish(pause, pending)
    assert browser.get("/dump").json["data"] == {}


def test_regenerate_after_a_write_elsewhere_keeps_both(store: Any) -> None:
    pause = Pause()
    app = paused_app(store, pause)
    app.get("/set/base/1")
    old = session_cookie(app)
    browser, pending = run_paused(app, "/then/regenerate", pause)
    other = TestApp(app.app)
    other.set_cookie("session", old)
    other.get("/set/other/2")
    res = finish(pause, pending)
    assert session_cookie(browser) != old and "Set-Cookie" in res.headers
    assert browser.get("/dump").json["data"] == {"base": "1", "other": "2"}
    replay = TestApp(app.app)
    replay.set_cookie("session", old)
    assert replay.get("/dump").json["data"] == {}


def test_delete_marked_with_changed_survives_a_lost_race(store: Any) -> None:
    pause = Pause()
    app = paused_app(store, pause)
    app.get("/set/gone/1")
    app.get("/set/keep/1")
    browser, pending = run_paused(app, "/then/forget", pause)
    other = TestApp(app.app)
    other.set_cookie("session", session_cookie(app))
    other.get("/set/y/2")
    finish(pause, pending)
    assert app.get("/dump").json["data"] == {"keep": "1", "y": "2"}


def test_corrupt_record_met_while_merging_is_a_fresh_session(store: Any) -> None:
    pause = Pause()
    app = paused_app(store, pause)
    app.get("/set/base/1")
    cookie = session_cookie(app)
    assert cookie is not None
    key = store_key(cookie.split(".")[0])
    browser, pending = run_paused(app, "/then/set", pause)
    record = store.load(key, 60)
    store.save(key, b"PSS\x01 garbage that is no session", 60, record.version)
    res = finish(pause, pending)
    assert res.status_int == 200
    assert browser.get("/dump").json["data"] == {}


# -- callbacks and CSRF ---------------------------------------------------------


def _remember_page(request: Request, response: Any) -> None:
    request.session["last_page"] = request.path


@pytest.mark.parametrize("order", ["callback-first", "session-first"])
def test_change_made_by_a_later_response_callback_is_saved(store: Any, order: str) -> None:
    def view(request: Request) -> Response:
        if order == "callback-first":
            request.add_response_callback(_remember_page)
            request.session["a"] = "1"
        else:
            request.session["a"] = "1"
            request.add_response_callback(_remember_page)
        request.response.text = "ok"
        return request.response

    app = make_app(SessionFactory(SECRET, store=store), extra_views=[("page", "/page", view)])
    app.get("/page")
    assert app.get("/dump").json["data"] == {"a": "1", "last_page": "/page"}


def test_request_rejected_by_csrf_check_stores_nothing(store: Any) -> None:
    counting = CountingStore(store)
    app = make_app(
        SessionFactory(SECRET, store=counting),
        csrf_policy=SessionCSRFStoragePolicy(),
        require_csrf=True,
    )
    for _ in range(5):
        res = app.post("/post_form", status=400)
        assert "Set-Cookie" not in res.headers
    assert counting.calls["save"] == 0
    app.get("/set/a/1")
    counting.reset()
    app.post("/post_form", {"csrf_token": "wrong"}, status=400)
    assert counting.calls["save"] == 0 and app.get("/get/a").json == {"value": "1"}


# -- expiry is the record's, not the cookie's ----------------------------------


def _ttl_seen(store: Any) -> CountingStore:
    seen = CountingStore(store)
    seen.ttls = []  # type: ignore[attr-defined]
    inner_load, inner_touch = seen.load, seen.touch

    def load(key: str, ttl: int | None) -> Any:
        seen.ttls.append(("load", ttl))  # type: ignore[attr-defined]
        return inner_load(key, ttl)

    def touch(key: str, ttl: int | None) -> bool:
        seen.ttls.append(("touch", ttl))  # type: ignore[attr-defined]
        return inner_touch(key, ttl)

    seen.load, seen.touch = load, touch  # type: ignore[method-assign]
    return seen


def test_replayed_older_cookie_does_not_stretch_the_record_timeout(store: Any) -> None:
    seen = _ttl_seen(store)
    app = make_app(SessionFactory(SECRET, store=seen, timeout=60))
    app.get("/set_timeout/3600")
    remembered = session_cookie(app)
    app.get("/set_timeout/default")
    replay = TestApp(app.app)
    replay.set_cookie("session", remembered)
    seen.ttls.clear()  # type: ignore[attr-defined]
    replay.get("/get/t")
    # The load used the cookie's 3600 s; the record says the default: put it back.
    assert seen.ttls == [("load", 3600), ("touch", 60)]  # type: ignore[attr-defined]


def test_remember_me_is_kept_when_read_with_an_older_cookie(store: Any) -> None:
    seen = _ttl_seen(store)
    app = make_app(SessionFactory(SECRET, store=seen, timeout=60))
    app.get("/set/a/1")
    plain = session_cookie(app)
    app.get("/set_timeout/3600")
    replay = TestApp(app.app)
    replay.set_cookie("session", plain)
    seen.ttls.clear()  # type: ignore[attr-defined]
    res = replay.get("/get/a")
    assert seen.ttls == [("load", 60), ("touch", 3600)]  # type: ignore[attr-defined]
    assert "Set-Cookie" in res.headers  # the cookie catches up with the record


def test_max_lifetime_caps_the_store_expiry_by_what_is_left(
    store: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen = _ttl_seen(store)
    app = make_app(SessionFactory(SECRET, store=seen, timeout=600, max_lifetime=1000))
    app.get("/set/a/1")
    real = time.time
    monkeypatch.setattr(time, "time", lambda: real() + 900)
    seen.ttls.clear()  # type: ignore[attr-defined]
    app.get("/get/a")
    kind, left = seen.ttls[-1]  # type: ignore[attr-defined]
    assert kind == "touch" and 95 <= left <= 101
