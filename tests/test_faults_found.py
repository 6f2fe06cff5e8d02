"""Faults a reviewer found by attacking the rebuilt write path, user index and active sessions.

Every test here was a confirmed bug, found by trying to break the library, and
now checks its fix. Interleavings
are forced with a store subclass or a wrapped helper that pauses at one
point; the stores themselves are real (Redis, memcached, the memory store).
"""

from __future__ import annotations

import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from pyramid.config import Configurator
from pyramid.exceptions import BadCSRFToken
from pyramid.httpexceptions import HTTPSeeOther
from pyramid.request import Request
from pyramid.response import Response
from webtest import TestApp

import apps
from apps import make_app
from apps import session_cookie
from pyramid_sessionstore import SessionFactory
from pyramid_sessionstore import active
from pyramid_sessionstore import end_session
from pyramid_sessionstore import invalidate_user_sessions
from pyramid_sessionstore import list_user_sessions
from pyramid_sessionstore import users
from pyramid_sessionstore.events import SessionEnded
from pyramid_sessionstore.payload import TOMBSTONE
from pyramid_sessionstore.stores import MemcachedStore
from pyramid_sessionstore.stores import MemoryStore
from pyramid_sessionstore.stores import RedisStore
from servers import MEMCACHED_SERVERS
from servers import REDIS_URL
from servers import ensure_server

OLD = "breakit-old-" + "Xq7pL2mN" * 8
NEW = "breakit-new-" + "Rt5vB9cW" * 8


def _redis(prefix: str = "") -> RedisStore:
    ensure_server("redis", REDIS_URL, 6379)
    return RedisStore(url=REDIS_URL, prefix=prefix or f"brk{uuid.uuid4().hex[:10]}:")


@pytest.fixture
def redis_store() -> Iterator[RedisStore]:
    store = _redis()
    yield store
    for key in list(store.keys()):
        store.delete(key)
    store.close()


def _json(request: Request, body: Any) -> Response:
    request.response.content_type = "application/json"
    request.response.json_body = body
    return request.response


def _active_views() -> list[tuple[str, str, Any]]:
    def listing(request: Request) -> Response:
        infos = list_user_sessions(request, "alice")
        return _json(request, [[i.handle, i.current] for i in infos])

    def ending(request: Request) -> Response:
        return _json(request, end_session(request, "alice", request.params["h"]))

    return [("list", "/list", listing), ("end", "/end", ending)]


def _other(app: TestApp, cookie: str | None = None) -> TestApp:
    browser = TestApp(app.app)
    if cookie is not None:
        browser.set_cookie("session", cookie)
    return browser


# -- secret rotation and the user index ------------------------------------------


@pytest.mark.redis
def test_logout_everywhere_finds_sessions_bound_before_a_secret_rotation(
    redis_store: RedisStore,
) -> None:
    def wsgi(secrets: list[str]) -> Any:
        return make_app(SessionFactory(secrets=secrets, store=redis_store)).app

    laptop = TestApp(wsgi([OLD]))
    laptop.get("/bind/alice")
    laptop.app = wsgi([NEW, OLD])
    laptop.get("/get/x")  # an active user: the cookie is re-signed with NEW
    laptop.app = wsgi([NEW])  # the old secret removed
    assert laptop.get("/dump").json["userid"] == "alice"
    assert TestApp(laptop.app).get("/everywhere/alice").json == {"ended": 1}
    assert laptop.get("/dump").json["userid"] is None


@pytest.mark.memcached
def test_rolling_secret_rotation_on_memcached_logs_nobody_out() -> None:
    ensure_server("memcached", MEMCACHED_SERVERS, 11211)
    store = MemcachedStore(servers=MEMCACHED_SERVERS.split(), prefix=f"brk{uuid.uuid4().hex[:10]}:")
    try:
        old_worker = make_app(SessionFactory(secrets=[OLD], store=store)).app
        new_worker = make_app(SessionFactory(secrets=[NEW, OLD], store=store)).app
        laptop = TestApp(old_worker)
        laptop.get("/bind/alice")
        TestApp(new_worker).get("/bind/alice")  # the same user logs in on a phone
        assert laptop.get("/dump").json["userid"] == "alice"
    finally:
        store.close()


@pytest.mark.redis
def test_encrypted_session_only_read_during_a_rotation_survives_it(
    redis_store: RedisStore,
) -> None:
    def wsgi(secrets: list[str]) -> Any:
        return make_app(SessionFactory(secrets=secrets, store=redis_store, encrypt=True)).app

    reader = TestApp(wsgi([OLD]))
    reader.get("/set/cart/book")
    reader.app = wsgi([NEW, OLD])
    assert reader.get("/get/cart").json == {"value": "book"}
    reader.app = wsgi([NEW])
    assert reader.get("/get/cart").json == {"value": "book"}


# -- logout everywhere, end_session and the index --------------------------------


@pytest.mark.redis
def test_regenerate_then_end_other_sessions_keeps_this_one(redis_store: RedisStore) -> None:
    def change_password(request: Request) -> Response:
        request.session.regenerate_id()  # renew the id after a privilege change
        ended = invalidate_user_sessions(request, "alice", except_current=True)
        return _json(request, ended)

    app = make_app(
        SessionFactory(OLD, store=redis_store), extra_views=[("pw", "/pw", change_password)]
    )
    app.get("/bind/alice")
    phone = _other(app)
    phone.get("/bind/alice")
    assert app.get("/pw").json == 1
    assert app.get("/dump").json["userid"] == "alice"
    assert phone.get("/dump").json["userid"] is None


@pytest.mark.redis
def test_login_then_logout_everywhere_in_one_request_ends_this_session_too(
    redis_store: RedisStore,
) -> None:
    def login_and_end_all(request: Request) -> Response:
        request.session.bind_user("alice")
        request.session["user"] = "alice"
        return _json(request, invalidate_user_sessions(request, "alice"))

    app = make_app(
        SessionFactory(OLD, store=redis_store), extra_views=[("l", "/l", login_and_end_all)]
    )
    app.get("/l")
    assert app.get("/dump").json["userid"] is None


class _PausedMove(MemoryStore):
    """Pause the first regenerate_id after it claimed the old record (wrote the tombstone)."""

    def __init__(self) -> None:
        super().__init__()
        self.armed = False
        self.claimed = threading.Event()
        self.go = threading.Event()

    def save(self, key: str, data: bytes, ttl: int | None, expected_version: str | None) -> str:
        version = super().save(key, data, ttl, expected_version)
        if self.armed and data == TOMBSTONE:
            self.armed = False
            self.claimed.set()
            assert self.go.wait(20)
        return version


def test_end_session_during_a_regenerate_ends_the_session() -> None:
    store = _PausedMove()
    app = make_app(SessionFactory(OLD, store=store), extra_views=_active_views())
    app.get("/bind/alice")
    phone = _other(app)
    phone.get("/bind/alice")
    [[handle, _]] = [entry for entry in phone.get("/list").json if not entry[1]]
    store.armed = True
    moving = threading.Thread(target=lambda: app.get("/regenerate"))
    moving.start()
    assert store.claimed.wait(20)
    ended = phone.get("/end", params={"h": handle}).json
    store.go.set()
    moving.join(20)
    assert (ended, app.get("/dump").json["userid"]) == (True, None)


@pytest.mark.redis
def test_end_session_with_a_non_ascii_handle_is_false(redis_store: RedisStore) -> None:
    app = make_app(SessionFactory(OLD, store=redis_store), extra_views=_active_views())
    app.get("/bind/alice")
    assert app.get("/end", params={"h": "\u00e9t\u00e9"}, expect_errors=True).json is False


@pytest.mark.redis
def test_a_login_elsewhere_during_logout_everywhere_stays_in_the_index(tmp_path: Path) -> None:
    prefix = f"brk{uuid.uuid4().hex[:10]}:"
    child = tmp_path / "login.py"
    child.write_text(
        "import sys\n"
        f"sys.path.insert(0, {str(Path(__file__).parent)!r})\n"
        "from webtest import TestApp\n"
        "from apps import make_app, session_cookie\n"
        "from pyramid_sessionstore import SessionFactory\n"
        "from pyramid_sessionstore.stores import RedisStore\n"
        f"store = RedisStore(url={REDIS_URL!r}, prefix={prefix!r})\n"
        f"tablet = make_app(SessionFactory({OLD!r}, store=store))\n"
        "tablet.get('/bind/alice')\n"
        "print(session_cookie(tablet))\n"
    )
    cookies: list[str] = []

    class LoginElsewhere(RedisStore):
        armed = False

        def save(self, key: str, data: bytes, ttl: int | None, expected: str | None) -> str:
            version = super().save(key, data, ttl, expected)
            if self.armed and data == b"{}":  # between the compare-and-set and the delete
                self.armed = False
                done = subprocess.run(
                    [sys.executable, str(child)], capture_output=True, text=True, timeout=60
                )
                cookies.append(done.stdout.strip())
            return version

    ensure_server("redis", REDIS_URL, 6379)
    store = LoginElsewhere(url=REDIS_URL, prefix=prefix)
    try:
        app = make_app(SessionFactory(OLD, store=store))
        app.get("/bind/alice")
        store.armed = True
        assert _other(app).get("/everywhere/alice").json == {"ended": 1}
        tablet = _other(app, cookies[0])
        assert tablet.get("/dump").json["userid"] == "alice"  # logged in after the logout
        assert _other(app).get("/everywhere/alice").json == {"ended": 1}
        assert tablet.get("/dump").json["userid"] is None
    finally:
        for key in list(store.keys()):
            store.delete(key)
        store.close()


@pytest.mark.redis
def test_sessions_beyond_the_index_bound_do_not_outlive_logout_everywhere(
    redis_store: RedisStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(users, "MAX_SESSIONS", 3)  # 1000 in the package; same code path
    app = make_app(SessionFactory(OLD, store=redis_store))
    first = _other(app)
    first.get("/bind/alice")  # kept in use (say, by whoever stole it)
    for _ in range(3):
        _other(app).get("/bind/alice")
    first.get("/get/x")
    _other(app).get("/everywhere/alice")
    assert first.get("/dump").json["userid"] is None


@pytest.mark.redis
def test_end_session_of_this_session_that_is_not_saved_stays_reachable(
    redis_store: RedisStore,
) -> None:
    def end_self(request: Request) -> Response:
        [handle] = [i.handle for i in list_user_sessions(request, "alice") if i.current]
        end_session(request, "alice", handle)
        raise RuntimeError("something after it failed")

    factory = SessionFactory(OLD, store=redis_store, set_on_exception=False)
    app = make_app(factory, extra_views=[("es", "/endself", end_self)])
    app.get("/bind/alice")
    app.get("/endself", expect_errors=True)
    _other(app).get("/everywhere/alice")
    assert app.get("/dump").json["userid"] is None


def test_two_logins_at_once_under_a_cap_of_one_leave_one_session(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    gate = threading.Barrier(2, timeout=10)
    real_live = active._live

    def live(policy: Any, userid: Any) -> Any:  # both logins are indexed, both list
        gate.wait()
        found = real_live(policy, userid)
        gate.wait()
        return found

    monkeypatch.setattr(active, "_live", live)
    app = make_app(SessionFactory(OLD, store=MemoryStore(), max_sessions_per_user=1))
    devices = [_other(app), _other(app)]
    logins = [threading.Thread(target=lambda d=d: d.get("/bind/alice")) for d in devices]
    for login in logins:
        login.start()
    for login in logins:
        login.join(20)
    monkeypatch.setattr(active, "_live", real_live)
    assert [d.get("/dump").json["userid"] for d in devices].count("alice") == 1


# -- the write path ---------------------------------------------------------------


class _Pause:
    def __init__(self) -> None:
        self.loaded = threading.Event()
        self.go = threading.Event()

    def __call__(self) -> None:
        self.loaded.set()
        assert self.go.wait(20)


def _race(app: TestApp, path: str, pause: _Pause, meanwhile: str) -> None:
    """Run *path* in a second tab, paused after its load, while *meanwhile* runs."""
    tab = _other(app, session_cookie(app))
    thread = threading.Thread(target=lambda: tab.get(path))
    thread.start()
    assert pause.loaded.wait(20)
    app.get(meanwhile)
    pause.go.set()
    thread.join(20)


@pytest.mark.redis
def test_emptying_a_session_keeps_a_key_another_request_set(redis_store: RedisStore) -> None:
    pause = _Pause()

    def read_flash(request: Request) -> Response:
        request.session.get("x")
        pause()
        return _json(request, request.session.pop_flash())

    app = make_app(
        SessionFactory(OLD, store=redis_store), extra_views=[("rf", "/read_flash", read_flash)]
    )
    app.get("/flash/hello")  # the flash message is the only key
    _race(app, "/read_flash", pause, meanwhile="/set/cart/book")
    assert app.get("/get/cart").json == {"value": "book"}


@pytest.mark.redis
def test_a_change_equal_in_python_survives_a_merge(redis_store: RedisStore) -> None:
    pause = _Pause()

    def seed(request: Request) -> Response:
        request.session.update(flag=1, n=2, price=Decimal("1.5"))
        return _json(request, "ok")

    def change(request: Request) -> Response:
        request.session.get("x")
        pause()
        request.session.update(flag=True, n=2.0, price=Decimal("1.50"))
        return _json(request, "ok")

    def show(request: Request) -> Response:
        request.response.text = repr([request.session[k] for k in ("flag", "n", "price")])
        return request.response

    views = [("seed", "/seed", seed), ("change", "/change", change), ("show", "/show", show)]
    app = make_app(SessionFactory(OLD, store=redis_store), extra_views=views)
    app.get("/seed")
    _race(app, "/change", pause, meanwhile="/set/other/tab")
    assert app.get("/show").text == repr([True, 2.0, Decimal("1.50")])


class _StallAfterClaim(RedisStore):
    """The server stalls (a failover, a pause) right after a move claimed the old record."""

    armed = False
    admin: Any = None

    def save(self, key: str, data: bytes, ttl: int | None, expected: str | None) -> str:
        version = super().save(key, data, ttl, expected)
        if self.armed and data == TOMBSTONE:
            self.armed = False
            self.admin.execute_command("CLIENT", "PAUSE", "1500", "WRITE")
        return version


@pytest.mark.redis
def test_a_store_stall_during_regenerate_keeps_the_old_session(private_redis: Any) -> None:
    import time

    store = _StallAfterClaim(url=private_redis.url, socket_timeout=0.5)
    store.admin = private_redis.client()
    try:
        app = make_app(SessionFactory(OLD, store=store))
        app.get("/bind/alice")
        app.get("/set/cart/book")
        store.armed = True
        assert app.get("/regenerate", expect_errors=True).status_int == 503
        time.sleep(1.6)  # the stall is over
        assert app.get("/get/cart").json == {"value": "book"}
    finally:
        store.close()


# -- CSRF and events --------------------------------------------------------------


@pytest.mark.redis
def test_invalidate_in_a_bad_csrf_exception_view_ends_the_session(
    redis_store: RedisStore,
) -> None:
    def log_out(exc: Exception, request: Request) -> Response:
        request.session.invalidate()
        return HTTPSeeOther("/")

    with Configurator() as config:
        config.set_session_factory(SessionFactory(OLD, store=redis_store))
        config.set_default_csrf_options(require_csrf=True)
        for name, pattern, view in apps._views():
            config.add_route(name, pattern)
            config.add_view(view, route_name=name)
        config.add_exception_view(log_out, context=BadCSRFToken)
        app = TestApp(config.make_wsgi_app())
    app.get("/bind/alice")
    app.post("/post_form", {"csrf_token": "forged"}, status=303)
    assert app.get("/dump").json["userid"] is None


@pytest.mark.redis
def test_logout_everywhere_fires_one_session_ended_per_session(redis_store: RedisStore) -> None:
    seen: list[SessionEnded] = []
    with Configurator() as config:
        config.set_session_factory(SessionFactory(OLD, store=redis_store))
        for name, pattern, view in apps._views():
            config.add_route(name, pattern)
            config.add_view(view, route_name=name)
        config.add_subscriber(seen.append, SessionEnded)
        app = TestApp(config.make_wsgi_app())
    app.get("/bind/alice")
    app.get("/everywhere/alice")
    assert len(seen) == 1
