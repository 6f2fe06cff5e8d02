"""KeyLocks: one lock per key being written, none left behind; Budget's backoff bounds."""

from __future__ import annotations

import threading
import time

import pytest

from pyramid_sessionstore.contention import BACKOFF_CAP
from pyramid_sessionstore.contention import Budget
from pyramid_sessionstore.contention import KeyLocks
from pyramid_sessionstore.contention import LockTimeout


def test_a_key_has_a_lock_only_while_someone_holds_or_waits_for_it() -> None:
    locks = KeyLocks()
    held = locks.acquire("a")
    assert len(locks) == 1
    locks.release("a", held)
    assert len(locks) == 0
    with locks.hold("b"):
        assert len(locks) == 1
    assert len(locks) == 0


def test_a_second_writer_of_a_key_waits_its_turn_and_times_out() -> None:
    locks = KeyLocks()
    held = locks.acquire("a")
    started = time.monotonic()
    with pytest.raises(LockTimeout, match="stayed locked"):
        locks.acquire("a", timeout=0.05)
    assert time.monotonic() - started >= 0.05
    assert len(locks) == 1  # the waiter left; the holder still holds
    other = locks.acquire("b", timeout=0.05)  # other keys are free
    locks.release("b", other)
    locks.release("a", held)
    assert len(locks) == 0


def test_writers_of_one_key_take_turns() -> None:
    locks = KeyLocks()
    inside: list[int] = []
    overlaps: list[int] = []

    def write() -> None:
        for _ in range(200):
            with locks.hold("k"):
                inside.append(1)
                if len(inside) > 1:
                    overlaps.append(len(inside))
                inside.pop()

    threads = [threading.Thread(target=write) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert overlaps == [] and len(locks) == 0


def test_a_budget_never_sleeps_past_its_deadline() -> None:
    budget = Budget(0.02)
    started = time.monotonic()
    while not budget.spent():
        budget.attempt()
        budget.pause()
    assert time.monotonic() - started < 0.02 + BACKOFF_CAP
    assert budget.left() == 0.0 and budget.attempts >= 1
