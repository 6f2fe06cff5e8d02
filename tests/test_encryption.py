"""Encryption at rest (``encrypt=True``) on every server store, against real servers.

What a dump of the store gives away: no session value, and nothing that
opens with the application's secrets but without the session's cookie.
Switching encryption on or off logs nobody out; a tampered, truncated or
swapped record is a fresh session, never a 500.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from webtest import TestApp

from apps import make_app
from apps import session_cookie
from pyramid_sessionstore import SessionFactory
from pyramid_sessionstore.cookies import new_session_id
from pyramid_sessionstore.cookies import store_key
from pyramid_sessionstore.payload import CorruptPayloadError
from pyramid_sessionstore.payload import decode
from pyramid_sessionstore.sealing import RecordSealer
from pyramid_sessionstore.sealing import is_sealed
from stores import SERVER_SIDE_KINDS
from stores import build
from stores import drop
from stores import params

pytest.importorskip("cryptography")

SECRET = "encryption-tests-" + "Nw6cY3fH" * 6
OLD_SECRET = "encryption-old-secret-" + "Gq2Vb8Ls" * 6
KNOWN = "known-value-7f3a9c"


@pytest.fixture(params=params(SERVER_SIDE_KINDS))
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def store(kind: str, tmp_path: Path) -> Iterator[Any]:
    store = build(kind, tmp_path)
    yield store
    drop(kind, store)


def raw_dump(kind: str, store: Any, tmp_path: Path) -> bytes:
    """Return every byte the engine holds for *store*, read around the store class."""
    if kind in ("file", "sqlite", "chain"):
        found = b"".join(p.read_bytes() for p in tmp_path.rglob("*") if p.is_file())
        if kind == "chain":
            found += b"".join(e.data for e in store.caches[0]._entries.values())
        return found
    if kind == "memory":
        return b"".join(e.data for e in store._entries.values())
    if kind == "redis":
        import redis

        client = redis.Redis.from_url(store.url)
        try:
            return b"".join(client.get(k) or b"" for k in client.scan_iter(f"{store.prefix}*"))
        finally:
            client.close()
    if kind in ("postgresql", "mariadb"):
        import sqlalchemy as sa

        with store.engine.connect() as conn:
            rows = conn.execute(sa.select(store.table)).all()
        return b"".join(bytes(r._mapping["data"]) for r in rows)
    raise AssertionError(kind)


def memcached_raw(store: Any, keys: list[str]) -> bytes:
    from pymemcache.client.base import Client

    from servers import MEMCACHED_SERVERS

    host, _, port = MEMCACHED_SERVERS.split()[0].partition(":")
    client = Client((host, int(port or 11211)))
    try:
        return b"".join(client.get(store.prefix + k) or b"" for k in keys)
    finally:
        client.close()


def dump_of(kind: str, store: Any, tmp_path: Path, keys: list[str]) -> bytes:
    if kind == "memcached":
        return memcached_raw(store, keys)
    return raw_dump(kind, store, tmp_path)


def key_of(app: TestApp) -> str:
    cookie = session_cookie(app)
    assert cookie
    return store_key(cookie.split(".")[0])


def test_a_store_dump_holds_no_session_value(kind: str, store: Any, tmp_path: Path) -> None:
    app = make_app(SessionFactory(SECRET, store=store, encrypt=True))
    app.get(f"/set/secret/{KNOWN}")
    app.get("/bind/someone@example.org")
    app.get(f"/set/more/{KNOWN}-2")
    dump = dump_of(kind, store, tmp_path, [key_of(app)])
    assert dump, "the raw read found nothing: the test would prove nothing"
    assert KNOWN.encode() not in dump and b"someone@example.org" not in dump
    clear = make_app(SessionFactory(SECRET, store=store))  # the same test, unencrypted,
    clear.get(f"/set/secret/{KNOWN}")  # shows that the raw read sees values
    assert KNOWN.encode() in dump_of(kind, store, tmp_path, [key_of(clear)])


def test_the_apps_secrets_without_the_id_open_nothing(store: Any) -> None:
    app = make_app(SessionFactory(SECRET, store=store, encrypt=True))
    app.get(f"/set/secret/{KNOWN}")
    record = store.load(key_of(app), 60)
    assert record is not None and is_sealed(record.data)
    with pytest.raises(CorruptPayloadError):
        decode(record.data)
    attacker = RecordSealer([SECRET, OLD_SECRET])  # every secret of the configuration
    for guess in (new_session_id(), key_of(app)[:43], ""):
        with pytest.raises(CorruptPayloadError):
            attacker.open(guess, record.data)
    cookie = session_cookie(app)
    assert cookie is not None
    header, data = attacker.open(cookie.split(".")[0], record.data)  # the cookie does
    assert KNOWN.encode() in data


@pytest.mark.parametrize("first", [False, True])
def test_switching_encryption_keeps_sessions(store: Any, first: bool) -> None:
    before = make_app(SessionFactory(SECRET, store=store, encrypt=first))
    before.get("/set/a/1")
    key = key_of(before)
    after = make_app(SessionFactory(SECRET, store=store, encrypt=not first))
    after.set_cookie("session", session_cookie(before))
    assert after.get("/get/a").json == {"value": "1"}
    after.get("/set/b/2")  # the next change writes the record the new way
    record = store.load(key, 60)
    assert record is not None and is_sealed(record.data) is (not first)
    assert after.get("/dump").json["data"] == {"a": "1", "b": "2"}


def test_rotating_the_secret_keeps_encrypted_sessions(store: Any) -> None:
    old = make_app(SessionFactory(SECRET, store=store, encrypt=True))
    old.get("/set/a/1")
    new = make_app(SessionFactory(secrets=[OLD_SECRET, SECRET], store=store, encrypt=True))
    new.set_cookie("session", session_cookie(old))
    assert new.get("/get/a").json == {"value": "1"}


def _flip(data: bytes) -> bytes:
    return data[:-5] + bytes([data[-5] ^ 1]) + data[-4:]


@pytest.mark.parametrize(
    "damage", ["flip-data", "flip-header", "truncate", "swap"], ids=lambda d: d
)
def test_a_tampered_record_is_a_fresh_session(store: Any, damage: str) -> None:
    app = make_app(SessionFactory(SECRET, store=store, encrypt=True))
    other = make_app(SessionFactory(SECRET, store=store, encrypt=True))
    app.get("/set/a/1")
    other.get("/set/b/2")
    key, other_key = key_of(app), key_of(other)
    record, theirs = store.load(key, 60), store.load(other_key, 60)
    assert record is not None and theirs is not None
    forged = {
        "flip-data": _flip(record.data),
        "flip-header": record.data[:6] + bytes([record.data[6] ^ 1]) + record.data[7:],
        "truncate": record.data[: len(record.data) // 2],
        "swap": theirs.data,
    }[damage]
    store.save(key, forged, 60, record.version)
    res = app.get("/dump")
    assert res.status_int == 200 and res.json["data"] == {}


def test_listing_and_logout_everywhere_work_without_ids(store: Any) -> None:
    from pyramid_sessionstore.users import index_keys

    factory = SessionFactory(SECRET, store=store, encrypt=True)
    app = make_app(factory)
    phone = TestApp(app.app)
    app.get("/bind/zoe")
    phone.get("/bind/zoe")
    assert TestApp(app.app).get("/everywhere/zoe").json == {"ended": 2}
    assert app.get("/dump").json["userid"] is None
    for key in index_keys(factory.policy, "zoe"):
        store.delete(key)


def test_encrypted_sqlite_file_holds_no_value(tmp_path: Path) -> None:
    from pyramid_sessionstore.stores import SQLiteStore

    path = tmp_path / "s.sqlite"
    store = SQLiteStore(path=str(path))
    app = make_app(SessionFactory(SECRET, store=store, encrypt=True))
    app.get(f"/set/secret/{KNOWN}")
    store.close()
    with sqlite3.connect(path) as db:
        rows = db.execute("SELECT * FROM sessions").fetchall()
    assert rows and KNOWN not in repr(rows)
