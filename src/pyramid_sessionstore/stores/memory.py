"""MemoryStore: records in a dict of this process, for development and tests.

Thread-safe and bounded: past ``max_entries`` the least recently used record
is evicted, and expired records are dropped when met. It is not shared
between worker processes and does not survive a restart; use ``sqlite`` or
``file`` for that on one machine, ``redis`` or ``sql`` for a fleet.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator
from typing import ClassVar

from ..exceptions import ConflictError
from .base import Clock
from .base import Converter
from .base import Record
from .base import as_int

__all__ = ["MemoryStore"]


class _Entry:
    """One record; mutable, so a load refreshes its expiry in place."""

    __slots__ = ("data", "expires", "version")

    def __init__(self, data: bytes, version: str, expires: float | None) -> None:
        self.data, self.version, self.expires = data, version, expires


class MemoryStore:
    """Keep records in this process, bounded by LRU eviction.

    :param max_entries: how many records to keep before evicting the least
        recently used one. Default: 100000.
    :param clock: returns the current Unix time; tests pass a fake one.
    """

    OPTIONS: ClassVar[dict[str, Converter]] = {"max_entries": as_int}
    #: Past ``max_entries``, live records are evicted (see ``evicts_live_records``).
    evicts_live_records: ClassVar[bool] = True
    CODE_ONLY: ClassVar[frozenset[str]] = frozenset({"clock"})

    def __init__(self, *, max_entries: int = 100_000, clock: Clock = time.time) -> None:
        if max_entries < 1:
            raise ValueError(f"max_entries must be at least 1, got {max_entries}")
        self.max_entries = max_entries
        self._clock = clock
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        self._lock = threading.Lock()
        self._versions = itertools.count(1)

    def __repr__(self) -> str:
        return f"MemoryStore(max_entries={self.max_entries})"

    def _live(self, key: str, now: float) -> _Entry | None:
        """Return the unexpired entry of *key*, dropping it if expired. Hold the lock."""
        entry = self._entries.get(key)
        if entry is not None and entry.expires is not None and entry.expires <= now:
            del self._entries[key]
            return None
        return entry

    def load(self, key: str, ttl: int | None) -> Record | None:
        with self._lock:
            entry = self._live(key, now := self._clock())
            if entry is None:
                return None
            entry.expires = None if ttl is None else now + ttl
            self._entries.move_to_end(key)
            return Record(entry.data, entry.version)

    def save(self, key: str, data: bytes, ttl: int | None, expected_version: str | None) -> str:
        data = bytes(data)
        with self._lock:
            now = self._clock()
            entry = self._live(key, now)
            current = None if entry is None else entry.version
            if current != expected_version:
                raise ConflictError(
                    f"record {key[:12]}… is at version {current!r}, not {expected_version!r}",
                    self,
                )
            version = str(next(self._versions))
            self._entries[key] = _Entry(data, version, None if ttl is None else now + ttl)
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)
            return version

    def peek(self, key: str) -> tuple[Record, float | None] | None:
        """Return the record of *key* and its expiry (Unix seconds), leaving both alone."""
        with self._lock:
            entry = self._live(key, self._clock())
            return None if entry is None else (Record(entry.data, entry.version), entry.expires)

    def touch(self, key: str, ttl: int | None) -> bool:
        with self._lock:
            entry = self._live(key, now := self._clock())
            if entry is not None:
                entry.expires = None if ttl is None else now + ttl
            return entry is not None

    def delete(self, key: str) -> None:
        with self._lock:
            self._entries.pop(key, None)

    def close(self) -> None:
        """Nothing to release; the records stay for the life of the object."""

    def delete_expired(self) -> int:
        with self._lock:
            now = self._clock()
            dead = [
                k for k, e in self._entries.items() if e.expires is not None and e.expires <= now
            ]
            for key in dead:
                del self._entries[key]
            return len(dead)

    def keys(self) -> Iterator[str]:
        with self._lock:
            now = self._clock()
            live = [k for k, e in self._entries.items() if e.expires is None or e.expires > now]
        return iter(live)

    def count(self) -> int:
        return sum(1 for _ in self.keys())
