"""Hostile Cookie headers: reading the session cookie takes time linear in the header.

Issue 10: WebOb's cookie parser, which read quoted session cookies, took time
quadratic in the header (16 KB: seconds). Each shape here is one an attacker
or a messy cookie jar can send; 64 KB is far past what servers accept.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest

from apps import make_app
from pyramid_sessionstore import SessionFactory
from pyramid_sessionstore.cookie_header import MAX_CANDIDATES
from pyramid_sessionstore.cookie_header import CookieHeader

SECRET = "tests-secret-" + "Xb7qL2vN" * 6
COOKIE = CookieHeader(
    "session", max_age=None, path="/", domain=None, secure=False, httponly=True, samesite="Lax"
)
OURS = 'session="ours"'  # found after the junk, so the whole header is scanned

SHAPES: dict[str, Callable[[int], str]] = {
    "all quoted": lambda n: "; ".join(f'c{i}="v\\054{i}"' for i in range(n // 14)),
    "many escapes": lambda n: 'x="' + "\\054\\\\" * (n // 6) + '"',
    "duplicates of our name": lambda n: '; session="\\054x"' * (n // 17),
    "our name, no =": lambda n: "session " * (n // 8),
    "our name between semicolons": lambda n: "session;" * (n // 8),
    "our name inside values": lambda n: "x=" + "session=" * (n // 8),
    "a giant other cookie": lambda n: "big=" + "A" * n,
    "no = at all": lambda n: "a" * n,
    "unbalanced quotes": lambda n: 'x="' + "a" * n,
    "blank runs": lambda n: (";" + " " * 60 + "session" + " " * 60) * (n // 128),
    "only semicolons": lambda n: ";" * n,
}


def hostile(shape: str, size: int) -> dict[str, Any]:
    text = SHAPES[shape](size)
    return {"HTTP_COOKIE": f"{text}; {OURS}"}


def fastest(environ: dict[str, Any], runs: int = 7) -> float:
    """Return the fastest of *runs* reads, in seconds (the least disturbed by load)."""
    best = float("inf")
    for _ in range(runs):
        start = time.perf_counter()
        COOKIE.read_all(environ)
        best = min(best, time.perf_counter() - start)
    return best


@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_a_64_kb_header_is_read_in_linear_time(shape: str) -> None:
    small, large = hostile(shape, 8 * 1024), hostile(shape, 64 * 1024)
    assert len(large["HTTP_COOKIE"]) >= 60 * 1024
    t_small = fastest(small)
    assert t_small < 0.05, f"8 KB took {t_small * 1000:.1f} ms"
    t_large = fastest(large)
    assert t_large < 0.05, f"64 KB took {t_large * 1000:.1f} ms"
    # Eight times the bytes: linear time is about 8x, quadratic 64x. The floor
    # keeps timer noise on microsecond reads from deciding.
    assert t_large <= 16 * max(t_small, 20e-6), (t_small, t_large)
    values = COOKIE.read_all(large)
    assert values == ([",x"] * MAX_CANDIDATES if shape == "duplicates of our name" else ["ours"])


def test_a_hostile_header_costs_a_request_milliseconds_not_seconds() -> None:
    app = make_app(SessionFactory(SECRET))
    junk = SHAPES["no = at all"](64 * 1024)
    start = time.perf_counter()
    res = app.get("/dump", headers={"Cookie": f'session="x"; {junk}'})
    assert time.perf_counter() - start < 1.0
    assert res.json["new"] is True
