"""Writers of one session meeting each other: in-process locks and a retry budget.

Two requests of the same session that both change it race on the store's
compare-and-set. Inside one process they never need to: :data:`KEY_LOCKS`
lets them take turns on the final write, so only writers in *other*
processes can make a compare-and-set fail. Those failures are retried
with full-jitter exponential backoff ("Exponential Backoff And Jitter",
AWS Architecture Blog, 2015) inside a time budget, not a fixed count: a
fixed count of immediate retries loses every round under steady
contention, a budget does not.

This module knows nothing of sessions or stores; :mod:`.writes` and
:mod:`.users` use it.
"""

from __future__ import annotations

import os
import random
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["KEY_LOCKS", "Budget", "KeyLocks", "LockTimeout"]

#: First backoff ceiling, in seconds; it doubles on each failed attempt.
BACKOFF_BASE = 0.002
#: Largest backoff ceiling, in seconds.
BACKOFF_CAP = 0.1
#: A writer waits at most this many budgets for its in-process turn.
TURN_FACTOR = 10


class LockTimeout(TimeoutError):
    """A key's lock was not had in time."""


class _Held:
    __slots__ = ("count", "lock")

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.count = 0


class KeyLocks:
    """One lock per key that writers currently hold or wait for; none otherwise.

    Memory is bounded by the number of keys being written at once: a key's
    lock is dropped when its last holder leaves.
    """

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._held: dict[str, _Held] = {}

    @contextmanager
    def hold(self, key: str, timeout: float = -1) -> Iterator[None]:
        """Hold *key*'s lock for the body of the ``with`` block.

        :param timeout: seconds to wait for the lock; -1 waits for ever.
        :raises LockTimeout: when the lock was not had within *timeout*.
        """
        held = self.acquire(key, timeout)
        try:
            yield
        finally:
            self.release(key, held)

    def acquire(self, key: str, timeout: float = -1) -> _Held:
        """Take *key*'s lock and return the token :meth:`release` takes back.

        :meth:`hold` without a generator, for the write path.

        :param timeout: seconds to wait for the lock; -1 waits for ever.
        :raises LockTimeout: when the lock was not had within *timeout*.
        """
        with self._guard:
            held = self._held.get(key)
            if held is None:
                held = self._held[key] = _Held()
            held.count += 1
        if held.lock.acquire(timeout=timeout):
            return held
        self._leave(key, held)
        raise LockTimeout(f"key {key[:12]}… stayed locked for {timeout:.3f} s")

    def release(self, key: str, held: _Held) -> None:
        """Give back *key*'s lock, taken by :meth:`acquire` as *held*."""
        held.lock.release()
        self._leave(key, held)

    def _leave(self, key: str, held: _Held) -> None:
        with self._guard:
            held.count -= 1
            if held.count == 0:
                del self._held[key]

    def __len__(self) -> int:
        return len(self._held)

    def _after_fork(self) -> None:
        # A lock another thread held at fork time stays held in the child forever.
        self._guard = threading.Lock()
        self._held = {}


#: The process-wide table the write path uses.
KEY_LOCKS = KeyLocks()
if hasattr(os, "register_at_fork"):  # pragma: no branch - every POSIX Python has it
    os.register_at_fork(after_in_child=KEY_LOCKS._after_fork)


class Budget:
    """Attempts at a contended compare-and-set, within *timeout* seconds.

    :param timeout: seconds from now after which :meth:`spent` is True.
    """

    __slots__ = ("attempts", "deadline", "timeout")

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self.deadline = time.monotonic() + timeout
        #: Compare-and-set attempts made so far (count them with :meth:`attempt`).
        self.attempts = 0

    def attempt(self) -> None:
        """Count one compare-and-set attempt."""
        self.attempts += 1

    def turn_wait(self) -> float:
        """Return how long a writer may wait for its in-process turn, in seconds.

        Waiting in line behind this process's other writers of the key is
        not losing races: it is bounded apart, by :data:`TURN_FACTOR` times
        the budget, and the budget starts when the turn comes (:meth:`restart`).
        """
        return self.timeout * TURN_FACTOR

    def restart(self) -> None:
        """Start the time budget again from now."""
        self.deadline = time.monotonic() + self.timeout

    def left(self) -> float:
        """Return the seconds left (never negative)."""
        return max(0.0, self.deadline - time.monotonic())

    def spent(self) -> bool:
        """Return True when the time budget has run out."""
        return time.monotonic() >= self.deadline

    def pause(self) -> None:
        """Sleep a full-jitter backoff for the attempts so far, never past the deadline."""
        ceiling = min(BACKOFF_CAP, BACKOFF_BASE * 2 ** min(self.attempts, 16))
        left = self.deadline - time.monotonic()
        delay = min(random.uniform(0, ceiling), left)  # noqa: S311 - jitter, not security
        if delay > 0:
            time.sleep(delay)

    def retry_after(self) -> float:
        """Return a suggested wait before the client retries, in seconds."""
        return max(1.0, self.timeout / 2)
