"""ChainStore: caches in front of a store of record, and the way from one store to another.

``ChainStore(stores=[fast, ..., record])``. The last store is the *store of
record*: every ``save`` is its compare-and-set, and its version is the chain's.
The stores before it are caches holding *frames* (:mod:`._chain_frames`): that
version, when it was last confirmed, when the record expires there, and the
bytes. A cache hit thus returns a version the next compare-and-set checks: a
stale copy can be read but never written back. What the chain guarantees (proofs in
docs/stores/chain.md):

- Writes are decided by the store of record alone; nothing is overwritten or
  resurrected. A conflict there also drops the cached copies.
- With caches shared by every process, a load started after a save returned
  never sees older data. Fills and saves take a *lease*: a placeholder put in
  the cache before the store of record is read or written, swapped for the
  frame by compare-and-set, and lost to any save or delete meanwhile.
- A cached copy is served at most ``revalidate_after`` seconds before the store
  of record is read again. This bounds staleness of caches private to a process
  and keeps the store of record's expiry ahead of the cache's: it gets ttl plus
  a margin (``revalidate_after``, at most ttl/2), so an idle session ends up to
  that margin late, never early.
- ``peek`` (listing a user's sessions) asks the store of record alone, then
  the old store: no cache is read or filled, and nothing is refreshed.

``migrate_from=old`` reads a store being retired when the store of record
misses and moves what it finds; the old store is read and deleted from, never
written. Not a replica set or a failover: the chain is as available as its
least available store, and raises what a child raises.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable
from collections.abc import Iterator
from collections.abc import Mapping
from collections.abc import Sequence
from itertools import product
from typing import Any
from typing import ClassVar
from typing import cast

from ..exceptions import ConfigurationError
from ..exceptions import ConflictError
from ._chain_frames import DATA
from ._chain_frames import LEASE
from ._chain_frames import Frame
from ._chain_frames import pack
from ._chain_frames import unpack
from .base import Clock
from .base import Converter
from .base import Record
from .base import SealsCookies
from .base import Store
from .base import SupportsExpiry
from .base import SupportsPeek
from .base import SupportsScan
from .base import as_list
from .base import as_positive_int
from .base import evicts_live_records

__all__ = ["LEASE_SECONDS", "ChainStore"]

log = logging.getLogger(__name__)
security_log = logging.getLogger("pyramid_sessionstore.security")

#: Seconds a fill or a save holds a cache key; an older lease may be taken over.
LEASE_SECONDS = 10


class ChainStore:
    """Read through caches to a store of record; optionally move records from an old store.

    :param stores: the caches, fastest first, then the store of record.
    :param migrate_from: a store being retired: read when the store of record
        misses, its records moved over, never written. Default: None.
    :param revalidate_after: seconds a cached copy is served before the store
        of record is read again (and its expiry refreshed). Default: 30.
    :param clock: returns the current Unix time; tests pass a fake one.
    """

    OPTIONS: ClassVar[dict[str, Converter]] = {
        "stores": as_list,
        "migrate_from": str,
        "revalidate_after": as_positive_int,
    }
    CODE_ONLY: ClassVar[frozenset[str]] = frozenset({"clock"})

    def __new__(cls, **kwargs: Any) -> ChainStore:
        # Return the variant whose methods are what the stores holding records
        # can do, so isinstance(chain, SupportsScan) tells the truth and no
        # method raises NotImplementedError: expiry if one needs collecting,
        # scan if all can list, peek if all can peek.
        stores, old = kwargs.get("stores") or [None], kwargs.get("migrate_from")
        held = [s for s in (stores[-1], old) if s is not None]
        expiry = any(isinstance(s, SupportsExpiry) for s in held)
        scan = bool(held) and all(isinstance(s, SupportsScan) for s in held)
        peek = bool(held) and all(isinstance(s, SupportsPeek) for s in held)
        return object.__new__(_VARIANTS[expiry, scan, peek] if cls is ChainStore else cls)

    def __init__(
        self,
        *,
        stores: Sequence[Store],
        migrate_from: Store | None = None,
        revalidate_after: int = 30,
        clock: Clock = time.time,
    ) -> None:
        children = [*stores, *([] if migrate_from is None else [migrate_from])]
        if len(stores) < (1 if migrate_from is not None else 2):
            raise ValueError("stores: a chain needs two stores or more, or one and migrate_from")
        if len({id(s) for s in children}) < len(children):
            raise ValueError("stores: the same store object is in the chain twice")
        for child in children:
            if isinstance(child, SealsCookies) or not isinstance(child, Store):
                raise ValueError(
                    f"stores: {child!r} cannot be in a chain: it is not a server-side store"
                )
        if revalidate_after < 1:
            raise ValueError(f"revalidate_after must be at least 1, got {revalidate_after}")
        #: The caches, fastest first.
        self.caches: tuple[Store, ...] = tuple(stores[:-1])
        #: The store of record: it holds the records and decides conflicts.
        self.record: Store = stores[-1]
        #: The store being retired, or None.
        self.migrate_from = migrate_from
        self.revalidate_after = revalidate_after
        self._clock = clock
        #: Caches may evict; the chain loses a record only when its store of record does.
        self.evicts_live_records = evicts_live_records(self.record)

    def __repr__(self) -> str:
        old = "" if self.migrate_from is None else f", migrate_from={self.migrate_from!r}"
        return f"ChainStore(stores={[*self.caches, self.record]!r}{old})"

    @classmethod
    def from_settings(
        cls, options: Mapping[str, Any], *, build: Callable[[str], Store], section: str
    ) -> ChainStore:
        """Build a chain from ``session.chain.*``, its stores by name with *build*.

        :param options: the raw options, without the *section* prefix.
        :param build: builds a store by name from its own ``session.<name>.*`` settings.
        :param section: the settings prefix (``session.chain.``), named in errors.
        """
        from .registry import convert_options  # the registry imports store modules lazily
        from .registry import resolve_store

        kwargs, setting = convert_options(cls, options, section), f"{section}stores"
        names: list[str] = kwargs.pop("stores", [])
        old: str | None = kwargs.pop("migrate_from", "").strip() or None
        if len(names) < (1 if old else 2):
            raise ConfigurationError(
                f"{setting}: name the stores of the chain, fastest first and the store of record"
                f" last, e.g. 'memory redis' (two or more, or one with {section}migrate_from)",
                setting,
            )
        every, own = [*names, *([old] if old else [])], section.rstrip(".").rpartition(".")[2]
        if own in every:
            raise ConfigurationError(f"{setting}: a chain cannot contain itself ({own!r})", setting)
        # Two stores of one name are built from the same settings, so they
        # would keep their records in the same place; memory stores share nothing.
        for name in every:
            if every.count(name) > 1 and name != "memory":
                raise ConfigurationError(
                    f"{setting}: {name!r} is named twice; both would be built from the same"
                    " settings and keep their records in the same place (build such a chain"
                    " in code)",
                    setting,
                )
        for name in every:
            resolve_store(name, setting)  # an unknown name is reported against this setting
        stores = [build(name) for name in names]
        return cls(stores=stores, migrate_from=build(old) if old else None, **kwargs)

    def _ttl(self, ttl: int | None) -> int | None:
        """Return the ttl for the store of record: *ttl* plus the revalidation margin."""
        if ttl is None or not self.caches:
            return ttl
        return ttl + min(self.revalidate_after, ttl // 2)

    def _frame(self, version: str, data: bytes, ttl: int | None, now: float) -> bytes:
        record_ttl = self._ttl(ttl)
        return pack(DATA, now, None if record_ttl is None else now + record_ttl, version, data)

    def _fresh(self, frame: Frame, ttl: int | None, now: float) -> bool:
        """Return whether a data *frame* may be served without the store of record."""
        _, at, deadline, _, _ = frame
        if now - at >= self.revalidate_after:
            return False
        if ttl is None or deadline is None:
            return ttl is None and deadline is None
        return deadline >= now + ttl  # the record there outlives this refresh

    def _lease(self, cache: Store, key: str, now: float, clear: bool) -> str | None:
        """Put a placeholder under *key* in *cache*; return its cache version, or None."""
        if clear:
            cache.delete(key)
        try:
            return cache.save(key, pack(LEASE, now, None, "", b""), LEASE_SECONDS, None)
        except ConflictError:
            return None  # another request's lease or fill holds the key

    def load(self, key: str, ttl: int | None) -> Record | None:
        now = self._clock()
        leases: list[tuple[Store, str]] = []
        for cache in self.caches:
            hit = cache.load(key, ttl)
            frame = None if hit is None else unpack(hit.data)
            if hit is not None and frame is None:
                security_log.warning(
                    "cache entry %s… in %r is not a chain frame; deleted (if this store held"
                    " sessions before, name it in session.chain.migrate_from)",
                    key[:12],
                    cache,
                )
            if hit is not None and frame is not None and frame[0] == DATA:
                if self._fresh(frame, ttl, now):
                    self._fill(leases, key, hit.data, ttl)
                    return Record(frame[4], frame[3])
                leases.append((cache, hit.version))  # stale copy: swap it
            elif frame is None or now - frame[1] >= LEASE_SECONDS:
                lease = self._lease(cache, key, now, clear=hit is not None)
                leases += [] if lease is None else [(cache, lease)]
        record = self.record.load(key, self._ttl(ttl))
        if record is None and self.migrate_from is not None:
            record = self._move(self.migrate_from, key, ttl)
        if record is None:
            for cache, _ in leases:
                cache.delete(key)
            return None
        self._fill(leases, key, self._frame(record.version, record.data, ttl, now), ttl)
        return record

    def _fill(
        self, leases: list[tuple[Store, str]], key: str, frame: bytes, ttl: int | None
    ) -> None:
        for cache, lease in leases:
            # A lost swap means a save or delete took the key meanwhile; it decides.
            with contextlib.suppress(ConflictError):
                cache.save(key, frame, ttl, lease)

    def _move(self, old: Store, key: str, ttl: int | None) -> Record | None:
        """Move *key* from the *old* store into the store of record; return it there."""
        for _ in range(3):
            if (found := old.load(key, ttl)) is None:  # it may have just been moved
                return self.record.load(key, self._ttl(ttl))
            try:
                version = self.record.save(key, found.data, self._ttl(ttl), None)
            except ConflictError:  # another request moved it first
                if (moved := self.record.load(key, self._ttl(ttl))) is not None:
                    return moved
                continue
            again = old.load(key, ttl)
            if again is not None and again.version == found.version:
                old.delete(key)
                log.info("moved record %s… from %r to %r", key[:12], old, self.record)
                return Record(found.data, version)
            # Deleted (logout) or rewritten (a process not on the chain yet)
            # meanwhile: the copy is wrong; undo it and look again.
            for store in (self.record, *self.caches):
                store.delete(key)
        log.warning("record %s… kept changing in %r; not moved this time", key[:12], old)
        return None

    def save(self, key: str, data: bytes, ttl: int | None, expected_version: str | None) -> str:
        now = self._clock()
        leases = [(cache, self._lease(cache, key, now, clear=True)) for cache in self.caches]
        try:
            version = self.record.save(key, data, self._ttl(ttl), expected_version)
        except BaseException:
            for cache in self.caches:  # our leases, and copies a conflict shows stale
                cache.delete(key)
            raise
        frame = self._frame(version, bytes(data), ttl, now)
        for cache, lease in leases:
            try:
                if lease is None:
                    raise ConflictError("a fill held the key", cache)
                cache.save(key, frame, ttl, lease)
            except ConflictError:
                # Whoever took the key may have read the store of record before
                # this save: never leave their copy behind.
                cache.delete(key)
        return version

    def touch(self, key: str, ttl: int | None) -> bool:
        found = self.record.touch(key, self._ttl(ttl))
        for cache in self.caches:
            if found:
                cache.touch(key, ttl)
            else:
                cache.delete(key)
        if not found and self.migrate_from is not None:
            return self.migrate_from.touch(key, ttl)
        return found

    def delete(self, key: str) -> None:
        # Old store, store of record, caches: in this order, a move or a fill
        # racing with the delete cannot bring the record back.
        for store in (self.migrate_from, self.record, *self.caches):
            if store is not None:
                store.delete(key)

    def close(self) -> None:
        """Close every store of the chain, even when one fails."""
        with contextlib.ExitStack() as stack:
            for child in (*self.caches, self.record, self.migrate_from):
                if child is not None:
                    stack.callback(child.close)

    def move_remaining(self, *, ttl: int | None) -> int:
        """Move every record left in the old store; return how many were moved.

        Run it once the longest session timeout has passed since the switch:
        what is left then never expires by itself (user indexes, sessions with
        no timeout), and would be lost when the old store is dropped.

        :param ttl: the ttl of the moved records; their next load sets their own.
        """
        old = self.migrate_from
        if old is None:
            return 0
        if not isinstance(old, SupportsScan):
            raise TypeError(f"{old!r} cannot list its keys; its records move only when used")
        return sum(self._move(old, key, ttl) is not None for key in list(old.keys()))

    def _held(self) -> list[Store]:
        return [s for s in (self.record, self.migrate_from) if s is not None]


class _Expiring(ChainStore):
    def delete_expired(self) -> int:
        """Collect expired records in every store; return how many held records."""
        for cache in self.caches:
            if isinstance(cache, SupportsExpiry):
                cache.delete_expired()
        return sum(s.delete_expired() for s in self._held() if isinstance(s, SupportsExpiry))


class _Scanning(ChainStore):
    def keys(self) -> Iterator[str]:
        """Yield the keys of the store of record, then those only in the old store."""
        seen: set[str] = set()
        for store in self._held():
            for key in store.keys() if isinstance(store, SupportsScan) else ():
                if key not in seen:
                    seen.add(key)
                    yield key

    def count(self) -> int:
        """Return the number of records."""
        if self.migrate_from is None and isinstance(self.record, SupportsScan):
            return self.record.count()
        return sum(1 for _ in self.keys())


class _Peeking(ChainStore):
    def peek(self, key: str) -> tuple[Record, float | None] | None:
        """Return the record and expiry the store of record holds (else the old store).

        No cache is read, filled or refreshed: the store of record decides
        whether a session lives. With caches, its expiry runs ahead of the
        session's by the margin (at most ``revalidate_after``, as caches serve
        loads meanwhile), so that is subtracted: never late, at most that early.
        """
        found = cast(SupportsPeek, self.record).peek(key)
        if found is None and self.migrate_from is not None:
            return cast(SupportsPeek, self.migrate_from).peek(key)  # kept with the session's ttl
        if found is None or found[1] is None:
            return found
        return found[0], found[1] - (self.revalidate_after if self.caches else 0)


def _variant(abilities: tuple[bool, ...]) -> type[ChainStore]:
    """Return the class of a chain with these abilities (expiry, scan, peek)."""
    mixins = (_Expiring, _Scanning, _Peeking)
    bases = tuple(mixin for mixin, has in zip(mixins, abilities, strict=True) if has)
    if len(bases) < 2:
        return bases[0] if bases else ChainStore
    return cast("type[ChainStore]", type("".join(b.__name__ for b in bases), bases, {}))


#: The class of a chain by its abilities (expiry, scan, peek).
_VARIANTS = {abilities: _variant(abilities) for abilities in product((False, True), repeat=3)}
