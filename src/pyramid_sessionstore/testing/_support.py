"""Helpers of the contract suite: keys, polls, waits and threads released together.

Kept apart from :mod:`.contract` so the suite itself reads as a list of
behaviours; :func:`new_key` and :func:`eventually` are public through
``pyramid_sessionstore.testing``.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import pytest

from ..exceptions import ConflictError
from ..stores.base import Store

__all__ = ["Keys", "Wait", "eventually", "new_key", "refreshed_in_time", "run_together"]
__all__ += ["wait_until_expired", "winners"]

T = TypeVar("T")
#: Lets the given seconds pass for the store (``time.sleep``, or a fake clock moved).
Wait = Callable[[float], None]


def new_key() -> str:
    """Return a fresh key shaped like the ones the factory uses (64 hex digits)."""
    return secrets.token_hex(32)


def eventually(check: Callable[[], T], timeout: float = 6.0, interval: float = 0.05) -> T:
    """Poll *check* until it returns a truthy value; fail after *timeout* seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            pytest.fail(f"condition not met within {timeout}s: {check}")
        time.sleep(interval)


def wait_until_expired(store: Store, key: str, wait: Wait, ttl: int = 1) -> None:
    """Let a record saved with *ttl* expire; fail if it is still there after ten polls.

    Loading refreshes the expiry, so the polls after the first are spaced wider
    than *ttl* plus what a store may add to it (at most half the ttl, SQLite's
    refresh slack) and a server that counts whole seconds (memcached).
    """
    for step in [ttl + 0.2] + [ttl + 1.2] * 9:
        wait(step)
        if store.load(key, ttl) is None:
            return
    pytest.fail(
        f"a record saved with ttl={ttl} was still there after {ttl + 0.2 + 9 * (ttl + 1.2)}s"
    )


def run_together(work: Callable[[int], T], count: int, timeout: float = 30.0) -> list[T]:
    """Run ``work(0)`` ... ``work(count - 1)`` in threads released at once; return the results.

    An exception in any thread fails the caller with that exception (a thread's
    crash would otherwise only be a warning, which a suite without
    ``filterwarnings = error`` never sees).
    """
    barrier = threading.Barrier(count, timeout=timeout)

    def released(n: int) -> T:
        barrier.wait()
        return work(n)

    with ThreadPoolExecutor(count) as pool:
        futures = [pool.submit(released, n) for n in range(count)]
        return [future.result(timeout) for future in futures]


class Keys:
    """Hand out keys and remember them, so teardown can delete them."""

    def __init__(self) -> None:
        self.issued: list[str] = []

    def __call__(self) -> str:
        key = new_key()
        self.issued.append(key)
        return key


def winners(save: Callable[[int], object], count: int) -> list[int]:
    """Return which of *count* threads, released together, ran ``save(n)`` without a conflict.

    Any other exception fails the caller: a crashed thread is not a loser.
    """

    def attempt(n: int) -> bool:
        try:
            save(n)
        except ConflictError:
            return False
        return True

    return [n for n, won in enumerate(run_together(attempt, count)) if won]


def refreshed_in_time(
    store: Store, key: Callable[[], str], refresh: Callable[[str], object]
) -> str:
    """Save a record with ttl=2 under ``key()``, *refresh* it at once; return the key.

    Memcached counts whole seconds: a ttl of 2 may end 1 s after the save. A
    refresh that finds nothing within that second fails; one that comes later
    (a stalled machine) proves nothing either way, so it is tried again.
    """
    for _ in range(3):
        k, started = key(), time.monotonic()
        store.save(k, b"data", 2, None)
        if refresh(k):
            return k
        assert time.monotonic() - started >= 1, "a record saved with ttl=2 is already gone"
    pytest.fail("three records saved with ttl=2 were gone before they could be refreshed")
