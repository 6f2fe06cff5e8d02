"""The capability suites: what a store with an optional ability does, to mix into a contract class.

Kept apart from :mod:`.contract` (which re-exports them) so each module stays
readable; every class here tests one ability and assumes the fixtures
:class:`~pyramid_sessionstore.testing.contract.StoreContract` provides
(``store``, ``key``, ``wait``, ``clock``).
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from typing import ClassVar

import pytest

from ..exceptions import StoreUnavailableError
from ..stores.base import Clock
from ..stores.base import Store
from ..stores.base import SupportsExpiry
from ..stores.base import SupportsPeek
from ..stores.base import SupportsScan
from ._support import Keys as _Keys
from ._support import Wait
from ._support import new_key
from ._support import wait_until_expired

__all__ = [
    "ExpiryContract",
    "PeekContract",
    "RawContentsContract",
    "ScanContract",
    "UnavailableContract",
]


class ExpiryContract:
    """For :class:`~pyramid_sessionstore.stores.SupportsExpiry`: ``delete_expired`` collects.

    It removes only expired records, and counts them.
    """

    def test_delete_expired_removes_only_expired_and_counts(
        self, store: Store, key: _Keys, wait: Wait
    ) -> None:
        assert isinstance(store, SupportsExpiry)
        short = [key() for _ in range(3)]
        keep = [key() for _ in range(2)]
        for k in short:
            store.save(k, b"short", 1, None)
        for k in keep:
            store.save(k, b"keep", 600, None)
        forever = key()
        store.save(forever, b"forever", None, None)
        wait(2.1)  # past the ttl of 1, and SQLite's slack of half of it
        assert store.delete_expired() == len(short)
        for k in short:
            assert store.load(k, None) is None
        for k in [*keep, forever]:
            assert store.load(k, None) is not None
        assert store.delete_expired() == 0


class ScanContract:
    """For :class:`~pyramid_sessionstore.stores.SupportsScan`: ``keys`` and ``count`` agree."""

    def test_keys_and_count_agree_with_saved(self, store: Store, key: _Keys) -> None:
        assert isinstance(store, SupportsScan)
        assert store.count() == 0
        saved = {key() for _ in range(5)}
        for k in saved:
            store.save(k, b"x", 600, None)
        assert set(store.keys()) == saved
        assert store.count() == len(saved)
        gone = saved.pop()
        store.delete(gone)
        assert set(store.keys()) == saved
        assert store.count() == len(saved)

    def test_keys_leave_out_expired(self, store: Store, key: _Keys, wait: Wait) -> None:
        assert isinstance(store, SupportsScan)
        live, dead = key(), key()
        store.save(live, b"x", 600, None)
        store.save(dead, b"x", 1, None)
        wait_until_expired(store, dead, wait)
        assert set(store.keys()) == {live}
        assert store.count() == 1


class PeekContract:
    """For :class:`~pyramid_sessionstore.stores.base.SupportsPeek`: a read that changes nothing.

    ``peek`` returns what ``load`` would, and when the record expires, without
    refreshing it (listing a user's sessions must not keep them alive).
    The expiry is checked against the ``clock`` fixture, the time the store
    sees (``time.time``; a store on a fake clock overrides it).
    """

    #: Seconds the expiry ``peek`` reports may be early: a store that counts
    #: whole seconds (memcached) rounds, one that keeps records past their ttl
    #: subtracts the most it may add (SQLite's ``refresh_interval``).
    peek_early: ClassVar[float] = 1.0
    #: False for an engine that cannot tell when a record expires: its
    #: ``peek`` must then report None.
    peek_tells_expiry: ClassVar[bool] = True

    def test_peek_unknown_key_returns_none(self, store: Store, key: _Keys) -> None:
        assert isinstance(store, SupportsPeek)
        assert store.peek(key()) is None

    def test_peek_returns_the_record_and_when_it_expires(
        self, store: Store, key: _Keys, clock: Clock
    ) -> None:
        assert isinstance(store, SupportsPeek)
        k, before = key(), clock()
        version = store.save(k, b"\x00peeked\xff", 60, None)
        peeked = store.peek(k)
        after = clock()
        assert peeked is not None
        record, expires = peeked
        assert record == (b"\x00peeked\xff", version) == store.load(k, 60)
        if not self.peek_tells_expiry:
            assert expires is None
        else:
            assert expires is not None
            assert before + 60 - self.peek_early <= expires <= after + 60 + 1

    def test_peek_of_a_record_without_ttl_has_no_expiry(self, store: Store, key: _Keys) -> None:
        assert isinstance(store, SupportsPeek)
        k = key()
        version = store.save(k, b"forever", None, None)
        assert store.peek(k) == ((b"forever", version), None)

    def test_peek_sees_updates_and_deletes(self, store: Store, key: _Keys) -> None:
        assert isinstance(store, SupportsPeek)
        k = key()
        v1 = store.save(k, b"one", 60, None)
        v2 = store.save(k, b"two", 60, v1)
        assert store.peek(k) is not None
        assert store.peek(k)[0] == (b"two", v2)  # type: ignore[index]
        store.delete(k)
        assert store.peek(k) is None

    def test_peek_does_not_refresh_the_expiry(self, store: Store, key: _Keys, wait: Wait) -> None:
        assert isinstance(store, SupportsPeek)
        k = key()
        store.save(k, b"short", 1, None)
        for _ in range(3):
            wait(0.3)
            store.peek(k)  # memcached, counting whole seconds, may have ended it already
        # 1.7 s after the save: past the ttl of 1 and SQLite's slack of half of it,
        # and before 1.9 s, when a record refreshed by the last peek would expire.
        wait(0.8)
        assert store.peek(k) is None
        assert store.load(k, 60) is None


class RawContentsContract:
    """For stores whose engine a test can read: records are named by the keys given, only.

    The factory gives a store a one-way hash of the session id as the key; a
    store must not keep anything else of its caller's beside it (no other name,
    no index of keys). Provide a fixture ``raw_names``: a callable that takes
    the store and returns the names of every record its engine holds in the
    store's namespace, read behind the store's back, without its own prefix.
    """

    def test_records_are_named_only_by_the_keys_given(
        self, store: Store, key: _Keys, raw_names: Callable[[Store], set[str]]
    ) -> None:
        saved = {key() for _ in range(3)}
        for k in saved:
            store.save(k, secrets.token_bytes(16), 600, None)
        store.save(gone := key(), b"x", 600, None)
        store.delete(gone)
        assert raw_names(store) == saved


class UnavailableContract:
    """For stores that can be unreachable: the project's error, never the driver's.

    Provide a fixture ``unavailable_store``: the store pointed at a closed
    loopback port, an unwritable directory, or the like.
    """

    def test_unreachable_store_raises_store_unavailable(self, unavailable_store: Store) -> None:
        k = new_key()
        calls: list[Callable[[], object]] = [
            lambda: unavailable_store.load(k, 60),
            lambda: unavailable_store.save(k, b"x", 60, None),
            lambda: unavailable_store.touch(k, 60),
            lambda: unavailable_store.delete(k),
        ]
        if isinstance(unavailable_store, SupportsPeek):
            calls.append(lambda: unavailable_store.peek(k))
        for call in calls:
            with pytest.raises(StoreUnavailableError) as info:
                call()
            assert info.value.__cause__ is not None or info.value.__context__ is not None
