"""The store protocol: opaque bytes under a key, with an expiry and a version.

A store knows nothing of sessions, cookies or Pyramid. Serialization and
encryption happen above it; the user index (logout everywhere) is built above
it too, so a new store gets every feature by implementing five methods.

There is no base class to inherit: a store is a plain class that satisfies
:class:`Store`. Optional abilities are separate protocols
(:class:`SupportsExpiry`, :class:`SupportsScan`) checked with ``isinstance``;
no store has a method that raises ``NotImplementedError``.

Keys are lower-case hex strings (a hash of the session id, so read access to
a store does not hand out live ids). A store may add its own prefix.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from collections.abc import Iterator
from typing import Any
from typing import NamedTuple
from typing import Protocol
from typing import runtime_checkable
from urllib.parse import urlsplit
from urllib.parse import urlunsplit

from pyramid.settings import asbool
from pyramid.settings import aslist

from ..exceptions import StoreUnavailableError

__all__ = [
    "Clock",
    "Converter",
    "Record",
    "SealsCookies",
    "Store",
    "SupportsExpiry",
    "SupportsPeek",
    "SupportsScan",
    "as_bool",
    "as_float",
    "as_int",
    "as_list",
    "as_seconds",
    "evicts_live_records",
    "expires_at",
    "mask_url",
    "shown_value",
]

#: A function returning the current time as a Unix timestamp.
Clock = Callable[[], float]

#: Turns a setting's value (a string from an ``.ini``, or a Python value
#: passed in code) into what a store's keyword argument expects.
Converter = Callable[[Any], Any]


class Record(NamedTuple):
    """What :meth:`Store.load` returns."""

    #: The bytes that were saved.
    data: bytes
    #: Opaque token chosen by the store; changes on every successful save.
    version: str


@runtime_checkable
class Store(Protocol):
    """Keep opaque bytes under a key, with compare-and-set writes."""

    def load(self, key: str, ttl: int | None) -> Record | None:
        """Return the record for *key*, or None when there is none.

        Where the engine can, refresh the expiry to *ttl* seconds in the same
        round trip (Redis ``GETEX``); a store that cannot leaves the expiry
        alone and the factory calls :meth:`touch` when a refresh is due.
        An expired record is a miss.
        """
        ...

    def save(self, key: str, data: bytes, ttl: int | None, expected_version: str | None) -> str:
        """Write *data* under *key* if the stored version is *expected_version*.

        ``expected_version=None`` means create-only: the key must not exist.
        Return the new version, which differs from every earlier one of the key.
        Raise :class:`~pyramid_sessionstore.exceptions.ConflictError` when the
        stored version differs, the record has vanished (deleted or expired) or
        already exists on create. Never overwrite silently, never resurrect a
        deleted record. *ttl* is in whole seconds, None meaning no expiry.
        """
        ...

    def touch(self, key: str, ttl: int | None) -> bool:
        """Extend the expiry of *key* to *ttl* without rewriting it.

        Return False when there is no such record. Never raises for a missing key.
        """
        ...

    def delete(self, key: str) -> None:
        """Remove *key*. Deleting a missing key is not an error."""
        ...

    def close(self) -> None:
        """Release connections and files. Idempotent."""
        ...


@runtime_checkable
class SupportsPeek(Protocol):
    """A store that can read a record without refreshing its expiry.

    Used to list a user's active sessions (``list_user_sessions``): reading
    another device's session must not extend it, and its expiry tells when it
    was last active.
    """

    def peek(self, key: str) -> tuple[Record, float | None] | None:
        """Return the record of *key* and when it expires, or None when there is none.

        The expiry is absolute Unix time in seconds, or None when the record
        does not expire or the engine cannot tell. A store that keeps records
        past their ttl (refresh slack) subtracts the most it may add: the
        expiry is never later than the session's own, so ``last_active`` is
        never in the future. Never refreshes the expiry, never raises for a
        missing key.
        """
        ...


def evicts_live_records(store: object) -> bool:
    """Return True if *store* may drop unexpired records under memory pressure.

    A store whose engine evicts (an LRU cache: the memory store, memcached)
    says so with a class attribute ``evicts_live_records = True``. The user
    index is then checked on every load of a bound session, so an evicted
    index ends that user's sessions instead of hiding them from
    logout-everywhere.
    """
    return bool(getattr(store, "evicts_live_records", False))


@runtime_checkable
class SupportsExpiry(Protocol):
    """A store whose engine does not expire records by itself."""

    def delete_expired(self) -> int:
        """Remove expired records, in bounded batches; return how many."""
        ...


@runtime_checkable
class SupportsScan(Protocol):
    """A store that can list its keys (for ``psessions stats`` and ``purge``)."""

    def keys(self) -> Iterator[str]:
        """Yield the keys of live records, without the store's own prefix."""
        ...

    def count(self) -> int:
        """Return the number of live records."""
        ...


# -- option converters ---------------------------------------------------------
# Explicit, never guessed: a password "0123" stays a string (unlike dogpile's
# coerce_string_conf).


def as_bool(value: Any) -> bool:
    """Convert ``true/false/yes/no/on/off/1/0`` (or a bool) to a bool."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text not in {"true", "false", "yes", "no", "on", "off", "1", "0", "y", "n", "t", "f"}:
        raise ValueError(f"expected true or false, got {value!r}")
    return bool(asbool(text))


def as_int(value: Any) -> int:
    """Convert a whole number."""
    if isinstance(value, bool):
        raise ValueError(f"expected a whole number, got {value!r}")
    return int(value)


def as_float(value: Any) -> float:
    """Convert a number."""
    if isinstance(value, bool):
        raise ValueError(f"expected a number, got {value!r}")
    return float(value)


def as_positive_int(value: Any) -> int:
    """Convert a whole number >= 1 (a count, a size, seconds that cannot be zero)."""
    if (number := as_int(value)) < 1:
        raise ValueError(f"expected a whole number >= 1, got {value!r}")
    return number


def as_positive_float(value: Any) -> float:
    """Convert a number > 0 (a timeout in seconds)."""
    if (number := as_float(value)) <= 0:
        raise ValueError(f"expected a number > 0, got {value!r}")
    return number


def as_seconds(value: Any) -> int | None:
    """Convert a whole, non-negative number of seconds; ``none`` means None."""
    if value is None:
        return None
    if isinstance(value, str) and value.strip().lower() in {"", "none", "null"}:
        return None
    seconds = as_int(value)
    if seconds < 0:
        raise ValueError(f"expected seconds >= 0, got {value!r}")
    return seconds


def as_list(value: Any) -> list[str]:
    """Convert whitespace- or newline-separated words (or a list) to a list."""
    if isinstance(value, (list, tuple)):
        return [str(item) for item in value]
    return list(aslist(str(value)))


# -- helpers shared by stores --------------------------------------------------


def expires_at(ttl: int | None, clock: Clock = time.time) -> float | None:
    """Return the Unix time at which a record saved now with *ttl* expires."""
    return None if ttl is None else clock() + ttl


class UnavailableOn(contextlib.AbstractContextManager["UnavailableOn"]):
    """Turn *errors* raised inside into ``StoreUnavailableError`` naming *store*.

    A class, not ``@contextmanager``: it guards every operation of the embedded
    stores, and a generator-based one costs a few microseconds each time.
    """

    def __init__(self, store: object, errors: tuple[type[BaseException], ...]) -> None:
        self.store, self.errors = store, errors

    def __exit__(self, kind: object, err: BaseException | None, tb: object) -> None:
        if isinstance(err, self.errors):
            raise StoreUnavailableError(f"{self.store!r}: {err}", self.store) from err


def shown_value(name: str, value: Any, error: Exception) -> str:
    """Return "<value>: <error>" for the setting *name*, safe to print.

    Secrets and passwords are hidden, a URL keeps everything but its
    password, and the converter's own message is scrubbed the same way
    (``int()`` repeats its input, for one).
    """
    lowered = name.lower()
    raw = str(value)
    if "password" in lowered or "secret" in lowered:
        shown = "***"
    elif "url" in lowered and isinstance(value, str):
        shown = mask_url(value)
    else:
        return f"{value!r}: {error}"
    message = str(error).replace(raw, shown) if raw else str(error)
    return f"{shown!r}: {message}"


def mask_url(url: str) -> str:
    """Return *url* with its password replaced by ``***``, for error messages."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable url>"
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)[1]
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{netloc}"))


@runtime_checkable
class SealsCookies(Protocol):
    """A store that keeps the whole session in the cookie (the cookie store).

    The factory hands it the stored form of the session and sets what comes
    back as the cookie value; there is no key, version or server round trip.
    """

    def seal(self, payload: bytes) -> str:
        """Return the cookie value carrying *payload*; raise SessionTooLargeError
        when it would not fit in a cookie."""
        ...

    def unseal(self, value: str) -> tuple[bytes, bool] | None:
        """Return the payload inside a cookie *value* and whether the cookie is
        current (False: sealed with an older key or in a legacy format, so the
        factory re-seals it on the response). None when it is not authentic
        (tampered, truncated, wrong key, not ours)."""
        ...
