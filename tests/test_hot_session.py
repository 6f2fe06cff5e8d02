"""Many requests of one session writing at once: nothing lost, nothing but 200.

A browser opens six connections per host, and a page that fires six XHRs at
once is ordinary; 32 is a stress. Each request sets a key of its own, so
every key must survive (the merge keeps different keys), and no request may
fail: writers in one process take turns, writers in other processes merge
and back off inside the conflict budget.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from webtest import TestApp

from apps import make_app
from apps import session_cookie
from pyramid_sessionstore import SessionFactory
from stores import SERVER_SIDE_KINDS
from stores import build
from stores import drop
from stores import params

SECRET = "hot-session-tests-" + "q7Zp2Lx9" * 6
REQUESTS_PER_THREAD = 10


@pytest.fixture(params=params(SERVER_SIDE_KINDS))
def app(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[TestApp]:
    kind = str(request.param)
    store = build(kind, tmp_path)
    yield make_app(SessionFactory(SECRET, store=store))
    drop(kind, store)


def hammer(app: TestApp, threads: int) -> tuple[list[str], list[Any]]:
    """Run *threads* browsers sharing one cookie, each setting its own keys."""
    app.get("/set/base/0")
    cookie = session_cookie(app)
    failures: list[Any] = []
    keys: list[str] = []
    start = threading.Barrier(threads, timeout=30)

    def browse(t: int) -> None:
        browser = TestApp(app.app)
        browser.set_cookie("session", cookie)
        start.wait()
        for n in range(REQUESTS_PER_THREAD):
            key = f"k{t}_{n}"
            try:
                res = browser.get(f"/set/{key}/{n}", expect_errors=True)
            except Exception as err:  # noqa: BLE001 - collected and reported below
                failures.append(err)
                continue
            if res.status_int != 200:
                failures.append((key, res.status))

    workers = [threading.Thread(target=browse, args=(t,)) for t in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(120)
    assert not any(w.is_alive() for w in workers), "a writer hung"
    keys = [f"k{t}_{n}" for t in range(threads) for n in range(REQUESTS_PER_THREAD)]
    return keys, failures


@pytest.mark.parametrize("threads", [6, 32])
def test_parallel_writers_of_one_session_lose_nothing(app: TestApp, threads: int) -> None:
    keys, failures = hammer(app, threads)
    assert failures == []
    data = app.get("/dump").json["data"]
    lost = [key for key in keys if key not in data]
    assert lost == [] and data["base"] == "0"


def test_parallel_counters_keep_every_other_key(app: TestApp) -> None:
    """The same key is last-writer-wins; the other keys of each request survive."""
    app.get("/set/base/0")
    cookie = session_cookie(app)
    errors: list[Any] = []

    def browse(t: int) -> None:
        browser = TestApp(app.app)
        browser.set_cookie("session", cookie)
        for n in range(5):
            try:
                browser.get("/incr")
                browser.get(f"/set/c{t}_{n}/x")
            except Exception as err:  # noqa: BLE001 - collected and reported below
                errors.append(err)

    workers = [threading.Thread(target=browse, args=(t,)) for t in range(6)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(120)
    assert errors == []
    data = app.get("/dump").json["data"]
    assert all(f"c{t}_{n}" in data for t in range(6) for n in range(5))
    assert 1 <= data["n"] <= 30


@pytest.mark.redis
@pytest.mark.parametrize("threads", [6, 32])
def test_parallel_writers_on_redis_cluster_lose_nothing(redis_cluster: str, threads: int) -> None:
    from pyramid_sessionstore.stores import RedisStore

    store = RedisStore(url=redis_cluster, cluster=True, prefix=f"hot{threads}:")
    try:
        app = make_app(SessionFactory(SECRET, store=store))
        keys, failures = hammer(app, threads)
        assert failures == []
        data = app.get("/dump").json["data"]
        assert [key for key in keys if key not in data] == []
    finally:
        store.close()
