"""FileStore passes the store contract on a fake clock; a namespace is a sub-directory."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from clocks import FakeClock
from pyramid_sessionstore.stores import FileStore
from pyramid_sessionstore.testing import ExpiryContract
from pyramid_sessionstore.testing import PeekContract
from pyramid_sessionstore.testing import ScanContract
from pyramid_sessionstore.testing import StoreContract
from pyramid_sessionstore.testing import UnavailableContract
from pyramid_sessionstore.testing.contract import RawContentsContract


class TestFileStore(
    StoreContract,
    ExpiryContract,
    ScanContract,
    PeekContract,
    UnavailableContract,
    RawContentsContract,
):
    capabilities = frozenset({"expiry", "scan", "peek"})

    @pytest.fixture
    def clock(self) -> FakeClock:
        return FakeClock()

    @pytest.fixture
    def wait(self, clock: FakeClock) -> Callable[[float], None]:
        def advance(seconds: float) -> None:
            clock.now += seconds

        return advance

    @pytest.fixture
    def store_factory(self, tmp_path: Path, clock: FakeClock) -> Callable[[str], FileStore]:
        return lambda namespace: FileStore(path=tmp_path / namespace, clock=clock)

    @pytest.fixture
    def raw_names(self) -> Callable[[FileStore], set[str]]:
        """Every entry under the directory but the shard directories (no lock, no temp file)."""
        return lambda store: {
            name
            for root, dirs, files in os.walk(store.path)
            for name in files + [d for d in dirs if len(d) != 2]
        }

    @pytest.fixture
    def unavailable_store(self, tmp_path: Path) -> FileStore:
        store = FileStore(path=tmp_path / "gone")
        (tmp_path / "gone").rmdir()
        (tmp_path / "gone").write_text("a file where the directory was")
        return store

    # FileStore's own: peek reads the file and nothing else; what is not a record is removed.

    def test_peek_leaves_the_file_as_it_was(
        self, store: FileStore, key: Callable[[], str], wait: Callable[[float], None]
    ) -> None:
        k = key()
        store.save(k, b"data", 60, None)
        path = Path(store.path, k[:2], k[2:4], k)
        before = (path.read_bytes(), os.stat(path).st_mtime_ns)
        wait(30)  # a load now would rewrite the expiry
        assert store.peek(k) is not None
        assert (path.read_bytes(), os.stat(path).st_mtime_ns) == before

    @pytest.mark.parametrize("spoil", [lambda p: p.write_bytes(b"PSSF"), Path.mkdir])
    def test_peek_of_what_is_not_a_record_is_a_miss_and_removes_it(
        self, store: FileStore, key: Callable[[], str], spoil: Callable[[Path], object]
    ) -> None:
        k = key()
        store.save(k, b"data", 60, None)
        path = Path(store.path, k[:2], k[2:4], k)
        path.unlink()
        spoil(path)
        assert store.peek(k) is None
        assert not path.exists()
