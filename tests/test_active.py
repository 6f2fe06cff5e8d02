"""Active sessions: list a user's devices, end one, end the others, cap them; every server store."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pyramid.request import Request
from pyramid.response import Response
from webtest import TestApp

from apps import make_app
from pyramid_sessionstore import ConfigurationError
from pyramid_sessionstore import SessionFactory
from pyramid_sessionstore import end_session
from pyramid_sessionstore import invalidate_user_sessions
from pyramid_sessionstore import list_user_sessions
from pyramid_sessionstore.users import index_keys
from stores import SERVER_SIDE_KINDS
from stores import build
from stores import drop
from stores import params

SECRET = "active-sessions-tests-" + "Ue8rW2kP" * 6


def _json(request: Request, body: Any) -> Response:
    request.response.content_type = "application/json"
    request.response.json_body = body
    return request.response


def _views() -> list[tuple[str, str, Any]]:
    def listing(request: Request) -> Response:
        infos = list_user_sessions(request, request.matchdict["user"])
        return _json(
            request,
            [
                {
                    "handle": i.handle,
                    "created": i.created,
                    "last_active": i.last_active,
                    "user_agent": i.user_agent,
                    "ip": i.ip,
                    "current": i.current,
                }
                for i in infos
            ],
        )

    def ending(request: Request) -> Response:
        ended = end_session(request, request.matchdict["user"], request.matchdict["handle"])
        return _json(request, {"ended": ended})

    def others(request: Request) -> Response:
        user = request.matchdict["user"]
        ended = invalidate_user_sessions(request, user, except_current=True)
        return _json(request, {"ended": ended})

    return [
        ("list", "/sessions/{user}", listing),
        ("end", "/sessions/{user}/end/{handle}", ending),
        ("others", "/sessions/{user}/others", others),
    ]


@pytest.fixture(params=params(SERVER_SIDE_KINDS))
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    kind = str(request.param)
    store = build(kind, tmp_path)
    yield store
    policy = SessionFactory(SECRET, store=store).policy
    for user in ("ann", "bob"):
        for key in index_keys(policy, user):
            store.delete(key)
    drop(kind, store)


def browser(app: TestApp, agent: str, ip: str) -> TestApp:
    return TestApp(app.app, extra_environ={"HTTP_USER_AGENT": agent, "REMOTE_ADDR": ip})


def make(store: Any, **options: Any) -> TestApp:
    factory = SessionFactory(SECRET, store=store, record_client=("user_agent", "ip"), **options)
    return make_app(factory, extra_views=_views())


def test_user_lists_each_device_most_recent_first(store: Any) -> None:
    app = make(store)
    laptop, phone = browser(app, "Laptop/1.0", "10.0.0.1"), browser(app, "Phone/2.0", "10.0.0.2")
    laptop.get("/bind/ann")
    time.sleep(1.1)
    phone.get("/bind/ann")
    listed = phone.get("/sessions/ann").json
    assert [(s["user_agent"], s["ip"], s["current"]) for s in listed] == [
        ("Phone/2.0", "10.0.0.2", True),
        ("Laptop/1.0", "10.0.0.1", False),
    ]
    assert listed[0]["last_active"] >= listed[1]["last_active"]
    assert all(s["created"] <= s["last_active"] + 1 for s in listed)


def test_ending_another_device_logs_it_out(store: Any) -> None:
    app = make(store)
    laptop, phone = browser(app, "Laptop", "10.0.0.1"), browser(app, "Phone", "10.0.0.2")
    laptop.get("/bind/ann")
    phone.get("/bind/ann")
    other = next(s for s in phone.get("/sessions/ann").json if not s["current"])
    assert phone.get(f"/sessions/ann/end/{other['handle']}").json == {"ended": True}
    assert laptop.get("/dump").json["userid"] is None
    assert [s["user_agent"] for s in phone.get("/sessions/ann").json] == ["Phone"]
    # Ending it again, or a made-up handle, changes nothing.
    assert phone.get(f"/sessions/ann/end/{other['handle']}").json == {"ended": False}
    assert phone.get("/sessions/ann/end/AAAAAAAAAAAAAAAAAAAAAA").json == {"ended": False}


def test_ending_the_current_session_invalidates_it(store: Any) -> None:
    app = make(store)
    laptop = browser(app, "Laptop", "10.0.0.1")
    laptop.get("/bind/ann")
    mine = laptop.get("/sessions/ann").json[0]
    res = laptop.get(f"/sessions/ann/end/{mine['handle']}")
    assert res.json == {"ended": True} and "Max-Age=0" in res.headers["Set-Cookie"]
    assert laptop.get("/dump").json["userid"] is None


def test_a_handle_is_meaningless_for_another_user(store: Any) -> None:
    app = make(store)
    ann, bob = browser(app, "A", "10.0.0.1"), browser(app, "B", "10.0.0.2")
    ann.get("/bind/ann")
    bob.get("/bind/bob")
    anns = ann.get("/sessions/ann").json[0]["handle"]
    assert bob.get(f"/sessions/bob/end/{anns}").json == {"ended": False}
    assert ann.get("/dump").json["userid"] == "ann"
    assert anns not in ann.cookies.get("session", "")


def test_ending_all_others_keeps_this_one(store: Any) -> None:
    app = make(store)
    devices = [browser(app, f"D{n}", f"10.0.0.{n}") for n in range(3)]
    for device in devices:
        device.get("/bind/ann")
    assert devices[0].get("/sessions/ann/others").json == {"ended": 2}
    assert [s["current"] for s in devices[0].get("/sessions/ann").json] == [True]


def test_ended_sessions_drop_out_of_the_listing(store: Any) -> None:
    app = make(store)
    laptop, phone = browser(app, "Laptop", "10.0.0.1"), browser(app, "Phone", "10.0.0.2")
    laptop.get("/bind/ann")
    phone.get("/bind/ann")
    laptop.get("/invalidate")
    assert [s["user_agent"] for s in phone.get("/sessions/ann").json] == ["Phone"]


def test_cap_ends_the_least_recently_active_other_sessions(store: Any) -> None:
    app = make(store, max_sessions_per_user=2)
    first, second, third = (browser(app, f"D{n}", f"10.0.0.{n}") for n in range(3))
    first.get("/bind/ann")
    time.sleep(1.1)
    second.get("/bind/ann")
    time.sleep(1.1)
    first.get("/set/still/here")  # the first is now more recently active than the second
    time.sleep(1.1)
    third.get("/bind/ann")
    assert first.get("/dump").json["userid"] == "ann"
    assert second.get("/dump").json["userid"] is None
    assert sorted(s["user_agent"] for s in third.get("/sessions/ann").json) == ["D0", "D2"]


def test_client_data_is_not_recorded_unless_asked(store: Any) -> None:
    app = make_app(SessionFactory(SECRET, store=store, record_client=()), extra_views=_views())
    device = browser(app, "Secret/1.0", "10.9.9.9")
    device.get("/bind/ann")
    assert device.get("/sessions/ann").json[0]["user_agent"] is None
    assert device.get("/sessions/ann").json[0]["ip"] is None


def test_cookie_store_refuses_listing_and_ending() -> None:
    from pyramid_sessionstore.stores import CookieStore

    app = make_app(
        SessionFactory(SECRET, store=CookieStore(secret="cookie-" + SECRET)), extra_views=_views()
    )
    with pytest.raises(ConfigurationError):
        app.get("/sessions/ann")
    with pytest.raises(ConfigurationError):
        app.get("/sessions/ann/end/x")


def test_last_active_is_not_now_when_the_lifetime_caps_the_expiry() -> None:
    """In a session's last idle-timeout of life the expiry is the lifetime's end,
    which says nothing about when it was last active."""
    from pyramid_sessionstore.stores import MemoryStore

    store = MemoryStore()
    app = make(store, timeout=600, max_lifetime=100)
    laptop = browser(app, "Laptop", "10.0.0.1")
    laptop.get("/bind/ann")
    time.sleep(2.1)
    listed = browser(app, "Phone", "10.0.0.2")
    listed.get("/bind/ann")
    old = next(s for s in listed.get("/sessions/ann").json if not s["current"])
    assert time.time() - old["last_active"] >= 2
