"""Count and time a store's calls, per request, for the debug-toolbar panel.

:func:`instrument` puts a :class:`TimedStore` in front of a factory's store.
The store is shared by every request of the process, so the calls are kept
in a :class:`~contextvars.ContextVar` that the panel sets when a request
starts (:func:`recording`) and resets when it is finished; a call made
outside a recorded request (a request the toolbar does not watch, a
script) goes straight through, with only a context-variable read added.

This is a development tool: it is installed only when the toolbar includes
the panel (``debugtoolbar.includes``), never by the library itself.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from collections.abc import Iterator
from contextvars import ContextVar
from contextvars import Token
from dataclasses import dataclass
from dataclasses import field
from typing import Any
from typing import NamedTuple
from typing import TypeVar

from ..stores.base import Record
from ..stores.base import Store

__all__ = ["Recorder", "StoreCall", "TimedStore", "instrument", "recording"]

T = TypeVar("T")

#: How much of a store key a call shows: enough to tell keys apart, as in the
#: library's own log lines, too little to be a session's key.
KEY_PREFIX = 12


class StoreCall(NamedTuple):
    """One call to the store during a request."""

    #: The store method: ``load``, ``save``, ``touch``, ``delete``, ``peek``...
    method: str
    #: The first 12 characters of the key (a hash of the session id), or "".
    key: str
    #: Wall-clock seconds the call took (``time.perf_counter``).
    seconds: float
    #: When it was made: ``view`` (the session was loaded or read) or
    #: ``response`` (the save, after the view returned).
    phase: str
    #: The exception's class name when the call raised, else "".
    error: str = ""


@dataclass
class Recorder:
    """The store calls of one request."""

    calls: list[StoreCall] = field(default_factory=list)
    #: The phase new calls are recorded under (see :attr:`StoreCall.phase`).
    phase: str = "view"

    @property
    def seconds(self) -> float:
        """Return the seconds spent in the store, in total."""
        return sum(call.seconds for call in self.calls)


_RECORDER: ContextVar[Recorder | None] = ContextVar("pyramid_sessionstore_calls", default=None)


def recording() -> tuple[Recorder, Token[Recorder | None]]:
    """Start recording this context's store calls; return the recorder and the reset token.

    Pass the token to :func:`stop` when the request is finished. Recordings
    nest (a request made from inside a view records into its own list and
    gives the outer one back when it finishes).
    """
    recorder = Recorder()
    return recorder, _RECORDER.set(recorder)


def stop(token: Token[Recorder | None]) -> None:
    """Stop the recording *token* started, restoring the one before it."""
    try:
        _RECORDER.reset(token)
    except ValueError:  # made in another context: at least stop recording here
        _RECORDER.set(None)


def _timed(method: str, key: str, call: Callable[..., T], *args: Any) -> T:
    recorder = _RECORDER.get()
    if recorder is None:
        return call(*args)
    error = ""
    start = time.perf_counter()
    try:
        return call(*args)
    except Exception as err:
        error = type(err).__name__
        raise
    finally:
        elapsed = time.perf_counter() - start
        recorder.calls.append(StoreCall(method, key[:KEY_PREFIX], elapsed, recorder.phase, error))


class TimedStore:
    """A store in front of another that records each call (see :func:`instrument`).

    It implements :class:`~pyramid_sessionstore.stores.Store`; the optional
    abilities of the store it wraps (``peek``, ``delete_expired``, ``keys``
    and ``count``) are defined on a subclass made for that store, so
    ``isinstance`` checks against the capability protocols answer as they
    would for the store itself. ``keys()`` is passed through untimed (it is
    a generator; only ``psessions`` uses it). Other attributes are read from
    the wrapped store.
    """

    def __init__(self, inner: Store) -> None:
        #: The store that does the work.
        self.inner = inner

    def __repr__(self) -> str:
        return repr(self.inner)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def load(self, key: str, ttl: int | None) -> Record | None:
        return _timed("load", key, self.inner.load, key, ttl)

    def save(self, key: str, data: bytes, ttl: int | None, expected_version: str | None) -> str:
        return _timed("save", key, self.inner.save, key, data, ttl, expected_version)

    def touch(self, key: str, ttl: int | None) -> bool:
        return _timed("touch", key, self.inner.touch, key, ttl)

    def delete(self, key: str) -> None:
        _timed("delete", key, self.inner.delete, key)

    def close(self) -> None:
        self.inner.close()


def _peek(self: TimedStore, key: str) -> tuple[Record, float | None] | None:
    result: tuple[Record, float | None] | None = _timed("peek", key, self.inner.peek, key)  # type: ignore[attr-defined]
    return result


def _delete_expired(self: TimedStore) -> int:
    removed: int = _timed("delete_expired", "", self.inner.delete_expired)  # type: ignore[attr-defined]
    return removed


def _keys(self: TimedStore) -> Iterator[str]:
    keys: Iterator[str] = self.inner.keys()  # type: ignore[attr-defined]
    return keys


def _count(self: TimedStore) -> int:
    count: int = _timed("count", "", self.inner.count)  # type: ignore[attr-defined]
    return count


_OPTIONAL: dict[str, Callable[..., Any]] = {
    "peek": _peek,
    "delete_expired": _delete_expired,
    "keys": _keys,
    "count": _count,
}


def timed(store: Store) -> TimedStore:
    """Return a :class:`TimedStore` in front of *store*, with *store*'s optional abilities."""
    methods = {
        name: method for name, method in _OPTIONAL.items() if callable(getattr(store, name, None))
    }
    cls: type[TimedStore] = TimedStore
    if methods:
        cls = type(f"Timed{type(store).__name__}", (TimedStore,), methods)
    return cls(store)


def instrument(factory: Any) -> bool:
    """Record the store calls of *factory* (a ``SessionFactory``); return True if it now does.

    Replaces the store of the factory (and of its policy, which the request
    lifecycle reads) by a :class:`TimedStore`, once. The cookie store makes
    no store calls and is left alone, as is anything that is not a
    ``SessionFactory`` of this library.
    """
    from ..factory import SessionFactory

    if not isinstance(factory, SessionFactory) or factory.client_side:
        return False
    if not isinstance(factory.policy.store, TimedStore):
        proxy = timed(factory.policy.store)
        factory.policy.store = proxy
        factory.store = proxy
    return True
