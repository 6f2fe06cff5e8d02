"""Redis commands per request, counted by a private server, through a real Pyramid app.

Also: the server stopped in the middle of a run gives StoreUnavailableError
(or an empty unsaved session under ``on_store_error = fresh``), and the same
app recovers with no session corrupted when the server is back.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from webtest import TestApp

from apps import make_app
from pyramid_sessionstore import SessionFactory
from pyramid_sessionstore import StoreUnavailableError
from pyramid_sessionstore.stores import RedisStore
from redis_procs import RedisProcess

pytestmark = pytest.mark.redis

SECRET = "tests-secret-" + "Xb7qL2vN" * 6


# Sent once per new connection by redis-py, or by this test to read the counts.
NOT_PER_REQUEST = {"info", "hello", "client|setinfo", "select", "auth", "ping"}


def commands(server: RedisProcess) -> dict[str, int]:
    """Return the server's command counts, leaving out connection set-up."""
    with server.client() as client:
        stats: dict[str, Any] = client.info("commandstats")
    counts = {name.removeprefix("cmdstat_"): int(value["calls"]) for name, value in stats.items()}
    return {name: n for name, n in counts.items() if name not in NOT_PER_REQUEST}


class Counter:
    def __init__(self, server: RedisProcess) -> None:
        self.server = server
        self.before = commands(server)

    def delta(self) -> dict[str, int]:
        after = commands(self.server)
        self.before, before = after, self.before
        return {k: v - before.get(k, 0) for k, v in after.items() if v != before.get(k, 0)}


@pytest.fixture
def server(private_redis: RedisProcess) -> RedisProcess:
    return private_redis


@pytest.fixture
def app(server: RedisProcess) -> Iterator[TestApp]:
    store = RedisStore(url=server.url)
    yield make_app(SessionFactory(SECRET, store=store))
    store.close()


def test_redis_round_trips_per_request(app: TestApp, server: RedisProcess) -> None:
    warm = TestApp(app.app)  # loads the compare-and-set script once, as any app does
    warm.get("/set/w/1")
    warm.get("/set/w/2")
    count = Counter(server)
    app.get("/nosession")
    assert count.delta() == {}
    app.get("/get/a")  # a new, empty session: nothing stored, nothing asked
    assert count.delta() == {}
    app.get("/set/a/1")  # first write: one SET NX EX
    assert count.delta() == {"set": 1}
    app.get("/get/a")  # read-only: one GETEX, no write
    assert count.delta() == {"getex": 1}
    app.get("/set/a/2")  # changed: GETEX + one EVALSHA compare-and-set
    # INFO also counts the GETRANGE and SET the script runs inside the server,
    # in that same round trip.
    assert count.delta() == {"getex": 1, "evalsha": 1, "getrange": 1, "set": 1}
    # Emptied: GETEX, the compare-and-set of a tombstone (so a key another
    # request set meanwhile is merged in, not lost), then DEL.
    app.get("/delete/a")
    assert count.delta() == {"getex": 1, "evalsha": 1, "getrange": 1, "set": 1, "del": 1}


def test_server_stopped_mid_run_then_back(server: RedisProcess) -> None:
    strict_store = RedisStore(url=server.url, socket_timeout=1, socket_connect_timeout=1)
    lenient_store = RedisStore(url=server.url, socket_timeout=1, socket_connect_timeout=1)
    strict = make_app(SessionFactory(SECRET, store=strict_store))
    lenient = make_app(
        SessionFactory(SECRET, store=lenient_store, on_store_error="fresh"),
    )
    for n in range(1, 4):
        assert strict.get("/incr").json == {"n": n}
    lenient.set_cookie("session", strict.cookies["session"])
    server.stop()
    with pytest.raises(StoreUnavailableError):
        strict.get("/incr")
    res = lenient.get("/dump")
    assert res.status_int == 200 and res.json["data"] == {}
    assert "Set-Cookie" not in res.headers
    server.start()  # same port, empty: the server keeps nothing on disk
    # The old session is gone with the server's memory: a fresh one, no error.
    assert strict.get("/incr").json == {"n": 1}
    assert strict.get("/incr").json == {"n": 2}
    strict_store.close()
    lenient_store.close()
