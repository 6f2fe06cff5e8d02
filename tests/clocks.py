"""A clock the tests move by hand, for stores and factories that take ``clock=``."""

from __future__ import annotations


class FakeClock:
    """Return ``now``; a test advances time by adding to it."""

    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now
