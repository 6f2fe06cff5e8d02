"""The session behaviours a Pyramid user relies on, on every store, through real apps."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from webtest import TestApp

from apps import make_app
from apps import session_cookie
from pyramid_sessionstore import SessionFactory
from stores import SERVER_SIDE_KINDS
from stores import STORE_KINDS
from stores import build
from stores import drop
from stores import params

SECRET = "tests-secret-" + "Xb7qL2vN" * 6


@pytest.fixture(params=params(STORE_KINDS))
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def store(kind: str, tmp_path: Path) -> Iterator[Any]:
    store = build(kind, tmp_path)
    yield store
    drop(kind, store)


@pytest.fixture
def app(store: Any) -> TestApp:
    return make_app(SessionFactory(SECRET, store=store))


def dump(app: TestApp) -> dict[str, Any]:
    result: dict[str, Any] = app.get("/dump").json
    return result


def test_view_without_session_sets_no_cookie_and_no_vary(app: TestApp) -> None:
    res = app.get("/nosession")
    assert "Set-Cookie" not in res.headers
    assert "Cookie" not in (res.headers.get("Vary") or "")


def test_new_empty_session_sets_no_cookie_but_varies(app: TestApp) -> None:
    res = app.get("/get/x")
    assert res.json == {"value": None}
    assert "Set-Cookie" not in res.headers
    assert "Cookie" in res.headers["Vary"]


def test_set_value_is_read_back_in_next_request(app: TestApp) -> None:
    res = app.get("/set/color/blue")
    cookie = res.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie
    assert app.get("/get/color").json == {"value": "blue"}
    data = dump(app)
    assert data["new"] is False and data["data"] == {"color": "blue"}


def test_fred_example_from_pyramid_docs(app: TestApp) -> None:
    assert app.get("/fred").text == "Fred was not in the session"
    assert app.get("/fred").text == "Fred was in the session"


def test_counter_counts(app: TestApp) -> None:
    for n in range(1, 6):
        assert app.get("/incr").json == {"n": n}


def test_nested_list_mutated_in_place_is_saved(app: TestApp) -> None:
    app.get("/append/items/a")
    app.get("/append/items/b")
    assert app.get("/get/items").json == {"value": ["a", "b"]}


def test_flash_shown_once_after_redirect(app: TestApp) -> None:
    res = app.get("/flash/hello").follow()
    assert res.json == ["hello"]
    assert app.get("/pop_flash").json == []


def test_flash_queues_and_peek(app: TestApp) -> None:
    app.get("/flash/one", params={"queue": "q"})
    app.get("/flash/two", params={"queue": "q"})
    assert app.get("/peek_flash", params={"queue": "q"}).json == ["one", "two"]
    assert app.get("/peek_flash").json == []
    assert app.get("/pop_flash", params={"queue": "q"}).json == ["one", "two"]
    assert app.get("/peek_flash", params={"queue": "q"}).json == []


def test_delete_last_key_deletes_session_and_expires_cookie(app: TestApp) -> None:
    app.get("/set/a/1")
    res = app.get("/delete/a")
    assert "Max-Age=0" in res.headers["Set-Cookie"]
    assert session_cookie(app) in (None, "")
    assert dump(app)["new"] is True


def test_invalidate_expires_cookie_and_forgets_data(app: TestApp) -> None:
    app.get("/set/a/1")
    res = app.get("/invalidate")
    assert "Max-Age=0" in res.headers["Set-Cookie"]
    assert dump(app)["data"] == {}


@pytest.mark.parametrize("kind", params(SERVER_SIDE_KINDS), indirect=True)
def test_replayed_cookie_after_invalidate_is_a_fresh_session(app: TestApp) -> None:
    # A cookie-store cookie stays valid until it expires: no server state to
    # delete. Server stores delete the record, so the old cookie is worthless.
    app.get("/set/a/1")
    old = session_cookie(app)
    app.get("/invalidate")
    replay = TestApp(app.app)
    replay.set_cookie("session", old)
    assert dump(replay)["data"] == {}


def test_values_set_after_invalidate_start_a_new_session(app: TestApp) -> None:
    app.get("/set/a/1")
    app.get("/invalidate", params={"then": "logged out"})
    assert dump(app)["data"] == {"after": "logged out"}


def test_session_created_is_an_int_timestamp_kept_across_requests(app: TestApp) -> None:
    app.get("/set/a/1")
    first = dump(app)["created"]
    assert isinstance(first, int)
    app.get("/set/b/2")
    assert dump(app)["created"] == first


def test_set_timeout_persists_with_session(app: TestApp) -> None:
    app.get("/set_timeout/86400")
    assert app.get("/get/t").json == {"value": "86400"}
    app.get("/set_timeout/default")
    assert app.get("/get/t").json == {"value": "default"}


def test_view_error_with_exception_view_still_saves_by_default(app: TestApp) -> None:
    res = app.get("/boom", status=500)
    assert res.text == "handled: view failed"
    assert app.get("/get/before_error").json == {"value": "yes"}


@pytest.mark.parametrize("kind", params(SERVER_SIDE_KINDS), indirect=True)
def test_regenerate_id_keeps_data_under_new_id(app: TestApp) -> None:
    app.get("/set/a/1")
    old = session_cookie(app)
    app.get("/regenerate", params={"before": "b", "after": "c"})
    new = session_cookie(app)
    assert new and new != old
    assert dump(app)["data"] == {"a": "1", "before": "b", "after": "c"}
    replay = TestApp(app.app)
    replay.set_cookie("session", old)
    assert dump(replay)["data"] == {}


@pytest.mark.parametrize("kind", params(SERVER_SIDE_KINDS), indirect=True)
def test_regenerate_after_invalidate_gives_fresh_session(app: TestApp) -> None:
    app.get("/set/a/1")
    app.get("/invalidate", params={"then": "x"})
    between = session_cookie(app)
    app.get("/regenerate", params={"after": "y"})
    assert dump(app)["data"] == {"after": "y"}
    replay = TestApp(app.app)
    replay.set_cookie("session", between)
    assert dump(replay)["data"] == {}


@pytest.mark.parametrize("kind", params(SERVER_SIDE_KINDS), indirect=True)
def test_bind_user_then_logout_everywhere_ends_all_their_sessions(app: TestApp) -> None:
    laptop, phone, other = app, TestApp(app.app), TestApp(app.app)
    laptop.get("/bind/alice")
    phone.get("/bind/alice")
    other.get("/bind/bob")
    res = phone.get("/everywhere/alice")
    assert res.json == {"ended": 2}
    assert dump(laptop)["data"] == {}
    assert dump(phone)["data"] == {}
    assert dump(other)["data"] == {"user": "bob"}


@pytest.mark.parametrize("kind", params(SERVER_SIDE_KINDS), indirect=True)
def test_logout_everywhere_except_current(app: TestApp) -> None:
    laptop, phone = app, TestApp(app.app)
    laptop.get("/bind/alice")
    phone.get("/bind/alice")
    assert phone.get("/everywhere/alice", params={"keep": "1"}).json == {"ended": 1}
    assert dump(phone)["data"] == {"user": "alice"}
    assert dump(laptop)["data"] == {}


@pytest.mark.parametrize("kind", params(SERVER_SIDE_KINDS), indirect=True)
def test_binding_another_user_regenerates_id(app: TestApp) -> None:
    app.get("/bind/alice")
    first = session_cookie(app)
    app.get("/bind/alice")
    assert session_cookie(app) == first
    app.get("/bind/bob")
    assert session_cookie(app) != first
    assert dump(app)["userid"] == "bob"


def test_typed_values_round_trip(store: Any) -> None:
    import datetime
    import uuid
    from decimal import Decimal

    from pyramid.request import Request

    value = {
        "tuple": (1, "a"),
        "bytes": b"\x00\xff",
        "set": {1, 2},
        "when": datetime.datetime(2024, 5, 6, 7, 8, 9, tzinfo=datetime.timezone.utc),
        "day": datetime.date(2024, 5, 6),
        "money": Decimal("10.50"),
        "id": uuid.UUID(int=7),
        "nested": {"list": [1, 2.5, None, True]},
    }
    seen: dict[str, Any] = {}

    def put(request: Request) -> Any:
        request.session.update(value)
        request.response.text = "ok"
        return request.response

    def take(request: Request) -> Any:
        seen.update(request.session.items())
        request.response.text = "ok"
        return request.response

    app = make_app(
        SessionFactory(SECRET, store=store),
        extra_views=[("put", "/put", put), ("take", "/take", take)],
    )
    app.get("/put")
    app.get("/take")
    assert seen == value
    assert {k: type(v) for k, v in seen.items()} == {k: type(v) for k, v in value.items()}


def test_json_body_of_dump_is_json(app: TestApp) -> None:
    app.get("/set/a/1")
    assert json.loads(app.get("/dump").text)["data"] == {"a": "1"}
