"""The stores, one module each, re-exported lazily.

``from pyramid_sessionstore.stores import RedisStore`` imports the Redis
module (and redis-py) only at that moment, so importing the package loads
no driver.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING
from typing import Any

from .base import Record
from .base import Store
from .base import SupportsExpiry
from .base import SupportsPeek
from .base import SupportsScan

if TYPE_CHECKING:
    from .chain import ChainStore
    from .cookie import CookieStore
    from .file import FileStore
    from .memcached import MemcachedStore
    from .memory import MemoryStore
    from .redis import RedisStore
    from .sql import SQLStore
    from .sqlite import SQLiteStore

__all__ = [
    "ChainStore",
    "CookieStore",
    "FileStore",
    "MemcachedStore",
    "MemoryStore",
    "Record",
    "RedisStore",
    "SQLStore",
    "SQLiteStore",
    "Store",
    "SupportsExpiry",
    "SupportsPeek",
    "SupportsScan",
]

_LAZY = {
    "ChainStore": "chain",
    "CookieStore": "cookie",
    "FileStore": "file",
    "MemcachedStore": "memcached",
    "MemoryStore": "memory",
    "RedisStore": "redis",
    "SQLStore": "sql",
    "SQLiteStore": "sqlite",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
