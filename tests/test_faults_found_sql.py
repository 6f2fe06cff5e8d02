"""Faults a reviewer found by attacking SQLStore's connection path (issue 14).

Every test here was a confirmed bug, reproduced against the real PostgreSQL
and MariaDB servers, and now checks its fix.
"""

from __future__ import annotations

import os
import signal
import threading
import time
import uuid
from typing import Any

import pytest
import sqlalchemy as sa

from pyramid_sessionstore.exceptions import StoreUnavailableError
from pyramid_sessionstore.stores.sql import SQLStore
from pyramid_sessionstore.testing import new_key
from sqlstores import load_in_threads
from sqlstores import server_url
from sqlstores import tables

SERVERS = ["postgresql", "mysql"]


def _store(request: pytest.FixtureRequest, server: str, **options: Any) -> SQLStore:
    factory = tables(server_url(server), **options)
    store = next(factory)(f"t{uuid.uuid4().hex[:12]}")
    request.addfinalizer(lambda: next(factory, None))
    return store


@pytest.mark.parametrize("server", SERVERS)
def test_a_forked_childs_threads_never_take_the_parents_pooled_connections(
    request: pytest.FixtureRequest, server: str
) -> None:
    """The first thread of a child replaces the pool; the others wait, never use the old one.

    The pool's replacement is slowed down in the child so that the other
    threads arrive while it runs (before, they saw the new pid published first
    and checked out the parent's pooled connections: two processes on one socket).
    """
    store = _store(request, server, pool_size=4, max_overflow=0, pool_pre_ping=True)
    key = new_key()
    store.save(key, b"x", 600, None)
    load_in_threads(store, key, 4, 20)
    pool: Any = store.engine.pool
    parents = {id(record.dbapi_connection) for record in list(pool._pool.queue)}
    assert parents  # pre-ping: every connection went back to the pool
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never return into pytest
        status = 1
        try:
            os.close(read)
            engine: Any = store.engine
            dispose = engine.dispose

            def slow_dispose(close: bool = True) -> None:
                time.sleep(0.05)
                dispose(close=close)

            engine.dispose = slow_dispose
            conns: Any = store._conns
            checkout = conns._checkout
            seen: list[int] = []

            def spy() -> Any:
                taken = checkout()
                seen.append(id(taken[0].dbapi_connection))
                return taken

            conns._checkout = spy
            start = threading.Barrier(8)
            problems: list[str] = []

            def load() -> None:
                start.wait()
                try:
                    if store.load(key, 600) is None:
                        problems.append("record not found")
                except Exception as err:  # noqa: BLE001 - reported to the parent
                    problems.append(f"{type(err).__name__}: {err}")

            workers = [threading.Thread(target=load) for _ in range(8)]
            for worker in workers:
                worker.start()
            for worker in workers:
                worker.join(20)
            shared = sum(1 for taken in seen if taken in parents)
            if shared:
                problems.append(f"{shared} of {len(seen)} check-outs were the parent's connections")
            os.write(write, "; ".join(problems).encode()[:4000])
            status = 0
        finally:
            os._exit(status)
    os.close(write)
    deadline = time.monotonic() + 60
    while os.waitpid(pid, os.WNOHANG) == (0, 0):
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            pytest.fail("the child hung")
        time.sleep(0.05)
    with os.fdopen(read, "rb") as pipe:
        assert pipe.read().decode() == ""
    assert store.load(key, 600) is not None  # the parent's connections still work


@pytest.mark.parametrize("server", SERVERS)
def test_operator_statements_do_not_wait_behind_the_stores_own_idle_connections(
    request: pytest.FixtureRequest, server: str
) -> None:
    """count/keys/delete_expired take a pool connection: the kept, idle ones go back first.

    Before, with every pool connection kept by the store after a burst, ``count()``
    waited the pool's 30 s timeout and failed.
    """
    store = _store(request, server, pool_size=2, max_overflow=0)
    key = new_key()
    store.save(key, b"x", 600, None)
    load_in_threads(store, key, 2, 30)
    answers: list[Any] = []
    operator = threading.Thread(
        target=lambda: answers.append((store.count(), list(store.keys()), store.delete_expired()))
    )
    started = time.monotonic()
    operator.start()
    operator.join(10)
    assert not operator.is_alive(), "an operator statement waited in the pool"
    assert answers == [(1, [key], 0)]
    assert time.monotonic() - started < 5
    assert store.load(key, 600) is not None  # and the request path goes on


@pytest.mark.parametrize("server", SERVERS)
def test_a_statement_error_keeps_the_drivers_error_as_its_cause(
    request: pytest.FixtureRequest, server: str
) -> None:
    """docs/stores/sql.md: the cause is SQLAlchemy's exception, ``.orig`` the driver's.

    Before, errors of a request's statements were raised ``from None``: the
    cause was lost for every load, save and delete (only DDL kept it).
    """
    store = _store(request, server)
    key = new_key()
    store.save(key, b"x", 600, None)
    store.table.drop(store.engine)  # the store is ready: the next statement fails
    for call in (lambda: store.load(key, 600), lambda: store.save(key, b"y", 600, None)):
        with pytest.raises(StoreUnavailableError) as info:
            call()
        assert isinstance(info.value.__cause__, sa.exc.DBAPIError)
        assert info.value.__cause__.orig is not None
