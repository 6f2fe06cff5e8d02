"""``psessions show``: one session's times, user and data.

How the session is named decides what can be shown:

- a cookie value (``id.signature``) or a bare session id: the record is
  loaded and, when it is sealed (``session.encrypt``), opened with the id,
  exactly as the app opens it;
- a store key (64 hex digits): a plain record is shown whole; a sealed one
  only by its clear header (times, its own timeout, whether a user is
  bound). Its key derives from the session id, which the store never holds
  (see :mod:`pyramid_sessionstore.sealing`), so no setting can open it.

With the cookie store the session *is* the cookie: only a cookie value can be
shown. Private to :mod:`.psessions`.
"""

from __future__ import annotations

import json
import pprint
import time
from collections.abc import Callable
from typing import Any
from typing import NamedTuple
from typing import cast

from ..cookies import DEFAULT
from ..cookies import store_key
from ..factory import SessionFactory
from ..payload import CorruptPayloadError
from ..payload import Header
from ..payload import is_tombstone
from ..sealing import is_sealed
from ..sealing import read_header
from ..stores.base import SealsCookies
from ._common import FAILED
from ._common import OK
from ._common import SESSION_ID
from ._common import SESSION_KEY
from ._common import USAGE
from ._common import CommandError
from ._common import when

__all__ = ["show"]

Out = Callable[[str], None]


class _Target(NamedTuple):
    key: str
    #: The session id, when the argument gave it (a key alone does not).
    session_id: str | None
    #: The idle timeout the app would refresh the record's expiry to.
    ttl: int | None


def show(factory: SessionFactory, value: str, out: Out) -> int:
    """Print the session *value* names (cookie value, session id or store key) with *out*.

    Return the exit code.

    :raises CommandError: when there is no such session, or it cannot be read.
    """
    value = value.strip().strip('"')
    if factory.sealer is not None:
        return _show_cookie(factory, factory.sealer, value, out)
    store = factory.store
    key, session_id, ttl = _target(factory, value)
    # load() refreshes the expiry: give it the one the app would give, so
    # looking at a session does not change when it ends.
    loaded_ttl = factory.cap_ttl(ttl, None)
    record = store.load(key, loaded_ttl)
    if record is None or is_tombstone(record.data):
        raise CommandError(FAILED, f"no session {key} in {store!r} (unknown or expired)")
    sealed = is_sealed(record.data)
    data: dict[str, Any] | None = None
    if sealed and session_id is None:
        try:
            clear = read_header(record.data)
        except CorruptPayloadError as exc:
            raise CommandError(FAILED, f"record {key} is not a readable session: {exc}") from exc
        header = Header(clear.created, clear.written, None, clear.timeout)
        userid = "null" if clear.user_tag is None else "(encrypted) a user is bound"
    else:
        header, data = _decode(factory, session_id, record.data, f"record {key}")
        userid = json.dumps(header.userid, default=repr)
    idle = header.timeout if header.timeout is not None else factory.timeout
    right_ttl = factory.cap_ttl(idle, header.created)
    if right_ttl != loaded_ttl:
        store.touch(key, right_ttl)
    out(f"key:      {key}")
    if sealed:
        opened = "opened with the session id" if data is not None else "not opened: a key is no id"
        out(f"sealed:   yes (session.encrypt), {opened}")
    _print_header(factory, header, userid, out)
    expiry = "never" if right_ttl is None else f"{when(time.time() + right_ttl)} (if idle)"
    out(f"expires:  {expiry}")
    if data is None:
        out("data:     (encrypted: give the session cookie value or the session id to open it)")
    else:
        out("data:")
        out(_pretty(data))
    return OK


def _target(factory: SessionFactory, value: str) -> _Target:
    """Return the store key, session id (if given) and idle timeout *value* names."""
    if SESSION_KEY.match(value):
        return _Target(value, None, factory.timeout)
    if SESSION_ID.match(value):
        return _Target(store_key(value), value, factory.timeout)
    if "." in value:
        verified = factory.signer.verify(value)
        if verified is None:
            raise CommandError(FAILED, "not a session cookie signed with these session secrets")
        ttl = factory.timeout
        if verified.timeout is not DEFAULT:
            ttl = cast("int | None", verified.timeout)
        return _Target(store_key(verified.session_id), verified.session_id, ttl)
    raise CommandError(
        USAGE,
        f"show: {value[:80]!r} is neither a session cookie value (id.signature),"
        " a session id (43 characters) nor a store key (64 hex digits)",
    )


def _show_cookie(factory: SessionFactory, store: SealsCookies, value: str, out: Out) -> int:
    if SESSION_KEY.match(value) or SESSION_ID.match(value):
        raise CommandError(
            FAILED,
            f"{store!r} keeps sessions in browser cookies, not on the server:"
            " pass the value of a session cookie to decrypt it",
        )
    unsealed = store.unseal(value)
    if unsealed is None:
        raise CommandError(FAILED, f"not a session cookie that {store!r} can decrypt")
    header, data = _decode(factory, None, unsealed[0], "cookie")
    out(f"cookie:   sealed by {store!r}{'' if unsealed[1] else ' (older key or format)'}")
    _print_header(factory, header, json.dumps(header.userid, default=repr), out)
    out("data:")
    out(_pretty(data))
    return OK


def _decode(
    factory: SessionFactory, session_id: str | None, payload: bytes, what: str
) -> tuple[Header, dict[str, Any]]:
    """Return the header and data of a stored session, opening it with *session_id* if sealed.

    :raises MissingDependencyError: for a sealed record without ``cryptography``.
    """
    try:
        header, raw = factory.policy.unpack(session_id, payload)
    except CorruptPayloadError as exc:
        if is_sealed(payload):  # the id matches the key, so the secrets do not
            raise CommandError(
                FAILED,
                f"{what} is encrypted and does not open with this session id under"
                f" the configured session secrets (rotated away?) or is corrupt: {exc}",
            ) from exc
        raise CommandError(FAILED, f"{what} is not a readable session: {exc}") from exc
    try:
        data = factory.serializer.loads(raw)
    except Exception as exc:  # noqa: BLE001 - any serializer's failure on stored bytes
        raise CommandError(FAILED, f"{what} is not a readable session: {exc}") from exc
    if type(data) is not dict:
        raise CommandError(FAILED, f"{what} is not a readable session: data is not a dict")
    return header, data


def _print_header(factory: SessionFactory, header: Header, userid: str, out: Out) -> None:
    out(f"created:  {when(header.created)}")
    out(f"written:  {when(header.written)}")
    out(f"userid:   {userid}")
    if header.timeout is not None:
        out(f"timeout:  {header.timeout} s (its own, from set_timeout)")
    else:
        out(f"timeout:  {factory.timeout} s (session.timeout)")
    if factory.max_lifetime is not None:
        ends = header.created + factory.max_lifetime
        past = " (passed: the app ends it on its next load)" if ends <= time.time() else ""
        out(f"lifetime: ends {when(ends)}{past}")


def _pretty(data: dict[str, Any]) -> str:
    """Return *data* as indented JSON; values JSON cannot show appear as their repr."""
    try:
        return json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False, default=repr)
    except (TypeError, ValueError):  # keys that are not strings (pickle), cycles
        return pprint.pformat(data)
