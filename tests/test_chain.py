"""ChainStore: settings, read-through and back-fill, races with caches, migration."""

from __future__ import annotations

import importlib.util
import logging
import sys
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from webtest import TestApp

from apps import make_wsgi_app
from clocks import FakeClock
from pyramid_sessionstore import SessionFactory
from pyramid_sessionstore.exceptions import ConfigurationError
from pyramid_sessionstore.exceptions import ConflictError
from pyramid_sessionstore.stores import ChainStore
from pyramid_sessionstore.stores import MemoryStore
from pyramid_sessionstore.stores import Record
from pyramid_sessionstore.stores import Store
from pyramid_sessionstore.stores import SupportsExpiry
from pyramid_sessionstore.stores import SupportsScan
from pyramid_sessionstore.stores.base import evicts_live_records
from pyramid_sessionstore.stores.registry import build_store
from pyramid_sessionstore.stores.registry import keyword_parameters
from pyramid_sessionstore.testing import new_key


class Plain:
    """A real store with only the five protocol methods (no expiry, no scan)."""

    def __init__(self) -> None:
        self.inner = MemoryStore()
        self.closed = 0

    def load(self, key: str, ttl: int | None) -> Record | None:
        return self.inner.load(key, ttl)

    def save(self, key: str, data: bytes, ttl: int | None, expected_version: str | None) -> str:
        return self.inner.save(key, data, ttl, expected_version)

    def touch(self, key: str, ttl: int | None) -> bool:
        return self.inner.touch(key, ttl)

    def delete(self, key: str) -> None:
        self.inner.delete(key)

    def close(self) -> None:
        self.closed += 1


class Pause:
    """Wrap a real store; the first call of *method* from another thread stops after
    running, until ``release`` is set, so a test can interleave requests exactly."""

    def __init__(self, inner: Any, method: str) -> None:
        self.inner, self.method = inner, method
        self.paused, self.release = threading.Event(), threading.Event()
        self._armed = True

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.inner, name)
        if name != self.method:
            return attr

        def call(*args: Any) -> Any:
            result = attr(*args)
            if self._armed and threading.current_thread() is not threading.main_thread():
                self._armed = False
                self.paused.set()
                assert self.release.wait(10)
            return result

        return call


def raw(store: Store, key: str, ttl: int = 100) -> bytes | None:
    """Return the bytes *store* holds under *key* (refreshing its expiry to *ttl*)."""
    record = store.load(key, ttl)
    return None if record is None else record.data


# -- construction and settings ---------------------------------------------------


def test_options_table_matches_keyword_arguments() -> None:
    assert set(ChainStore.OPTIONS) | ChainStore.CODE_ONLY == keyword_parameters(ChainStore)


def test_from_settings_round_trips_every_option() -> None:
    store = build_store(
        "chain",
        {
            "session.store": "chain",
            "session.chain.stores": "memory memory",
            "session.chain.migrate_from": "memory",
            "session.chain.revalidate_after": "7",
            "session.memory.max_entries": "10",
        },
    )
    assert isinstance(store, ChainStore)
    assert [type(s) for s in (*store.caches, store.record)] == [MemoryStore, MemoryStore]
    assert isinstance(store.migrate_from, MemoryStore)
    assert store.caches[0] is not store.record  # one name, two stores
    assert store.record.max_entries == 10  # type: ignore[attr-defined]
    assert store.revalidate_after == 7
    assert repr(store).startswith("ChainStore(stores=[MemoryStore(max_entries=10), ")


def test_from_settings_stores_one_per_line() -> None:
    store = build_store("chain", {"session.chain.stores": "\n memory\n memory\n"})
    assert isinstance(store, ChainStore) and store.migrate_from is None


@pytest.mark.parametrize(
    ("settings", "setting", "words"),
    [
        ({}, "session.chain.stores", "name the stores"),
        ({"session.chain.stores": ""}, "session.chain.stores", "name the stores"),
        ({"session.chain.stores": "memory"}, "session.chain.stores", "two or more"),
        ({"session.chain.stores": "memory chain"}, "session.chain.stores", "contain itself"),
        ({"session.chain.stores": "file file"}, "session.chain.stores", "named twice"),
        (
            {"session.chain.stores": "sqlite", "session.chain.migrate_from": "sqlite"},
            "session.chain.stores",
            "named twice",
        ),
        ({"session.chain.stores": "memory redsi"}, "session.chain.stores", "'redis'"),
        ({"session.chain.stores": "memory memory", "session.chain.stroes": "x"}, None, "mean"),
        (
            {"session.chain.stores": "memory memory", "session.chain.revalidate_after": "0"},
            "session.chain.revalidate_after",
            ">= 1",
        ),
        (
            {"session.chain.stores": "memory memory", "session.chain.revalidate_after": "soon"},
            "session.chain.revalidate_after",
            "soon",
        ),
        (
            {"session.chain.stores": "memory memory", "session.memory.max_entries": "many"},
            "session.memory.max_entries",
            "many",
        ),
    ],
)
def test_bad_settings_raise_configuration_error_naming_the_setting(
    settings: dict[str, str], setting: str | None, words: str
) -> None:
    with pytest.raises(ConfigurationError) as info:
        build_store("chain", {"session.store": "chain", **settings})
    assert info.value.setting == (setting or "session.chain.stroes")
    assert str(info.value).startswith(info.value.setting + ":")
    assert words in str(info.value)


def test_a_chain_inside_a_chain_is_refused_clearly_by_the_registry_too() -> None:
    # A dotted name escapes the by-name check; build_store's cycle check still stops it.
    dotted = "pyramid_sessionstore.stores.chain:ChainStore"
    settings = {
        "session.chain.stores": f"memory {dotted}",
        "session.store.stores": f"memory {dotted}",
    }
    with pytest.raises(ConfigurationError, match="refer to each other"):
        build_store("chain", settings)


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"stores": []}, "two stores"),
        ({"stores": [MemoryStore()]}, "two stores"),
        ({"stores": [MemoryStore()], "revalidate_after": 0}, "two stores"),
        ({"stores": [MemoryStore(), MemoryStore()], "revalidate_after": 0}, "at least 1"),
        ({"stores": [MemoryStore(), object()]}, "not a server-side store"),
    ],
)
def test_bad_arguments_raise_value_error(kwargs: dict[str, Any], words: str) -> None:
    with pytest.raises(ValueError, match=words):
        ChainStore(**kwargs)


def test_same_store_object_twice_is_refused() -> None:
    memory = MemoryStore()
    with pytest.raises(ValueError, match="twice"):
        ChainStore(stores=[memory, memory])
    with pytest.raises(ValueError, match="twice"):
        ChainStore(stores=[MemoryStore(), memory], migrate_from=memory)


def test_capabilities_follow_the_stores_that_hold_records() -> None:
    both = ChainStore(stores=[Plain(), MemoryStore()])
    assert isinstance(both, SupportsExpiry) and isinstance(both, SupportsScan)
    neither = ChainStore(stores=[MemoryStore(), Plain()])
    assert not isinstance(neither, SupportsExpiry) and not isinstance(neither, SupportsScan)
    assert not hasattr(neither, "keys") and not hasattr(neither, "delete_expired")
    # Migrating: collect if either needs it, list only if both can.
    migrating = ChainStore(stores=[Plain()], migrate_from=MemoryStore())
    assert isinstance(migrating, SupportsExpiry) and not isinstance(migrating, SupportsScan)
    for chain in (both, neither, migrating):
        assert isinstance(chain, ChainStore) and isinstance(chain, Store)


def test_close_closes_every_store_even_when_one_fails() -> None:
    first, last, old = Plain(), Plain(), Plain()

    def fail() -> None:
        raise OSError("disk gone")

    last.close = fail  # type: ignore[method-assign]
    chain = ChainStore(stores=[first, last], migrate_from=old)
    with pytest.raises(OSError, match="disk gone"):
        chain.close()
    assert (first.closed, old.closed) == (1, 1)


# -- read-through, back-fill, write-through ------------------------------------------


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(1_000_000.0)


@pytest.fixture
def layers(clock: FakeClock) -> list[MemoryStore]:
    return [MemoryStore(clock=clock) for _ in range(3)]


@pytest.fixture
def chain(layers: list[MemoryStore], clock: FakeClock) -> ChainStore:
    return ChainStore(stores=layers, revalidate_after=30, clock=clock)


def test_hit_in_the_store_of_record_is_back_filled_into_every_cache(
    chain: ChainStore, layers: list[MemoryStore], clock: FakeClock
) -> None:
    first, second, record = layers
    k = new_key()
    version = record.save(k, b"data", 100, None)
    assert chain.load(k, 100) == (b"data", version)
    assert raw(first, k) is not None and raw(first, k) == raw(second, k)
    record.delete(k)  # what follows is served from the caches alone
    assert chain.load(k, 100) == (b"data", version)
    clock.now += 101  # the copies carry the ttl they were filled with
    assert first.load(k, 100) is None and second.load(k, 100) is None


def test_hit_in_a_middle_cache_is_back_filled_above_it(
    chain: ChainStore, layers: list[MemoryStore]
) -> None:
    first, second, record = layers
    k = new_key()
    version = chain.save(k, b"data", 100, None)
    first.delete(k)
    record.delete(k)  # so only the middle cache can answer
    assert chain.load(k, 100) == (b"data", version)
    assert raw(first, k) == raw(second, k)


def test_save_writes_through_and_returns_the_store_of_record_version(
    chain: ChainStore, layers: list[MemoryStore]
) -> None:
    first, second, record = layers
    k = new_key()
    v1 = chain.save(k, b"one", 100, None)
    assert record.load(k, 100) == (b"one", v1)
    v2 = chain.save(k, b"two", 100, chain.load(k, 100).version)  # type: ignore[union-attr]
    assert record.load(k, 100) == (b"two", v2)
    assert raw(first, k) == raw(second, k) and b"two" in raw(first, k)  # type: ignore[operator]


def test_delete_removes_from_every_store(chain: ChainStore, layers: list[MemoryStore]) -> None:
    k = new_key()
    chain.save(k, b"data", 100, None)
    chain.delete(k)
    assert all(raw(store, k) is None for store in layers)
    assert chain.load(k, 100) is None


def test_touch_reaches_every_store_and_a_miss_clears_the_caches(
    chain: ChainStore, layers: list[MemoryStore], clock: FakeClock
) -> None:
    first, second, record = layers
    k = new_key()
    chain.save(k, b"data", 10, None)
    assert chain.touch(k, 1000) is True
    clock.now += 500
    assert all(store.load(k, 1000) is not None for store in layers)
    record.delete(k)
    assert chain.touch(k, 1000) is False
    assert raw(first, k) is None and raw(second, k) is None


def test_conflict_in_the_store_of_record_drops_cached_copies(
    chain: ChainStore, layers: list[MemoryStore]
) -> None:
    first, _, record = layers
    k = new_key()
    v1 = chain.save(k, b"one", 100, None)
    with pytest.raises(ConflictError):
        chain.save(k, b"stale", 100, "not-" + v1)
    assert raw(first, k) is None
    assert chain.load(k, 100) == (b"one", v1) == record.load(k, 100)


def test_cache_entry_that_is_not_a_frame_is_logged_replaced_and_read_through(
    chain: ChainStore, layers: list[MemoryStore], caplog: pytest.LogCaptureFixture
) -> None:
    first, _, record = layers
    k = new_key()
    version = record.save(k, b"data", 100, None)
    first.save(k, b'{"v":1}\nan old session', 100, None)
    with caplog.at_level(logging.WARNING, logger="pyramid_sessionstore.security"):
        assert chain.load(k, 100) == (b"data", version)
    assert "migrate_from" in caplog.text
    assert raw(first, k) != b'{"v":1}\nan old session'


# -- expiry and revalidation ------------------------------------------------------------


def test_active_session_served_from_cache_never_expires_in_the_store_of_record(
    chain: ChainStore, layers: list[MemoryStore], clock: FakeClock
) -> None:
    record = layers[-1]
    k = new_key()
    version = chain.save(k, b"data", 100, None)
    for _ in range(40):  # 1000 seconds of activity, far past the ttl
        clock.now += 25
        assert chain.load(k, 100) == (b"data", version)
    assert record.load(k, 100) is not None
    chain.save(k, b"more", 100, version)


def test_idle_session_ends_after_ttl_and_at_most_the_margin_late(
    chain: ChainStore, clock: FakeClock
) -> None:
    used, idle = new_key(), new_key()
    chain.save(used, b"data", 100, None)
    chain.save(idle, b"data", 100, None)
    clock.now += 99
    assert chain.load(used, 100) is not None  # not early
    clock.now += 32  # past ttl + margin (min(revalidate_after, ttl/2) = 30)
    assert chain.load(idle, 100) is None
    clock.now += 99 + 32
    assert chain.load(used, 100) is None


def test_ttl_none_record_is_served_from_cache_then_revalidated(
    chain: ChainStore, layers: list[MemoryStore], clock: FakeClock
) -> None:
    record = layers[-1]
    k = new_key()
    version = chain.save(k, b"forever", None, None)
    record.delete(k)  # as another process with its own caches would
    clock.now += 29
    assert chain.load(k, None) == (b"forever", version)  # within revalidate_after
    clock.now += 2
    assert chain.load(k, None) is None
    assert all(raw(store, k) is None for store in layers)


def test_private_caches_are_stale_at_most_revalidate_after(clock: FakeClock) -> None:
    # Two processes, each with its own memory cache, sharing a store of record.
    record = MemoryStore(clock=clock)
    one = ChainStore(stores=[MemoryStore(clock=clock), record], clock=clock)
    two = ChainStore(stores=[MemoryStore(clock=clock), record], clock=clock)
    k = new_key()
    v1 = one.save(k, b"one", 1000, None)
    assert two.load(k, 1000) == (b"one", v1)
    v2 = one.save(k, b"two", 1000, v1)
    assert two.load(k, 1000) == (b"one", v1)  # stale, within the bound
    with pytest.raises(ConflictError):  # but can never write over the newer data
        two.save(k, b"lost", 1000, v1)
    assert two.load(k, 1000) == (b"two", v2)  # the conflict dropped its copy
    one.delete(k)  # logout in process one
    clock.now += 30
    assert two.load(k, 1000) is None


# -- races: a stale cached copy is never served after a save returned ------------------


def test_fill_that_read_before_a_save_does_not_cache_stale_data() -> None:
    record = Pause(MemoryStore(), "load")
    cache = MemoryStore()
    chain = ChainStore(stores=[cache, record])
    k = new_key()
    v1 = chain.save(k, b"one", 60, None)
    cache.delete(k)  # the next load reads through
    with ThreadPoolExecutor(1) as pool:
        reading = pool.submit(chain.load, k, 60)
        assert record.paused.wait(5)  # it has read "one" and is about to fill the cache
        v2 = chain.save(k, b"two", 60, v1)
        with pytest.raises(ConflictError):  # a request that had loaded "one" too
            chain.save(k, b"late", 60, v1)  # (its conflict empties the caches)
        record.release.set()
        assert reading.result(5) == (b"one", v1)  # concurrent with the save: either is fine
    assert chain.load(k, 60) == (b"two", v2)


def test_delayed_save_does_not_overwrite_a_newer_cached_copy() -> None:
    record = Pause(MemoryStore(), "save")
    cache = MemoryStore()
    chain = ChainStore(stores=[cache, record])
    k = new_key()
    v1 = chain.save(k, b"one", 60, None)
    with ThreadPoolExecutor(1) as pool:
        first = pool.submit(chain.save, k, b"two", 60, v1)
        assert record.paused.wait(5)  # "two" is saved; its cache write is still to come
        loaded = chain.load(k, 60)
        assert loaded is not None and loaded.data == b"two"
        v3 = chain.save(k, b"three", 60, loaded.version)
        record.release.set()
        first.result(5)
    assert chain.load(k, 60) == (b"three", v3)


@pytest.fixture
def fast_switching() -> Iterator[None]:
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)
    yield
    sys.setswitchinterval(interval)


@pytest.mark.usefixtures("fast_switching")
def test_loads_never_go_back_in_time_under_concurrent_saves() -> None:
    chain = ChainStore(stores=[MemoryStore(), MemoryStore(), MemoryStore()])
    k = new_key()
    chain.save(k, b"0", 60, None)
    committed = [0]
    lock = threading.Lock()
    errors: list[str] = []

    def write() -> None:
        for _ in range(300):
            record = chain.load(k, 60)
            assert record is not None
            n = int(record.data) + 1
            try:
                chain.save(k, str(n).encode(), 60, record.version)
            except ConflictError:
                continue
            with lock:
                committed[0] = max(committed[0], n)

    def read() -> None:
        for _ in range(600):
            floor = committed[0]
            record = chain.load(k, 60)
            if record is None or int(record.data) < floor:
                errors.append(f"read {record} after {floor} was saved")

    threads = [threading.Thread(target=f) for f in (write, write, write, read, read)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors[:3]
    assert int(chain.load(k, 60).data) == committed[0]  # type: ignore[union-attr]


# -- migration ------------------------------------------------------------------------


def _kinds() -> list[Any]:
    pairs = [("memory", "memory"), ("file", "sqlite"), ("sqlite", "file")]
    available = {
        kind
        for kind in ("memory", "file", "sqlite")
        if importlib.util.find_spec(f"pyramid_sessionstore.stores.{kind}") is not None
    }
    return [pytest.param(p, id="-to-".join(p)) for p in pairs if set(p) <= available]


def _build(kind: str, where: Path) -> Any:
    if kind == "memory":
        return MemoryStore()
    if kind == "file":
        from pyramid_sessionstore.stores import FileStore

        return FileStore(path=str(where / "files"))
    from pyramid_sessionstore.stores import SQLiteStore

    return SQLiteStore(path=str(where / "sessions.sqlite"))


@pytest.fixture(params=_kinds())
def old_and_new(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Any, Any]]:
    old_kind, new_kind = request.param
    old, new = _build(old_kind, tmp_path / "old"), _build(new_kind, tmp_path / "new")
    yield old, new
    old.close()
    new.close()


@pytest.mark.parametrize("with_cache", [False, True], ids=["direct", "cached"])
def test_migration_keeps_every_record_and_moves_what_is_used(
    old_and_new: tuple[Any, Any], with_cache: bool
) -> None:
    old, new = old_and_new
    before = {new_key(): f"session {n}".encode() for n in range(6)}
    for key, data in before.items():
        old.save(key, data, 600, None)
    keys = list(before)
    index = new_key()[:40]  # a user index: saved without expiry
    old.save(index, b"index", None, None)
    stores = [MemoryStore(), new] if with_cache else [new]
    chain = ChainStore(stores=stores, migrate_from=old)
    # Used after the switch: loadable, then updatable; moved out of the old store.
    for key in keys[:3]:
        record = chain.load(key, 600)
        assert record is not None and record.data == before[key]
        assert new.load(key, 600) == record and old.load(key, 600) is None
        version = chain.save(key, before[key] + b" updated", 600, record.version)
        assert chain.load(key, 600) == (before[key] + b" updated", version)
    # Not used yet: still there, and counted.
    assert all(old.load(key, 600) is not None for key in keys[3:])
    assert set(chain.keys()) == {*keys, index} and chain.count() == len(keys) + 1
    # Logout of a session that was never moved: gone from both, reported as found.
    assert chain.touch(keys[3], 1) is True
    chain.delete(keys[3])
    assert chain.load(keys[3], 600) is None and old.load(keys[3], 600) is None
    # New sessions land in the new store only.
    fresh = new_key()
    chain.save(fresh, b"new", 600, None)
    assert old.load(fresh, 600) is None and new.load(fresh, 600) is not None
    # Sessions used later are moved then; what never expires is moved by the final sweep.
    for key in keys[4:]:
        assert chain.load(key, 600) is not None
    assert old.count() == 1
    assert chain.move_remaining(ttl=None) == 1 and old.count() == 0
    # Drained: switch to the new store alone; nothing was lost.
    for key in [*keys[:3], *keys[4:], index]:
        assert new.load(key, None) is not None
    assert new.load(index, None).data == b"index"


def test_move_remaining_without_an_old_store_or_one_that_cannot_list() -> None:
    assert ChainStore(stores=[MemoryStore(), MemoryStore()]).move_remaining(ttl=None) == 0
    with pytest.raises(TypeError, match="cannot list"):
        ChainStore(stores=[MemoryStore()], migrate_from=Plain()).move_remaining(ttl=None)


def test_concurrent_moves_of_one_record_agree() -> None:
    old, new = MemoryStore(), MemoryStore()
    k = new_key()
    old.save(k, b"data", 60, None)
    chain = ChainStore(stores=[new], migrate_from=old)
    barrier = threading.Barrier(6)

    def load() -> Record | None:
        barrier.wait()
        return chain.load(k, 60)

    with ThreadPoolExecutor(6) as pool:
        results = list(pool.map(lambda _: load(), range(6)))
    assert all(r is not None and r == results[0] for r in results)
    assert new.load(k, 60) == results[0] and old.load(k, 60) is None


def test_load_racing_a_move_finds_the_moved_record() -> None:
    old, new = MemoryStore(), Pause(MemoryStore(), "load")
    k = new_key()
    old.save(k, b"data", 60, None)
    chain = ChainStore(stores=[new], migrate_from=old)
    with ThreadPoolExecutor(1) as pool:
        late = pool.submit(chain.load, k, 60)
        assert new.paused.wait(5)  # missed in the new store, about to look in the old one
        moved = chain.load(k, 60)  # another request moves it meanwhile
        new.release.set()
        assert moved is not None and late.result(5) == moved


def test_logout_during_a_move_is_not_undone() -> None:
    old, new = MemoryStore(), Pause(MemoryStore(), "save")
    k = new_key()
    old.save(k, b"data", 60, None)
    chain = ChainStore(stores=[new], migrate_from=old)
    with ThreadPoolExecutor(1) as pool:
        moving = pool.submit(chain.load, k, 60)
        assert new.paused.wait(5)  # copied into the new store, not yet checked
        chain.delete(k)  # logout, from another request
        new.release.set()
        assert moving.result(5) is None
    assert chain.load(k, 60) is None and new.load(k, 60) is None


def test_record_rewritten_in_the_old_store_during_a_move_is_moved_in_its_newest_form() -> None:
    old, new = MemoryStore(), Pause(MemoryStore(), "save")
    k = new_key()
    v1 = old.save(k, b"one", 60, None)
    chain = ChainStore(stores=[new], migrate_from=old)
    with ThreadPoolExecutor(1) as pool:
        moving = pool.submit(chain.load, k, 60)
        assert new.paused.wait(5)
        old.save(k, b"two", 60, v1)  # a process not yet switched to the chain
        new.release.set()
        moved = moving.result(5)
    assert moved is not None and moved.data == b"two"
    assert new.load(k, 60) == moved and old.load(k, 60) is None


def test_switching_a_live_app_logs_nobody_out(old_and_new: tuple[Any, Any]) -> None:
    old, new = old_and_new
    secret = "chain-tests-" + "Vd3kS7nB" * 6
    browser = TestApp(make_wsgi_app(SessionFactory(secret, store=old)))
    browser.get("/set/color/blue")
    browser.get("/bind/ann")
    other = TestApp(browser.app)
    other.get("/bind/ann")  # ann is logged in twice
    # Deploy: session.store = chain, session.chain.stores = <new>, migrate_from = <old>.
    app = make_wsgi_app(SessionFactory(secret, store=ChainStore(stores=[new], migrate_from=old)))
    browser.app = other.app = app
    assert browser.get("/get/color").json == {"value": "blue"}
    browser.get("/set/color/green")
    assert browser.get("/get/color").json == {"value": "green"}
    # The other browser's session is left, and ann's index too, unless the new
    # store evicts: then each load of ann's session reads (and so moves) it.
    assert old.count() == (1 if evicts_live_records(new) else 2)
    assert browser.get("/everywhere/ann").json == {"ended": 2}
    assert other.get("/get/user").json == {"value": None}
    assert old.count() == 0
