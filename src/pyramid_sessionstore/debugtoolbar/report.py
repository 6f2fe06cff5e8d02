"""What the debug-toolbar panel shows about one request's session, as plain data.

Everything here reads objects the request already holds (the factory, the
session, the response's headers, the recorded store calls); nothing calls
the store or changes the session. It does not import the toolbar, so it can
be tested and read on its own; :mod:`.panel` hands the result to the
template.

What is never shown: secrets, the session id, the cookie's value, and the
session's CSRF token (each is replaced by ``***``). Store keys are shown by
their first 12 characters, as the library's log lines do.
"""

from __future__ import annotations

import reprlib
from collections.abc import Iterable
from collections.abc import Mapping
from typing import Any
from typing import NamedTuple

from .. import lifecycle
from ..factory import SessionFactory
from ..serializers import Serializer
from ..session import CSRF_KEY
from ..session import Session
from ..stores.base import mask_url
from .timing import Recorder

__all__ = [
    "Row",
    "cookie_decision",
    "data_rows",
    "factory_options",
    "masked_settings",
    "verdict",
]

MASK = "***"
#: Words that make a setting's value a secret.
SECRET_WORDS = ("secret", "password", "passwd", "token", "credential")

_repr = reprlib.Repr()
_repr.maxstring = 200
_repr.maxother = 200
_repr.maxlist = _repr.maxtuple = _repr.maxset = _repr.maxdict = 20
_repr.maxlevel = 4


class Row(NamedTuple):
    """One key of the session, before and after the view."""

    key: str
    #: The value as loaded (its repr, shortened), or None when the key was absent.
    before: str | None
    #: The value at the end of the request, or None when the key is gone.
    after: str | None
    #: ``added``, ``removed``, ``changed`` or "" (unchanged).
    mark: str


def shown(key: str, value: Any) -> str:
    """Return a short repr of *value*, or ``***`` for the CSRF token."""
    if key == CSRF_KEY:
        return f"{MASK} (CSRF token)"
    return _repr.repr(value)


def data_rows(before: Mapping[str, Any] | None, after: Mapping[str, Any]) -> list[Row]:
    """Return one :class:`Row` per key of *before* (None: a new session) or *after*."""
    before = before or {}
    rows = []
    for key in sorted({*before, *after}):
        was = shown(key, before[key]) if key in before else None
        now = shown(key, after[key]) if key in after else None
        if key not in before:
            mark = "added"
        elif key not in after:
            mark = "removed"
        elif _differs(before[key], after[key]):
            mark = "changed"
        else:
            mark = ""
        rows.append(Row(key, was, now, mark))
    return rows


def _differs(old: Any, new: Any) -> bool:
    # Loaded values are freshly decoded, so == compares contents; a type
    # change (1 to True, 1 to 1.0) counts as a change, as it does when saved.
    return type(old) is not type(new) or bool(old != new)


def decoded(serializer: Serializer, data: bytes | None) -> dict[str, Any] | None:
    """Return the session data serialized as *data*, or None (a new session, or undecodable)."""
    if data is None:
        return None
    try:
        value = serializer.loads(data)
    except Exception:  # noqa: BLE001 - any serializer's failure: show "unknown", never a 500
        return None
    return value if type(value) is dict else None


def factory_options(factory: SessionFactory) -> list[tuple[str, str]]:
    """Return the factory's options as (name, value) pairs; secrets are masked."""
    policy = factory.policy
    secrets = len(getattr(factory.signer, "_keys", ())) or 1
    return [
        ("secret", f"{MASK} ({secrets} secret{'s' if secrets > 1 else ''}; the newest signs)"),
        ("cookie_name", repr(factory.cookie_name)),
        ("max_age", repr(factory.max_age)),
        ("path", repr(factory.path)),
        ("domain", repr(factory.domain)),
        ("secure", repr(factory.secure)),
        ("httponly", repr(factory.httponly)),
        ("samesite", repr(factory.samesite)),
        ("timeout", repr(factory.timeout)),
        ("max_lifetime", repr(factory.max_lifetime)),
        ("reissue_time", repr(factory.reissue_time)),
        ("serializer", type(factory.serializer).__name__),
        ("encrypt", repr(policy.encrypt)),
        ("set_on_exception", repr(factory.set_on_exception)),
        ("on_store_error", repr(factory.on_store_error)),
        ("conflict_timeout", f"{factory.conflict_timeout:g} s"),
        ("max_sessions_per_user", repr(policy.max_sessions_per_user)),
        ("record_client", " ".join(sorted(policy.record_client)) or "nothing"),
    ]


def masked_settings(settings: Mapping[str, Any], prefix: str = "session.") -> list[tuple[str, str]]:
    """Return the ``session.*`` settings as (key, value); secrets and URL passwords masked."""
    shown_settings = []
    for key in sorted(k for k in settings if isinstance(k, str) and k.startswith(prefix)):
        value = str(settings[key])
        if any(word in key.lower() for word in SECRET_WORDS):
            value = MASK
        elif "://" in value:
            value = " ".join(mask_url(part) for part in value.split())
        shown_settings.append((key, value))
    return shown_settings


_WRITTEN = (lifecycle.OUTCOME_CREATED, lifecycle.OUTCOME_UPDATED, lifecycle.OUTCOME_MOVED)


def verdict(outcome: str | None, attempts: int) -> str:
    """Return what happened in the store: ``written``, ``conflict-merged``, ``unchanged``,
    ``deleted`` or ``not written``."""
    if outcome in _WRITTEN:
        return "conflict-merged" if attempts > 1 else "written"
    if outcome in (lifecycle.OUTCOME_UNCHANGED, lifecycle.OUTCOME_DELETED):
        return outcome
    return "not written"


def cookie_headers(headers: Iterable[tuple[str, str]], name: str) -> list[str]:
    """Return the attributes of each ``Set-Cookie`` of the cookie *name*, value hidden."""
    found = []
    for header, value in headers:
        if header.lower() != "set-cookie":
            continue
        pair, _, attributes = value.partition(";")
        cookie, _, cookie_value = pair.partition("=")
        if cookie.strip() != name:
            continue
        shown_value = "(empty)" if not cookie_value.strip() else f"{MASK} (value hidden)"
        found.append(f"{name}={shown_value}; {attributes.strip()}".rstrip("; "))
    return found


def cookie_decision(
    factory: SessionFactory, session: Session, outcome: str | None, set_cookies: list[str]
) -> tuple[str, str]:
    """Return what happened to the cookie (``set``, ``expired``, ``not set``) and why."""
    expired = any("max-age=0" in header.lower() for header in set_cookies)
    action = "expired" if expired else "set" if set_cookies else "not set"
    if outcome is None:
        return action, "the response callback did not run (the view raised, and no view answered)"
    if outcome.startswith("not saved"):
        return action, f"{outcome}: nothing was written"
    if factory.client_side and set_cookies:
        return action, "the cookie store keeps the session in the cookie itself"
    why = {
        lifecycle.OUTCOME_NOTHING: "a new session with nothing in it is never stored",
        lifecycle.OUTCOME_CREATED: "a new session was stored: the browser gets its id",
        lifecycle.OUTCOME_MOVED: "the session has a new id (regenerate_id or bind_user)",
        lifecycle.OUTCOME_DELETED: "the session ended (invalidated or emptied): the browser"
        " drops its cookie",
        lifecycle.OUTCOME_ENDED_ELSEWHERE: "another request ended the session first",
        lifecycle.OUTCOME_READ_ONLY: "the store was unreachable at load (on_store_error = fresh)",
    }.get(outcome)
    if why is not None:
        return action, why
    if set_cookies:  # updated or unchanged, and the cookie was re-sent
        if session._timeout_changed:
            return action, "the session's own timeout changed (set_timeout)"
        if session._cookie_stale:
            return action, "the cookie was signed with an older secret or named an older timeout"
        if outcome == lifecycle.OUTCOME_UPDATED:
            return action, "max_age is set: each write renews the cookie's Max-Age"
        return action, "reissue_time has passed since the last write: the Max-Age is renewed"
    if outcome == lifecycle.OUTCOME_UPDATED:
        return action, "same id: the browser's cookie still names this session"
    return action, "nothing changed and no cookie refresh was due (reissue_time)"


def store_summary(recorder: Recorder | None) -> dict[str, Any]:
    """Return the store calls of the request, counted and timed per phase."""
    calls = list(recorder.calls) if recorder is not None else []
    phases = {}
    for phase in ("view", "response"):
        mine = [call for call in calls if call.phase == phase]
        phases[phase] = (len(mine), sum(call.seconds for call in mine) * 1000)
    return {
        "calls": [
            (call.phase, call.method, call.key, f"{call.seconds * 1000:.3f}", call.error)
            for call in calls
        ],
        "round_trips": len(calls),
        "milliseconds": f"{sum(call.seconds for call in calls) * 1000:.3f}",
        "phases": {phase: (n, f"{ms:.3f}") for phase, (n, ms) in phases.items()},
    }
