"""CookieStore passes the store contract, through its jar (sealed values, as a browser keeps them).

In an application the factory only seals and unseals; the jar lets the same suite
check that every payload survives sealing and that a 1 MiB one is refused.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from pyramid_sessionstore.stores import CookieStore
from pyramid_sessionstore.stores import Store
from pyramid_sessionstore.testing import StoreContract

SECRET = "contract-suite-secret-0123456789abcdef0123456789abcdef0123456789"


class TestCookieStore(StoreContract):
    capabilities = frozenset()
    accepts_large_records = False

    @pytest.fixture
    def store_factory(self) -> Callable[[str], Store]:
        return lambda namespace: CookieStore(secret=SECRET + namespace)
