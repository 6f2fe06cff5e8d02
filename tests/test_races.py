"""Two requests of one session at once: different keys both survive, nothing resurrects.

Runs on every server-side store, since the merge rides on each store's
compare-and-set.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pyramid.request import Request
from webtest import TestApp

from apps import Gate
from apps import make_app
from apps import session_cookie
from pyramid_sessionstore import SessionFactory
from stores import SERVER_SIDE_KINDS
from stores import build
from stores import drop
from stores import params

SECRET = "tests-secret-" + "Xb7qL2vN" * 6


def _race(app: TestApp, paths: list[str], gate: Gate) -> list[Any]:
    """Run *paths* concurrently with the same cookie; views meet at *gate*."""
    cookie = session_cookie(app)
    results: list[Any] = [None] * len(paths)

    def run(i: int, path: str) -> None:
        browser = TestApp(app.app)
        browser.set_cookie("session", cookie)
        results[i] = browser.get(path)

    threads = [threading.Thread(target=run, args=(i, p)) for i, p in enumerate(paths)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    return results


@pytest.fixture(params=params(SERVER_SIDE_KINDS))
def racing_app(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[TestApp, Gate]]:
    kind = str(request.param)
    store = build(kind, tmp_path)
    gate = Gate(2)

    def set_after_gate(request: Request) -> Any:
        request.session.get("x")  # load first, then wait for the other request
        gate.wait()
        request.session[request.matchdict["key"]] = request.matchdict["value"]
        request.response.text = "ok"
        return request.response

    def invalidate_after_gate(request: Request) -> Any:
        request.session.get("x")
        gate.wait()
        request.session.invalidate()
        request.response.text = "ok"
        return request.response

    def regenerate_after_gate(request: Request) -> Any:
        request.session.get("x")
        gate.wait()
        request.session.regenerate_id()
        request.response.text = "ok"
        return request.response

    app = make_app(
        SessionFactory(SECRET, store=store),
        extra_views=[
            ("race_set", "/race/set/{key}/{value}", set_after_gate),
            ("race_inv", "/race/invalidate", invalidate_after_gate),
            ("race_regen", "/race/regenerate", regenerate_after_gate),
        ],
    )
    yield app, gate
    drop(kind, store)


def test_concurrent_requests_changing_different_keys_both_survive(
    racing_app: tuple[TestApp, Gate],
) -> None:
    app, gate = racing_app
    app.get("/set/base/0")
    _race(app, ["/race/set/a/1", "/race/set/b/2"], gate)
    assert app.get("/dump").json["data"] == {"base": "0", "a": "1", "b": "2"}


def test_concurrent_requests_on_same_key_last_writer_wins(
    racing_app: tuple[TestApp, Gate],
) -> None:
    app, gate = racing_app
    app.get("/set/base/0")
    _race(app, ["/race/set/k/1", "/race/set/k/2"], gate)
    assert app.get("/get/k").json["value"] in ("1", "2")


def test_invalidated_session_is_not_brought_back_by_concurrent_write(
    racing_app: tuple[TestApp, Gate],
) -> None:
    app, gate = racing_app
    app.get("/set/base/0")
    old = session_cookie(app)
    _race(app, ["/race/invalidate", "/race/set/a/1"], gate)
    replay = TestApp(app.app)
    replay.set_cookie("session", old)
    assert replay.get("/dump").json["data"] == {}


def test_regenerated_session_old_id_is_not_brought_back(
    racing_app: tuple[TestApp, Gate],
) -> None:
    app, gate = racing_app
    app.get("/set/base/0")
    old = session_cookie(app)
    _race(app, ["/race/regenerate", "/race/set/a/1"], gate)
    replay = TestApp(app.app)
    replay.set_cookie("session", old)
    assert replay.get("/dump").json["data"] == {}
