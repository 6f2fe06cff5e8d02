"""SessionFactory: round trips, bad input, secrets, expiry, errors, races."""

from __future__ import annotations

import logging
import time
from typing import Any

import pytest
from pyramid.request import Request
from webtest import TestApp

from apps import CountingStore
from apps import make_app
from apps import session_cookie
from clocks import FakeClock
from pyramid_sessionstore import SessionFactory
from pyramid_sessionstore import StoreUnavailableError
from pyramid_sessionstore.cookies import Signer
from pyramid_sessionstore.cookies import new_session_id
from pyramid_sessionstore.cookies import store_key
from pyramid_sessionstore.serializers import SerializationError
from pyramid_sessionstore.stores import MemoryStore

SECRET = "tests-secret-" + "Xb7qL2vN" * 6
OLD = "old-secret-" + "Pc4zQ9mT" * 6
NEW = "new-secret-" + "Ga2wE6rJ" * 6


@pytest.fixture
def counting() -> CountingStore:
    return CountingStore(MemoryStore())


@pytest.fixture
def app(counting: CountingStore) -> TestApp:
    return make_app(SessionFactory(SECRET, store=counting))


# -- round trips ---------------------------------------------------------------


def test_view_not_touching_session_makes_no_store_call(app: TestApp, counting: Any) -> None:
    app.get("/set/a/1")
    counting.reset()
    app.get("/nosession")
    assert counting.total() == 0


def test_read_only_request_is_one_load_and_no_write(app: TestApp, counting: Any) -> None:
    app.get("/append/items/x")
    app.get("/append/items/y")
    counting.reset()
    res = app.get("/get/items")  # hands out a list, but nothing changes
    assert res.json == {"value": ["x", "y"]}
    assert dict(counting.calls) == {"load": 1}
    assert "Set-Cookie" not in res.headers


def test_first_write_is_one_create_without_load(app: TestApp, counting: Any) -> None:
    app.get("/set/a/1")
    assert dict(counting.calls) == {"save": 1}


def test_changed_session_is_one_load_and_one_save(app: TestApp, counting: Any) -> None:
    app.get("/set/a/1")
    counting.reset()
    res = app.get("/set/a/2")
    assert dict(counting.calls) == {"load": 1, "save": 1}
    assert "Set-Cookie" not in res.headers  # same id: no need to resend


def test_setting_the_same_value_again_writes_nothing(app: TestApp, counting: Any) -> None:
    app.get("/set/a/1")
    counting.reset()
    app.get("/set/a/1")
    assert dict(counting.calls) == {"load": 1}


def test_changed_forces_a_write(counting: CountingStore) -> None:
    def touch(request: Request) -> Any:
        request.session.changed()
        request.response.text = "ok"
        return request.response

    app = make_app(SessionFactory(SECRET, store=counting), extra_views=[("t", "/t", touch)])
    app.get("/set/a/1")
    counting.reset()
    app.get("/t")
    assert dict(counting.calls) == {"load": 1, "save": 1}


def test_empty_new_session_is_never_stored(app: TestApp, counting: Any) -> None:
    app.get("/get/a")
    app.get("/clear")
    assert counting.calls["save"] == 0
    assert session_cookie(app) is None


# -- bad cookies -----------------------------------------------------------------

BAD_COOKIES = {
    "tampered": lambda good: good[:-2] + ("AA" if not good.endswith("AA") else "BB"),
    "truncated": lambda good: good[: len(good) // 2],
    "no-signature": lambda good: good.split(".")[0],
    "oversized": lambda good: good + "A" * 5000,
    "wrong-secret": lambda good: Signer(["x" * 64]).sign(new_session_id()),
    "unknown-id": lambda good: Signer([SECRET]).sign(new_session_id()),
    "garbage": lambda good: "%%%not a cookie%%%",
    "empty": lambda good: "",
}


@pytest.mark.parametrize("case", sorted(BAD_COOKIES))
def test_bad_cookie_yields_fresh_session_never_500(
    case: str, app: TestApp, counting: Any, caplog: pytest.LogCaptureFixture
) -> None:
    app.get("/set/a/1")
    good = session_cookie(app)
    assert good
    bad = BAD_COOKIES[case](good)
    browser = TestApp(app.app)
    browser.set_cookie("session", bad)
    counting.reset()
    with caplog.at_level(logging.INFO, logger="pyramid_sessionstore.security"):
        res = browser.get("/dump")
    assert res.status_int == 200
    assert res.json["data"] == {} and res.json["new"] is True
    if case not in ("unknown-id", "empty"):
        assert counting.calls["load"] == 0  # a bad signature costs no store call
        assert any(r.name == "pyramid_sessionstore.security" for r in caplog.records)
    # The fresh session gets its own id, never the client's.
    browser.get("/set/b/2")
    assert session_cookie(browser) not in (bad, good)


def test_non_utf8_cookie_header_yields_fresh_session(app: TestApp) -> None:
    res = app.get("/dump", headers={"Cookie": "session=\xff\xfe\x80abc"})
    assert res.status_int == 200 and res.json["new"] is True


def test_client_chosen_id_is_not_adopted(app: TestApp) -> None:
    planted = Signer([SECRET]).sign(new_session_id())
    app.set_cookie("session", planted)
    app.get("/set/a/1")
    assert session_cookie(app) != planted


def test_corrupt_record_gives_fresh_session_and_is_deleted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    inner = MemoryStore()
    app = make_app(SessionFactory(SECRET, store=inner))
    app.get("/set/a/1")
    cookie = session_cookie(app)
    assert cookie
    key = store_key(cookie.split(".")[0])
    record = inner.load(key, 60)
    assert record is not None
    inner.save(key, b"\x00garbage", 60, record.version)
    with caplog.at_level(logging.WARNING, logger="pyramid_sessionstore.security"):
        assert app.get("/dump").json["data"] == {}
    assert inner.load(key, 60) is None
    assert "corrupt" in caplog.text


# -- secrets -----------------------------------------------------------------------


def test_secret_rotation_reads_old_cookie_and_resigns_with_newest() -> None:
    store = MemoryStore()
    old_app = make_app(SessionFactory(OLD, store=store))
    old_app.get("/set/a/1")
    old_cookie = session_cookie(old_app)
    new_app = make_app(SessionFactory(secrets=[NEW, OLD], store=store))
    new_app.set_cookie("session", old_cookie)
    res = new_app.get("/get/a")
    assert res.json == {"value": "1"}
    assert "Set-Cookie" in res.headers  # re-signed with the newest secret
    resigned = session_cookie(new_app)
    assert resigned != old_cookie
    assert Signer([NEW]).verify(resigned) is not None
    only_new = make_app(SessionFactory(NEW, store=store))
    only_new.set_cookie("session", resigned)
    assert only_new.get("/get/a").json == {"value": "1"}


def test_factory_needs_exactly_one_of_secret_or_secrets() -> None:
    with pytest.raises(ValueError):
        SessionFactory()
    with pytest.raises(ValueError):
        SessionFactory(OLD, secrets=[NEW])


# -- expiry ------------------------------------------------------------------------


def test_idle_timeout_is_enforced_by_the_store() -> None:
    clock = FakeClock(time.time())
    app = make_app(SessionFactory(SECRET, store=MemoryStore(clock=clock), timeout=60))
    app.get("/set/a/1")
    clock.now += 50
    assert app.get("/get/a").json == {"value": "1"}  # the read refreshed the expiry
    clock.now += 50
    assert app.get("/get/a").json == {"value": "1"}
    clock.now += 61
    assert app.get("/get/a").json == {"value": None}


def test_set_timeout_changes_the_store_expiry_and_the_cookie() -> None:
    clock = FakeClock(time.time())
    app = make_app(SessionFactory(SECRET, store=MemoryStore(clock=clock), timeout=60))
    app.get("/set_timeout/3600")
    assert session_cookie(app).count(".") == 2  # type: ignore[union-attr]
    clock.now += 1000
    assert app.get("/get/t").json == {"value": "3600"}


def test_max_lifetime_ends_an_active_session(monkeypatch: pytest.MonkeyPatch) -> None:
    app = make_app(SessionFactory(SECRET, store=MemoryStore(), max_lifetime=100))
    app.get("/set/a/1")
    real = time.time
    monkeypatch.setattr(time, "time", lambda: real() + 101)
    assert app.get("/get/a").json == {"value": None}


def test_max_age_cookie_is_reissued_after_reissue_time(monkeypatch: pytest.MonkeyPatch) -> None:
    app = make_app(SessionFactory(SECRET, store=MemoryStore(), max_age=3600, reissue_time=60))
    res = app.get("/set/a/1")
    assert "Max-Age=3600" in res.headers["Set-Cookie"]
    assert "Set-Cookie" not in app.get("/get/a").headers
    real = time.time
    monkeypatch.setattr(time, "time", lambda: real() + 61)
    assert "Max-Age=3600" in app.get("/get/a").headers["Set-Cookie"]


# -- errors ------------------------------------------------------------------------


class DownStore(MemoryStore):
    def load(self, key: str, ttl: int | None) -> Any:
        raise StoreUnavailableError("store is down")


def test_store_down_raises_by_default() -> None:
    app = make_app(SessionFactory(SECRET, store=MemoryStore()))
    app.get("/set/a/1")
    down = make_app(SessionFactory(SECRET, store=DownStore()))
    down.set_cookie("session", session_cookie(app))
    with pytest.raises(StoreUnavailableError):
        down.get("/get/a")


def test_store_down_with_fresh_policy_serves_reads_and_refuses_changes() -> None:
    app = make_app(SessionFactory(SECRET, store=MemoryStore()))
    app.get("/set/a/1")
    store = DownStore()
    down = make_app(SessionFactory(SECRET, store=store, on_store_error="fresh"))
    down.set_cookie("session", session_cookie(app))
    res = down.get("/get/a")
    assert res.json == {"value": None} and "Set-Cookie" not in res.headers
    # Any change, a logout included, raises where the view can handle it:
    # a 200 that dropped the change (or left the session alive) would lie.
    for path in ("/set/b/2", "/invalidate", "/regenerate", "/bind/u", "/set_timeout/9", "/csrf"):
        with pytest.raises(StoreUnavailableError):
            down.get(path)
    assert store.count() == 0


def test_set_on_exception_false_saves_nothing_when_view_raises(counting: Any) -> None:
    app = make_app(SessionFactory(SECRET, store=counting, set_on_exception=False))
    res = app.get("/boom", status=500)
    assert "Set-Cookie" not in res.headers
    assert counting.calls["save"] == 0


def test_unserializable_value_fails_at_setitem_naming_the_key() -> None:
    def bad(request: Request) -> Any:
        request.session["thing"] = {"inner": object()}
        return request.response

    app = make_app(SessionFactory(SECRET), extra_views=[("bad", "/bad", bad)])
    with pytest.raises(SerializationError, match="session\\['thing'\\]\\['inner'\\]"):
        app.get("/bad")


def test_cookie_attributes_follow_options() -> None:
    factory = SessionFactory(
        SECRET,
        cookie_name="sid",
        secure=True,
        domain="example.com",
        path="/app",
        samesite="Strict",
        max_age=100,
    )
    res = make_app(factory).get("/set/a/1", extra_environ={"HTTP_HOST": "example.com"})
    cookie = res.headers["Set-Cookie"]
    for part in (
        "sid=",
        "secure",
        "Domain=example.com",
        "Path=/app",
        "SameSite=Strict",
        "Max-Age=100",
        "HttpOnly",
    ):
        assert part.lower() in cookie.lower()


def test_session_survives_another_cookie_that_is_not_utf8(app: TestApp) -> None:
    app.get("/set/a/1")
    ours = session_cookie(app)
    browser = TestApp(app.app)
    res = browser.get("/get/a", headers={"Cookie": f'other="\\200"; session={ours}'})
    assert res.json == {"value": "1"}


def test_our_cookie_not_utf8_is_a_fresh_session(app: TestApp) -> None:
    res = TestApp(app.app).get("/dump", headers={"Cookie": 'session="\\200abc"'})
    assert res.status_int == 200 and res.json["new"] is True
