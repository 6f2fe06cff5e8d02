"""Promises docs/security.md and docs/lifecycle.md make, each checked by a test that breaks with it.

A mutation run over the suite found these promises untested (issue 10 item
28): the round trips of invalidate, regenerate and login; ordinary requests
never touching the user index; the 128-character cookie pre-check; a write
to an unreachable store; logout-everywhere under contention.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from unittest.mock import ANY

import pytest
from pyramid.config import Configurator
from pyramid.request import Request
from pyramid.response import Response
from webtest import TestApp

from apps import CountingStore
from apps import make_app
from apps import make_wsgi_app
from apps import session_cookie
from pyramid_sessionstore import SessionFactory
from pyramid_sessionstore import StoreUnavailableError
from pyramid_sessionstore.cookies import MAX_COOKIE_LENGTH
from pyramid_sessionstore.cookies import Signer
from pyramid_sessionstore.stores import MemoryStore
from pyramid_sessionstore.users import index_keys
from stores import SERVER_SIDE_KINDS
from stores import build
from stores import drop
from stores import params

SECRET = "promises-tests-" + "Jm4xT0bR" * 6


class KeyedStore(CountingStore):
    """Count calls per (method, kind of key): a session key or a user index key."""

    def __init__(self, inner: Any) -> None:
        super().__init__(inner)
        self.by_kind: Counter[tuple[str, str]] = Counter()

    def _kind(self, key: str) -> str:
        return "index" if len(key) == 40 else "session"

    def load(self, key: str, ttl: int | None) -> Any:
        self.by_kind["load", self._kind(key)] += 1
        return super().load(key, ttl)

    def save(self, key: str, data: bytes, ttl: int | None, expected_version: str | None) -> str:
        self.by_kind["save", self._kind(key)] += 1
        return super().save(key, data, ttl, expected_version)

    def delete(self, key: str) -> None:
        self.by_kind["delete", self._kind(key)] += 1
        super().delete(key)

    def reset(self) -> None:
        super().reset()
        self.by_kind.clear()


@pytest.fixture
def keyed() -> KeyedStore:
    return KeyedStore(MemoryStore())


@pytest.fixture
def app(keyed: KeyedStore) -> TestApp:
    return make_app(SessionFactory(SECRET, store=keyed))


def test_invalidate_is_a_load_and_a_delete(app: TestApp, keyed: KeyedStore) -> None:
    app.get("/set/a/1")
    keyed.reset()
    app.get("/invalidate")
    assert dict(keyed.calls) == {"load": 1, "delete": 1}


def test_regenerate_claims_then_creates_then_checks_then_deletes(
    app: TestApp, keyed: KeyedStore
) -> None:
    app.get("/set/a/1")
    keyed.reset()
    app.get("/regenerate")
    assert dict(keyed.calls) == {"load": 2, "save": 2, "delete": 1}


def test_login_adds_the_user_index_read_and_write(app: TestApp, keyed: KeyedStore) -> None:
    app.get("/set/a/1")
    keyed.reset()
    app.get("/bind/alice")
    assert keyed.by_kind == Counter(
        {
            ("load", "session"): 2,
            ("save", "session"): 2,
            ("delete", "session"): 1,
            ("load", "index"): 2,  # under the secret's key, and 0.1's key for migration
            ("save", "index"): 1,
        }
    )


def test_ordinary_requests_of_a_logged_in_user_never_touch_the_index(
    app: TestApp, keyed: KeyedStore
) -> None:
    app.get("/bind/alice")
    keyed.reset()
    for path in ("/get/a", "/set/a/1", "/append/l/x", "/incr", "/get/l", "/dump"):
        app.get(path)
    assert not any(kind == "index" for _, kind in keyed.by_kind)


def test_over_long_cookie_is_rejected_before_any_parsing() -> None:
    class Watched(str):
        touched = False

        def rpartition(self, sep: str) -> Any:  # type: ignore[override]
            Watched.touched = True
            return super().rpartition(sep)

    signer = Signer([SECRET])
    good = signer.sign("i" * 43)
    assert signer.verify(Watched(good)) is not None and Watched.touched
    Watched.touched = False
    assert signer.verify(Watched(good + "x" * (MAX_COOKIE_LENGTH + 1 - len(good)))) is None
    assert not Watched.touched


# -- a store that is down when the response is saved ---------------------------


class DownOnSave(MemoryStore):
    down = False

    def save(self, key: str, data: bytes, ttl: int | None, expected_version: str | None) -> str:
        if self.down:
            raise StoreUnavailableError("store is down", self)
        return super().save(key, data, ttl, expected_version)


def test_write_to_unreachable_store_answers_503_and_keeps_the_old_session() -> None:
    store = DownOnSave()
    app = make_app(SessionFactory(SECRET, store=store))
    app.get("/set/a/1")
    store.down = True
    res = app.get("/set/a/2", status=503)
    assert res.headers["Retry-After"] and "Set-Cookie" not in res.headers
    store.down = False
    assert app.get("/get/a").json == {"value": "1"}


def test_write_to_unreachable_store_uses_the_apps_exception_view() -> None:
    def unavailable(exc: StoreUnavailableError, request: Request) -> Response:
        return Response("maintenance", status=502)

    store = DownOnSave()
    wsgi = make_wsgi_app(SessionFactory(SECRET, store=store))
    with Configurator(registry=wsgi.registry) as config:
        config.add_exception_view(unavailable, context=StoreUnavailableError)
    app = TestApp(wsgi)
    store.down = True
    res = app.get("/set/a/2", status=502)
    assert res.text == "maintenance"


# -- logout everywhere while the user's sessions are busy ----------------------


@pytest.fixture(params=params(SERVER_SIDE_KINDS))
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    kind = str(request.param)
    store = build(kind, tmp_path)
    yield store
    drop(kind, store)


def test_logout_everywhere_under_contention_ends_every_session_bound_before(store: Any) -> None:
    factory = SessionFactory(SECRET, store=store)
    app = make_app(factory)
    cookies = []
    for _ in range(12):
        browser = TestApp(app.app)
        browser.get("/bind/carol")
        cookies.append(session_cookie(browser))
    stop = threading.Event()
    errors: list[Any] = []

    def busy(cookie: str | None, n: int) -> None:
        browser = TestApp(app.app)
        browser.set_cookie("session", cookie)
        i = 0
        while not stop.is_set() and i < 200:
            i += 1
            try:
                browser.get(f"/set/k{n}/{i}")
            except Exception as err:  # noqa: BLE001 - reported below
                errors.append(err)

    def logins() -> None:
        i = 0
        while not stop.is_set() and i < 50:
            i += 1
            try:
                TestApp(app.app).get("/bind/carol")
            except Exception as err:  # noqa: BLE001 - reported below
                errors.append(err)

    workers = [threading.Thread(target=busy, args=(c, n)) for n, c in enumerate(cookies[:4])]
    workers += [threading.Thread(target=logins) for _ in range(3)]
    for worker in workers:
        worker.start()
    try:
        ended = TestApp(app.app).get("/everywhere/carol").json["ended"]
    finally:
        stop.set()
        for worker in workers:
            worker.join(60)
    assert errors == []
    assert ended >= len(cookies)
    for cookie in cookies:
        replay = TestApp(app.app)
        replay.set_cookie("session", cookie)
        assert replay.get("/dump").json["userid"] is None
    for key in index_keys(factory.policy, "carol"):
        store.delete(key)


# -- the user index is as durable as the sessions it lists ---------------------


@pytest.fixture(params=params(["memory", "memcached", "chain"]))
def evicting(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    kind = str(request.param)
    if kind == "chain":  # a chain whose store of record evicts
        from pyramid_sessionstore.stores import ChainStore

        store = ChainStore(stores=[MemoryStore(), MemoryStore()])
        yield store
        store.close()
        return
    store = build(kind, tmp_path)
    yield store
    drop(kind, store)


def test_evicted_user_index_ends_the_users_sessions(evicting: Any) -> None:
    """Eviction of the index (LRU under memory pressure) must not hide sessions from
    logout-everywhere: on a store that evicts, a bound session lives only while its
    user's index lists it."""
    factory = SessionFactory(SECRET, store=evicting)
    app = make_app(factory)
    app.get("/bind/dave")
    app.get("/set/a/1")
    assert app.get("/dump").json["userid"] == "dave"
    for key in index_keys(factory.policy, "dave"):
        evicting.delete(key)  # what an LRU eviction does
    assert app.get("/dump").json == {"data": {}, "created": ANY, "new": True, "userid": None}


def test_memory_store_churn_cannot_keep_a_user_logged_in_after_logout_everywhere() -> None:
    store = MemoryStore(max_entries=50)
    app = make_app(SessionFactory(SECRET, store=store))
    app.get("/bind/erin")
    for _ in range(200):  # anonymous sessions push the index out; the user stays active
        TestApp(app.app).get("/set/x/1")
        app.get("/get/x")
    TestApp(app.app).get("/everywhere/erin")
    assert app.get("/dump").json["userid"] is None
