"""What two optional features cost per request: encryption at rest and events.

``make bench`` times, next to each of our stores, a twin built with
``session.encrypt = true`` (issue 13: records sealed with AES-GCM), and, next
to ours on memory, a twin whose app has one subscriber,
``config.add_subscriber(lambda event: None, SessionEvent)`` (issue 15). The
twins run in the same rounds as the plain rows, so the difference is paired
round by round (see :mod:`bench.targets`) and drift of this shared machine
cancels out.

A subscriber makes Pyramid itself dispatch its own events (``NewRequest``,
``ContextFound``, ``BeforeTraversal``, ``NewResponse``) on every request,
session or not: the ``/nosession`` difference measures that, and what is left
on ``/read`` beyond it is ours. That twin's role is ``variant``, not ``ours``:
it is not a store configuration, so the store targets (``/nosession`` equal
to the bare app) leave it out.

This module adds the rows (:func:`with_features`), the targets
(:func:`feature_targets`) and a short section of the ``run`` page
(:func:`render`); the tables of every scenario show the rows as well.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from functools import partial
from typing import Any

from pyramid_sessionstore.events import SessionEvent

from .report import fmt_us
from .report import md_table
from .subjects import SQL_TABLE
from .subjects import Subject
from .subjects import _ours
from .targets import Numbers
from .targets import _over
from .targets import _target

__all__ = ["ENCRYPTED", "EVENTS", "feature_targets", "isolated", "render", "with_features"]

#: Per plain row of ours: the store and its options (its own path or prefix, so
#: the sealed records live apart). The cookie store is encrypted already.
ENCRYPTED: dict[str, tuple[str, dict[str, str]]] = {
    "ours-memory": ("memory", {}),
    "ours-file": ("file", {"path": "{workdir}/file-encrypted"}),
    "ours-sqlite": ("sqlite", {"path": "{workdir}/encrypted.sqlite"}),
    "ours-redis": ("redis", {"url": "{redis}", "prefix": "bench:sealed:"}),
    "ours-sql": ("sql", {"url": "{postgresql}", "table": SQL_TABLE}),
    "ours-sql-mariadb": ("sql", {"url": "{mariadb}", "table": SQL_TABLE}),
    "ours-memcached": ("memcached", {"servers": "{memcached}", "prefix": "bench:sealed:"}),
}
#: The plain row of ours the events twin copies.
EVENTS = "ours-memory"
#: Most µs a sealed record may add to a ``/read`` (issue 13).
ENCRYPT_BUDGET_US = 10.0
#: Scenarios the encryption table shows, besides ``/read``.
ENCRYPT_ALSO = ("read-cold", "write", "new")


def encrypted_key(plain: str) -> str:
    """Return the key of the sealed twin of *plain*."""
    return f"{plain}-encrypt"


def events_key() -> str:
    """Return the key of the subscribed twin of :data:`EVENTS`."""
    return f"{EVENTS}-events"


def _ignore(event: Any) -> None:
    """Receive an event and do nothing: the cheapest subscriber there is."""


def _subscribed(plain: Subject) -> Subject:
    def build(ctx: Any) -> Any:
        made = plain.build(ctx)
        made.subscribers = ((_ignore, SessionEvent),)
        made.config["subscriber"] = "config.add_subscriber(lambda e: None, SessionEvent)"
        return made

    return Subject(
        events_key(),
        f"{plain.label}, a SessionEvent subscriber",
        plain.engine,
        "variant",
        build,
        plain.server,
        note="one subscriber that does nothing: Pyramid then also dispatches its own events",
    )


def with_features(rows: list[Subject]) -> list[Subject]:
    """Return *rows* with each feature twin right after the plain row it copies."""
    out: list[Subject] = []
    for row in rows:
        out.append(row)
        if row.key in ENCRYPTED:
            store, options = ENCRYPTED[row.key]
            out.append(
                Subject(
                    encrypted_key(row.key),
                    f"{row.label}, encrypt = true",
                    row.engine,
                    "ours",
                    _ours(store, options, encrypt="true"),
                    row.server,
                )
            )
        if row.key == EVENTS:
            out.append(_subscribed(row))
    return out


# -- the sealing alone -------------------------------------------------------------


def _best_us(call: Callable[[], object], number: int, repeats: int) -> float:
    """Return the least mean CPU µs per call of *call* over *repeats* loops of *number*."""
    best = float("inf")
    for _ in range(repeats):
        start = time.thread_time_ns()
        for _ in range(number):
            call()
        best = min(best, (time.thread_time_ns() - start) / number / 1000)
    return best


def isolated(number: int = 2000, repeats: int = 7) -> dict[str, float]:
    """Time what ``encrypt = true`` adds per record, without a request or a store.

    The same calls the lifecycle makes (``Policy.unpack_record`` on load,
    ``Policy.pack`` on save) on the ``/new`` payload of :mod:`bench.app`,
    sealed and plain, CPU µs per call, best of *repeats* loops (the least
    disturbed by other jobs). ``open_cold`` derives the record key (HKDF) on
    every call, as a read of a session the sealer's key cache no longer holds.
    Store-independent: a store only sees bytes (a sealed record is longer).
    """
    from pyramid_sessionstore import SessionFactory
    from pyramid_sessionstore.payload import Header
    from pyramid_sessionstore.stores import MemoryStore

    from .app import PAYLOAD
    from .subjects import SECRET

    policies = {
        sealed: SessionFactory(secret=SECRET, store=MemoryStore(), encrypt=sealed).policy
        for sealed in (False, True)
    }
    data = policies[False].serializer.dumps(dict(PAYLOAD))
    header = Header(1_700_000_000, 1_700_000_000.5, None, None)
    ids = [secrets.token_urlsafe(32) for _ in range(number)]
    out: dict[str, float] = {"record_bytes": float(len(data))}
    for sealed, policy in policies.items():
        name = "sealed" if sealed else "plain"
        record = policy.pack(ids[0], header, data)
        out[f"{name}_bytes"] = float(len(record))
        opening = partial(policy.unpack_record, ids[0], record)
        out[f"{name}_open"] = _best_us(opening, number, repeats)
        out[f"{name}_pack"] = _best_us(partial(policy.pack, ids[0], header, data), number, repeats)
    sealed_policy = policies[True]
    records = [(i, sealed_policy.pack(i, header, data)) for i in ids]
    cold = float("inf")
    for _ in range(repeats):
        sealer = SessionFactory(secret=SECRET, store=MemoryStore(), encrypt=True).policy
        start = time.thread_time_ns()
        for session_id, record in records:  # every id new to this sealer: HKDF each time
            sealer.unpack_record(session_id, record)
        cold = min(cold, (time.thread_time_ns() - start) / len(records) / 1000)
    out["sealed_open_cold"] = cold
    return {k: round(v, 2) for k, v in out.items()}


# -- numbers -------------------------------------------------------------------


def _added(n: Numbers, plain: str, scenario: str, metric: str = "us") -> float | None:
    """Return the µs the sealed twin of *plain* adds on *scenario* (paired), or None."""
    return _over(n, encrypted_key(plain), plain, scenario, metric)


def _events_net(n: Numbers, metric: str = "us") -> tuple[float, float, float, float] | None:
    """Return (/read difference, /nosession difference, ours, noise) of the subscribed twin."""
    twin = events_key()
    read = _over(n, twin, EVENTS, "read", metric)
    pyramid = _over(n, twin, EVENTS, "nosession", metric)
    if read is None or pyramid is None:
        return None
    noise = max(n.noise(twin, EVENTS, "read", metric), n.noise(twin, EVENTS, "nosession", metric))
    return read, pyramid, read - pyramid, noise


def _sealing_target(sealing: dict[str, float]) -> dict[str, Any]:
    text = (
        f"Encryption, store-independent: opening a sealed record at most {ENCRYPT_BUDGET_US:.0f}"
        " µs more than decoding a plain one (CPU, record key cached)"
    )
    if not sealing:
        return _target("encrypt-open", text, None, "not measured: the sealing was not timed")
    warm = sealing["sealed_open"] - sealing["plain_open"]
    cold = sealing["sealed_open_cold"] - sealing["plain_open"]
    pack = sealing["sealed_pack"] - sealing["plain_pack"]
    measured = (
        f"{warm:+.1f} µs; {cold:+.1f} µs when the key is derived (HKDF); sealing on save"
        f" {pack:+.1f} µs; record {sealing['plain_bytes']:.0f} →"
        f" {sealing['sealed_bytes']:.0f} bytes"
    )
    met = warm <= ENCRYPT_BUDGET_US
    return _target("encrypt-open", text, met, measured, met)


def feature_targets(data: dict[str, Any]) -> list[dict[str, Any]]:
    """Return the targets of issue 13 (encryption) and issue 15 (events) for one run."""
    n = Numbers(data)
    targets = []
    text = (
        f"Encryption at rest (`encrypt = true`): at most {ENCRYPT_BUDGET_US:.0f} µs added per"
        " `/read`, every store (paired with the same store unencrypted)"
    )
    wall = {p: _added(n, p, "read") for p in ENCRYPTED if n.ok(encrypted_key(p)) and n.ok(p)}
    cpu = {p: _added(n, p, "read", "cpu_us") for p in wall}
    if not wall or None in wall.values():
        targets.append(_target("encrypt-read", text, None, "not measured: no sealed twin ran"))
    else:
        parts = [f"{p.removeprefix('ours-')} {v:+.1f}" for p, v in wall.items() if v is not None]
        measured = "µs: " + ", ".join(parts)
        met = all(v is not None and v <= ENCRYPT_BUDGET_US for v in wall.values())
        met_cpu = all(v is not None and v <= ENCRYPT_BUDGET_US for v in cpu.values())
        targets.append(_target("encrypt-read", text, met, measured, met_cpu))
    targets.append(_sealing_target(data.get("sealing") or {}))
    text = (
        "Events: a `SessionEvent` subscriber changes ours on memory `/read` by no more than"
        " the noise, beyond Pyramid's own event dispatch (its `/nosession` difference)"
    )
    found, found_cpu = _events_net(n), _events_net(n, "cpu_us")
    if found is None:
        targets.append(_target("events-read", text, None, "not measured: no subscribed twin ran"))
    else:
        read, pyramid, ours, noise = found
        without, with_ = n.median(EVENTS, "read"), n.median(events_key(), "read")
        measured = (
            f"/read {fmt_us(without)} µs without, {fmt_us(with_)} µs with ({read:+.1f});"
            f" Pyramid's own {pyramid:+.1f} on /nosession; ours {ours:+.1f} (noise ±{noise:.1f})"
        )
        quiet = None if found_cpu is None else abs(found_cpu[2]) <= found_cpu[3]
        targets.append(_target("events-read", text, abs(ours) <= noise, measured, quiet))
    return targets


# -- the section ------------------------------------------------------------------


def _encrypt_rows(n: Numbers) -> list[list[str]]:
    rows = []
    for plain in ENCRYPTED:
        sealed = encrypted_key(plain)
        if not (n.ok(plain) and n.ok(sealed)):
            continue
        added, added_cpu = _added(n, plain, "read"), _added(n, plain, "read", "cpu_us")
        others = [_added(n, plain, sc) for sc in ENCRYPT_ALSO]
        rows.append(
            [
                n.label(plain).removeprefix("ours: "),
                fmt_us(n.median(plain, "read")),
                fmt_us(n.median(sealed, "read")),
                "—" if added is None else f"**{added:+.1f}**",
                f"±{n.noise(sealed, plain, 'read'):.1f}",
                "—" if added_cpu is None else f"{added_cpu:+.1f}",
                *("—" if v is None else f"{v:+.1f}" for v in others),
            ]
        )
    return rows


def _events_rows(n: Numbers) -> list[list[str]]:
    twin, rows = events_key(), []
    for sc in ("nosession", "read", "write", "new"):
        if n.result(EVENTS, sc) is None or n.result(twin, sc) is None:
            continue
        diff, diff_cpu = _over(n, twin, EVENTS, sc), _over(n, twin, EVENTS, sc, "cpu_us")
        rows.append(
            [
                f"`/{sc}`",
                fmt_us(n.median(EVENTS, sc)),
                fmt_us(n.median(twin, sc)),
                "—" if diff is None else f"{diff:+.1f}",
                f"±{n.noise(twin, EVENTS, sc):.1f}",
                "—" if diff_cpu is None else f"{diff_cpu:+.1f}",
            ]
        )
    return rows


def render(data: dict[str, Any]) -> list[str]:
    """Return the lines of the run page's "Encryption and events" section ([] if neither ran)."""
    n = Numbers(data)
    encrypt, events = _encrypt_rows(n), _events_rows(n)
    if not encrypt and not events:
        return []
    out = ["### Encryption at rest and events: what they cost", ""]
    if encrypt:
        header = [
            "store",
            "`/read` µs",
            "`/read` µs, encrypt = true",
            "µs added per `/read`",
            "noise",
            "CPU µs added",
            "added, `/read` cold",
            "added, `/write`",
            "added, `/new`",
        ]
        out += [
            "Each store of ours next to its twin with `session.encrypt = true` (records sealed"
            " with AES-256-GCM under a key derived with HKDF from the session id), in the same"
            ' rounds. "Added" is the median over rounds of the difference within a round;'
            ' "noise" is the larger of the two rows\' inter-quartile ranges and the A/A'
            " difference of the bare app. `/read` goes round 32 sessions, whose derived keys"
            " the sealer keeps; `/read` cold goes round more browsers than that cache holds,"
            f" so every read derives its key. Target: at most {ENCRYPT_BUDGET_US:.0f} µs added"
            " per `/read`.",
            "",
            md_table(header, encrypt),
            "",
        ]
        sealing = data.get("sealing") or {}
        if sealing:
            out += [
                "The sealing alone, without a request or a store (`Policy.unpack_record` and"
                " `Policy.pack` on the `/new` payload, CPU µs per call, best of 7 loops):"
                f" opening a sealed record {sealing['sealed_open']:.1f} µs against"
                f" {sealing['plain_open']:.1f} µs for a plain one,"
                f" {sealing['sealed_open_cold']:.1f} µs when the key is derived (a session the"
                " key cache no longer holds);"
                f" sealing {sealing['sealed_pack']:.1f} µs against {sealing['plain_pack']:.1f} µs;"
                f" the record grows from {sealing['plain_bytes']:.0f} to"
                f" {sealing['sealed_bytes']:.0f} bytes. The work is the same on every store:"
                " differences between the stores' rows above are mostly noise.",
                "",
            ]
    if events:
        header = [
            "scenario",
            "no subscriber µs",
            "one subscriber µs",
            "difference (paired)",
            "noise",
            "CPU difference",
        ]
        out += [
            "Ours on memory with and without one `SessionEvent` subscriber that does nothing."
            " With any subscriber Pyramid dispatches its own events on every request (the"
            " `/nosession` row, where no session code runs); a `/read` or `/write` of an"
            " existing session fires none of ours, `/new` fires `SessionCreated`. With nothing"
            " subscribed, an event is never built: where one could fire, ours reads one"
            " attribute of the registry.",
            "",
            md_table(header, events),
            "",
        ]
    found = _events_net(n)
    if found is not None:
        read, pyramid, ours, noise = found
        out += [
            f"`/read`: {fmt_us(n.median(EVENTS, 'read'))} µs with nothing subscribed,"
            f" {fmt_us(n.median(events_key(), 'read'))} µs with one subscriber (medians over"
            f" rounds); paired round by round the subscriber adds {read:+.1f} µs, of which"
            f" Pyramid's own dispatch (`/nosession`) {pyramid:+.1f} µs, leaving ours"
            f" {ours:+.1f} µs against a noise of ±{noise:.1f} µs.",
            "",
        ]
    return out
