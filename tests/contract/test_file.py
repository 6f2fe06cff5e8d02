"""FileStore passes the store contract; a namespace is a sub-directory."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from pyramid_sessionstore.stores import FileStore
from pyramid_sessionstore.testing import ExpiryContract
from pyramid_sessionstore.testing import ScanContract
from pyramid_sessionstore.testing import StoreContract
from pyramid_sessionstore.testing import UnavailableContract


class TestFileStore(StoreContract, ExpiryContract, ScanContract, UnavailableContract):
    capabilities = frozenset({"expiry", "scan"})

    @pytest.fixture
    def store_factory(self, tmp_path: Path) -> Callable[[str], FileStore]:
        return lambda namespace: FileStore(path=tmp_path / namespace)

    @pytest.fixture
    def unavailable_store(self, tmp_path: Path) -> FileStore:
        store = FileStore(path=tmp_path / "gone")
        (tmp_path / "gone").rmdir()
        (tmp_path / "gone").write_text("a file where the directory was")
        return store
