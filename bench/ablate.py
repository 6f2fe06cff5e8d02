"""What each step of ours costs inside a real request: replace it, measure the saving.

``python -m bench.ablate ours-memory read write new`` runs the scenarios of
:mod:`bench.run` through the real app while one step of our code at a time is
replaced by a near-free stand-in (a memoized result, a constant, a no-op),
and reports how much CPU time per request that saved, against the unchanged
code in the same rounds (paired, interleaved, median over rounds).

The stand-ins are wrong on purpose (a memoized verify accepts what it saw
before; a no-op save stores nothing) and only exist to measure: the numbers
are the in-request cost of each step, cache misses and all, which isolated
micro-benchmarks (``bench.profile --steps``) underestimate.
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import sys
import tempfile
from collections.abc import Callable
from typing import Any

from .runner import SCENARIOS
from .runner import Options
from .runner import Runner
from .subjects import Context
from .subjects import all_subjects
from .wsgi import FakeClock

__all__ = ["main"]

Undo = Callable[[], None]


def _patch(owner: Any, name: str, make: Callable[[Any], Any]) -> Undo:
    """Replace ``owner.name`` by ``make(original)``; return how to undo it."""
    original = getattr(owner, name)
    in_dict = isinstance(owner, type) or name in getattr(owner, "__dict__", {})
    setattr(owner, name, make(original))

    def undo() -> None:
        if in_dict or isinstance(owner, type(sys)):
            setattr(owner, name, original)
        else:
            delattr(owner, name)

    return undo


def _memo(fn: Callable[[Any], Any]) -> Callable[[Any], Any]:
    cache: dict[Any, Any] = {}

    def memoized(arg: Any) -> Any:
        found = cache.get(arg)
        if found is None:
            found = cache[arg] = fn(arg)
        return found

    return memoized


def ablations(factory: Any, scenario: str) -> dict[str, Callable[[], Undo]]:
    """Return the stand-ins that make sense for *factory* on *scenario*."""
    from pyramid_sessionstore import factory as factory_module
    from pyramid_sessionstore import lifecycle

    store, serializer = factory.store, factory.serializer
    reading = scenario.startswith("read")
    found: dict[str, Callable[[], Undo]] = {}
    signer = getattr(factory, "signer", None)
    client_side = getattr(factory, "client_side", False)
    if signer is not None and not client_side:
        cls = type(signer)
        found["cookie signature check (Signer.verify)"] = lambda: _patch(
            cls, "verify", lambda orig: _memo_method(orig)
        )
    if client_side and reading:
        found["cookie decryption (store.unseal)"] = lambda: _patch(
            store, "unseal", lambda orig: _memo(orig)
        )
    if hasattr(factory_module, "store_key") and not client_side:
        found["store key hash (store_key)"] = lambda: _patch(
            factory_module, "store_key", lambda orig: _memo(orig)
        )
    if reading and not client_side:
        found["store.load (the store's read, round trip included)"] = lambda: _patch(
            store, "load", lambda orig: _memo2(orig)
        )
    if hasattr(factory_module, "decode"):
        found["record header decode (payload.decode)"] = lambda: _patch(
            factory_module, "decode", lambda orig: _memo(orig)
        )
    found["data deserialization (serializer.loads)"] = lambda: _patch(
        serializer, "loads", lambda orig: _memo_copy(orig)
    )
    if reading:
        found["whole end-of-request callback (_on_response)"] = lambda: _patch(
            type(factory), "_on_response", lambda orig: lambda self, request, response: None
        )
        found["lifecycle.finish (the save decision, no write on a read)"] = lambda: _patch(
            lifecycle,
            "finish_sealed" if client_side else "finish",
            lambda orig: lambda *args: None,
        )
    else:
        counter = itertools.count()
        found["data serialization (serializer.dumps)"] = lambda: _patch(
            serializer, "dumps", lambda orig: lambda data: b'{"n":%d}' % next(counter)
        )
        found["record header encode (payload.encode)"] = lambda: _patch(
            lifecycle, "encode", lambda orig: _const_header(orig)
        )
        if not client_side:
            found["store.save (the store's write, round trip included)"] = lambda: _patch(
                store, "save", lambda orig: lambda *args: str(next(counter))
            )
        else:
            found["cookie encryption (store.seal)"] = lambda: _patch(store, "seal", _first)
        found["Set-Cookie header (factory.set_cookie)"] = lambda: _patch(
            type(factory), "set_cookie", lambda orig: lambda self, response, value: None
        )
    if scenario == "new" and not client_side:
        ids = itertools.count()
        found["new id (new_session_id)"] = lambda: _patch(
            lifecycle, "new_session_id", lambda orig: lambda: f"{next(ids):043d}"
        )
        if signer is not None:
            found["cookie signing (Signer.sign)"] = lambda: _patch(
                type(signer), "sign", lambda orig: lambda self, sid, *a: sid + ".sig"
            )
    return found


def _memo_method(orig: Callable[..., Any]) -> Callable[..., Any]:
    cache: dict[Any, Any] = {}

    def memoized(self: Any, value: Any) -> Any:
        found = cache.get(value)
        if found is None:
            found = cache[value] = orig(self, value)
        return found

    return memoized


def _memo2(orig: Callable[[Any, Any], Any]) -> Callable[[Any, Any], Any]:
    cache: dict[Any, Any] = {}

    def memoized(key: Any, ttl: Any) -> Any:
        found = cache.get(key)
        if found is None:
            found = cache[key] = orig(key, ttl)
        return found

    return memoized


def _memo_copy(orig: Callable[[Any], Any]) -> Callable[[Any], Any]:
    cache: dict[Any, Any] = {}

    def memoized(data: Any) -> Any:
        found = cache.get(data)
        if found is None:
            found = cache[data] = orig(data)
        return dict(found)  # the session mutates its dict

    return memoized


def _first(orig: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """Return the first real result again and again (a valid, stale cookie)."""
    first: list[Any] = []

    def again(arg: Any) -> Any:
        if not first:
            first.append(orig(arg))
        return first[0]

    return again


def _const_header(orig: Callable[[Any, bytes], bytes]) -> Callable[[Any, bytes], bytes]:
    head: list[bytes] = []

    def encode(header: Any, data: bytes) -> bytes:
        if not head:
            whole = orig(header, data)
            head.append(whole[: len(whole) - len(data)])
        return head[0] + data

    return encode


def measure(runner: Runner, scenario: str, rounds: int, batch: int) -> list[list[str]]:
    """Return table rows: each stand-in's saving on *scenario*, paired with the baseline."""
    sc = next(s for s in SCENARIOS if s.name == scenario)
    variants = ablations(runner.built.factory, scenario)
    runner.batch(sc, batch)
    base: list[float] = []
    with_: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(rounds):
        runner.batch(sc, batch)
        base.append(runner.last_cpu_us)
        for name, apply in variants.items():
            undo = apply()
            try:
                runner.batch(sc, batch)
            finally:
                undo()
            with_[name].append(runner.last_cpu_us)
    rows = [[f"**{scenario}: unchanged**", f"{statistics.median(base):.1f}", "", ""]]
    for name, values in with_.items():
        saved = sorted(b - v for b, v in zip(base, values, strict=True))
        q1, _, q3 = statistics.quantiles(saved, n=4) if len(saved) >= 4 else (0, 0, 0)
        rows.append(
            [
                name,
                f"{statistics.median(values):.1f}",
                f"{statistics.median(saved):.1f}",
                f"{q1:.1f} … {q3:.1f}",
            ]
        )
    return rows


def main(argv: list[str] | None = None) -> int:
    """Print, per scenario, what each step of ours costs inside a request."""
    parser = argparse.ArgumentParser(prog="python -m bench.ablate", description=__doc__)
    parser.add_argument("subject", help="one of ours (python -m bench.run --list)")
    parser.add_argument("scenarios", nargs="*", default=["read", "write", "new"])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--batch", type=int, default=300)
    args = parser.parse_args(argv)
    subject = {s.key: s for s in all_subjects()}[args.subject]
    clock = FakeClock()
    built = subject.build(Context(tempfile.mkdtemp(prefix="bench-ablate-"), clock=clock.now))
    clock.install()
    opts = Options(1, 50, 0.2, 32, 1.0, 10, 1, 0)
    runner = Runner(subject, built, clock, opts)
    bare_subject = next(s for s in all_subjects() if s.key == "bare")
    bare = Runner(bare_subject, bare_subject.build(Context("")), clock, opts)
    try:
        runner.check()
        runner.fill_pool()
        if "read-cold" in args.scenarios:
            runner.fill_cold()
        read = next(s for s in SCENARIOS if s.name == "read")
        bare_us = []
        for _ in range(6):
            bare.batch(read, args.batch)
            bare_us.append(bare.last_cpu_us)
        print(
            f"## {args.subject}: CPU µs/request saved by replacing one step"
            f" (the bare app: {statistics.median(bare_us[1:]):.1f})\n"
        )
        print("| step replaced | µs/request | saved | saved, IQR |\n|---|---|---|---|")
        for scenario in args.scenarios:
            for row in measure(runner, scenario, args.rounds, args.batch):
                print("| " + " | ".join(row) + " |")
    finally:
        clock.uninstall()
        built.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
