"""The contract every store passes, as pytest classes to subclass.

A store's test module subclasses :class:`~pyramid_sessionstore.testing.StoreContract`
(plus :class:`~pyramid_sessionstore.testing.ExpiryContract`,
:class:`~pyramid_sessionstore.testing.ScanContract`,
:class:`~pyramid_sessionstore.testing.PeekContract`,
:class:`~pyramid_sessionstore.testing.UnavailableContract` and
:class:`~pyramid_sessionstore.testing.RawContentsContract` for the abilities it
has; they live in ``pyramid_sessionstore.testing._capabilities``), declares
``capabilities`` and provides one fixture, ``store_factory``: a callable that
takes a namespace (a fresh prefix, directory or table name) and returns a
store isolated in it. The suite creates one namespace per test and deletes
every key it wrote. A third-party store runs the same suite::

    class TestMyStore(StoreContract, ScanContract):
        capabilities = frozenset({"scan"})

        @pytest.fixture
        def store_factory(self):
            return lambda namespace: MyStore(prefix=namespace)

No test here is ever overridden to ``pass``: a store that cannot do something
declares it by leaving out the capability, and
``test_capabilities_are_exactly_those_declared`` checks the declaration.

Time passes through the ``wait`` fixture (``time.sleep``) and is read through
the ``clock`` fixture (``time.time``); a store built on a fake clock
(``clock=``) overrides both, ``wait`` to move the clock. Real waits are bounded,
with margins for memcached's whole seconds on a loaded machine.
"""

from __future__ import annotations

import secrets
import time
import uuid
from collections.abc import Callable
from collections.abc import Iterator
from typing import ClassVar

import pytest

from ..exceptions import ConflictError
from ..exceptions import SessionTooLargeError
from ..stores.base import Clock
from ..stores.base import Store
from ..stores.base import SupportsExpiry
from ..stores.base import SupportsPeek
from ..stores.base import SupportsScan
from ._capabilities import ExpiryContract
from ._capabilities import PeekContract
from ._capabilities import RawContentsContract
from ._capabilities import ScanContract
from ._capabilities import UnavailableContract
from ._support import Keys as _Keys
from ._support import Wait
from ._support import eventually
from ._support import new_key
from ._support import refreshed_in_time
from ._support import wait_until_expired
from ._support import winners

__all__ = [  # eventually and new_key: from ._support, for pyramid_sessionstore.testing
    "ExpiryContract",
    "PeekContract",
    "RawContentsContract",
    "ScanContract",
    "StoreContract",
    "UnavailableContract",
    "eventually",
    "new_key",
]

StoreFactory = Callable[[str], Store]


class StoreContract:
    """Behaviour every store has: compare-and-set, expiry, binary safety."""

    #: The optional abilities the store has: a subset of {"expiry", "scan", "peek"}.
    capabilities: ClassVar[frozenset[str]] = frozenset()
    #: Whether a 1 MiB record fits; a store that refuses raises SessionTooLargeError.
    accepts_large_records: ClassVar[bool] = True
    #: Threads racing in the compare-and-set test.
    race_threads: ClassVar[int] = 8

    @pytest.fixture
    def namespace(self) -> str:
        return f"t{uuid.uuid4().hex[:12]}"

    @pytest.fixture
    def key(self) -> Iterator[_Keys]:
        yield _Keys()

    @pytest.fixture
    def wait(self) -> Wait:
        """Let time pass for the store: real time here; override it for a fake clock."""
        return time.sleep

    @pytest.fixture
    def clock(self) -> Clock:
        """Return the time the store sees: real time here; override it for a fake clock."""
        return time.time

    @pytest.fixture
    def store(self, store_factory: StoreFactory, namespace: str, key: _Keys) -> Iterator[Store]:
        store = store_factory(namespace)
        yield store
        for issued in key.issued:
            store.delete(issued)
        store.close()

    # 0. conformance

    def test_store_satisfies_protocol(self, store: Store) -> None:
        assert isinstance(store, Store)

    def test_capabilities_are_exactly_those_declared(self, store: Store) -> None:
        found = set()
        if isinstance(store, SupportsExpiry):
            found.add("expiry")
        if isinstance(store, SupportsScan):
            found.add("scan")
        if isinstance(store, SupportsPeek):
            found.add("peek")
        assert found == set(self.capabilities)

    # 1-2. load and create

    def test_load_unknown_key_returns_none(self, store: Store, key: _Keys) -> None:
        assert store.load(key(), 60) is None

    def test_create_then_load_returns_same_bytes_and_version(
        self, store: Store, key: _Keys
    ) -> None:
        k = key()
        version = store.save(k, b"payload", 60, None)
        assert isinstance(version, str) and version
        record = store.load(k, 60)
        assert record is not None
        assert record.data == b"payload"
        assert record.version == version

    # 3. create on existing key

    def test_create_on_existing_key_raises_conflict(self, store: Store, key: _Keys) -> None:
        k = key()
        version = store.save(k, b"first", 60, None)
        with pytest.raises(ConflictError):
            store.save(k, b"second", 60, None)
        assert store.load(k, 60) == (b"first", version)

    # 4-6. update

    def test_update_with_current_version_returns_new_version(
        self, store: Store, key: _Keys
    ) -> None:
        k = key()
        v1 = store.save(k, b"one", 60, None)
        v2 = store.save(k, b"two", 60, v1)
        assert v2 != v1
        assert store.load(k, 60) == (b"two", v2)
        v3 = store.save(k, b"three", 60, v2)
        assert v3 not in (v1, v2)

    def test_update_with_stale_version_raises_conflict(self, store: Store, key: _Keys) -> None:
        k = key()
        v1 = store.save(k, b"one", 60, None)
        v2 = store.save(k, b"two", 60, v1)
        with pytest.raises(ConflictError):
            store.save(k, b"stale", 60, v1)
        assert store.load(k, 60) == (b"two", v2)

    def test_update_after_delete_raises_conflict_and_does_not_resurrect(
        self, store: Store, key: _Keys
    ) -> None:
        k = key()
        v1 = store.save(k, b"one", 60, None)
        store.delete(k)
        with pytest.raises(ConflictError):
            store.save(k, b"back", 60, v1)
        assert store.load(k, 60) is None

    def test_update_of_unknown_key_raises_conflict(self, store: Store, key: _Keys) -> None:
        k = key()
        with pytest.raises(ConflictError):
            store.save(k, b"data", 60, "1")
        assert store.load(k, 60) is None

    # 7. delete and touch

    def test_delete_existing_key_removes_it(self, store: Store, key: _Keys) -> None:
        k = key()
        store.save(k, b"data", 60, None)
        store.delete(k)
        assert store.load(k, 60) is None

    def test_delete_missing_key_is_not_an_error(self, store: Store, key: _Keys) -> None:
        k = key()
        store.delete(k)
        store.delete(k)

    def test_touch_missing_key_returns_false(self, store: Store, key: _Keys) -> None:
        assert store.touch(key(), 60) is False

    def test_touch_existing_key_returns_true_and_keeps_data(self, store: Store, key: _Keys) -> None:
        k = key()
        version = store.save(k, b"data", 60, None)
        assert store.touch(k, 120) is True
        assert store.load(k, 60) == (b"data", version)

    def test_create_after_delete_succeeds(self, store: Store, key: _Keys) -> None:
        k = key()
        store.save(k, b"old", 60, None)
        store.delete(k)
        version = store.save(k, b"new", 60, None)
        assert store.load(k, 60) == (b"new", version)

    # 8. ttl

    def test_record_with_ttl_expires(self, store: Store, key: _Keys, wait: Wait) -> None:
        k = key()
        store.save(k, b"short", 1, None)
        wait_until_expired(store, k, wait)

    def test_expired_record_cannot_be_updated(self, store: Store, key: _Keys, wait: Wait) -> None:
        k = key()
        version = store.save(k, b"short", 1, None)
        wait_until_expired(store, k, wait)
        with pytest.raises(ConflictError):
            store.save(k, b"back", 60, version)

    def test_touch_pushes_expiry_out(self, store: Store, key: _Keys, wait: Wait) -> None:
        k = refreshed_in_time(store, key, lambda k: store.touch(k, 30))
        wait(3.2)  # past the ttl of 2 (and SQLite's slack of 1), well before 30
        assert store.load(k, 30) is not None

    def test_load_with_ttl_pushes_expiry_out(self, store: Store, key: _Keys, wait: Wait) -> None:
        k = refreshed_in_time(store, key, lambda k: store.load(k, 30))
        wait(3.2)
        assert store.load(k, 30) is not None

    def test_ttl_none_never_expires(self, store: Store, key: _Keys, wait: Wait) -> None:
        k = key()
        version = store.save(k, b"forever", None, None)
        store.save(short := key(), b"short", 1, None)  # the wait is long enough to end this one
        wait_until_expired(store, short, wait)
        assert store.load(k, None) == (b"forever", version)

    # 9. binary safety

    @pytest.mark.parametrize(
        "payload",
        [b"", b"\x00", b"a\x00b", b"\xff\xfe\x00\x01", bytes(range(256))],
        ids=["empty", "nul", "inner-nul", "high-bytes", "all-bytes"],
    )
    def test_binary_payload_round_trips(self, store: Store, key: _Keys, payload: bytes) -> None:
        k = key()
        version = store.save(k, payload, 60, None)
        assert store.load(k, 60) == (payload, version)

    def test_large_payload_round_trips_or_is_refused(self, store: Store, key: _Keys) -> None:
        k = key()
        payload = secrets.token_bytes(1024 * 1024)
        if not self.accepts_large_records:
            with pytest.raises(SessionTooLargeError):
                store.save(k, payload, 60, None)
            return
        version = store.save(k, payload, 60, None)
        assert store.load(k, 60) == (payload, version)

    # 10. isolation

    def test_namespaces_are_isolated(
        self, store: Store, store_factory: StoreFactory, namespace: str, key: _Keys
    ) -> None:
        other = store_factory(namespace + "x")
        try:
            k = key()
            store.save(k, b"mine", 60, None)
            assert other.load(k, 60) is None
            other_version = other.save(k, b"theirs", 60, None)
            assert store.load(k, 60) is not None
            assert store.load(k, 60).data == b"mine"  # type: ignore[union-attr]
            other.delete(k)
            assert store.load(k, 60) is not None
            assert other_version
        finally:
            other.close()

    # 11. race

    def test_concurrent_compare_and_set_has_exactly_one_winner(
        self, store: Store, key: _Keys
    ) -> None:
        k = key()
        base = store.save(k, b"base", 60, None)
        won = winners(lambda n: store.save(k, b"writer-%d" % n, 60, base), self.race_threads)
        assert len(won) == 1
        assert store.load(k, 60).data == b"writer-%d" % won[0]  # type: ignore[union-attr]

    def test_concurrent_creates_have_exactly_one_winner(self, store: Store, key: _Keys) -> None:
        k = key()
        won = winners(lambda n: store.save(k, b"%d" % n, 60, None), self.race_threads)
        assert len(won) == 1
        assert store.load(k, 60).data == b"%d" % won[0]  # type: ignore[union-attr]

    # 14. close

    def test_close_is_idempotent(self, store_factory: StoreFactory, namespace: str) -> None:
        store = store_factory(namespace + "c")
        store.close()
        store.close()
