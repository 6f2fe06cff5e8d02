"""The session cookie: a random id, signed, with secret rotation.

The cookie value is ``<id>.<signature>``, or ``<id>.<timeout>.<signature>``
for a session whose idle timeout was changed with ``set_timeout`` (the store
expiry must be known before the record is read, and the signature covers it).
The signature is an HMAC-SHA256 of everything before it, under a key derived
from the secret; the newest secret signs, every secret verifies, and the
comparison is constant-time (``hmac.compare_digest``).

The store never sees the id: its key is a SHA-256 of the id, so read access
to the store does not hand out live session ids.

This module parses untrusted input: every malformed value is answered with
None, never an exception.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets as _secrets
from collections.abc import Sequence
from typing import NamedTuple

__all__ = ["CookieValue", "Signer", "new_session_id", "store_key"]

#: Bytes of randomness in a session id (256 bits).
ID_BYTES = 32
_ID_RE = re.compile(r"\A[A-Za-z0-9_-]{43}\Z")
_TIMEOUT_RE = re.compile(r"\A(?:0|[1-9][0-9]{0,9}|n)\Z")
#: No valid cookie is longer; longer input is rejected before any work.
MAX_COOKIE_LENGTH = 128
MIN_SECRET_LENGTH = 32


def new_session_id() -> str:
    """Return a new random session id (43 url-safe characters, 256 bits)."""
    return _secrets.token_urlsafe(ID_BYTES)


def store_key(session_id: str) -> str:
    """Return the store key of *session_id*: a one-way hash, hex."""
    return hashlib.sha256(session_id.encode("ascii")).hexdigest()


class CookieValue(NamedTuple):
    """A verified cookie."""

    session_id: str
    #: The session's own idle timeout, when it differs from the factory's:
    #: seconds, or None for "never expires"; ``DEFAULT`` when not given.
    timeout: int | None | object
    #: True when signed with the newest secret (else the factory re-signs it).
    current: bool = True


#: Marker for "the cookie does not override the factory's timeout".
DEFAULT = object()


def _derive(secret: str) -> bytes:
    # A key per purpose, so the same secret used elsewhere (e.g. by the cookie
    # store's encryption) never yields the same key.
    return hmac.new(
        secret.encode("utf-8"), b"pyramid_sessionstore.cookie-signature", hashlib.sha256
    ).digest()


class _HMAC:
    """HMAC-SHA256 under one key, with the padded key states computed once.

    Equal to ``hmac.digest(key, msg, "sha256")`` (RFC 2104), at a quarter of
    its cost: every request verifies a signature, so this is on the hot path.
    """

    __slots__ = ("_inner", "_outer")

    def __init__(self, key: bytes) -> None:
        block = key.ljust(64, b"\0")  # keys here are 32 bytes, under SHA-256's block
        self._inner = hashlib.sha256(bytes(b ^ 0x36 for b in block))
        self._outer = hashlib.sha256(bytes(b ^ 0x5C for b in block))

    def digest(self, msg: bytes) -> bytes:
        inner = self._inner.copy()
        inner.update(msg)
        outer = self._outer.copy()
        outer.update(inner.digest())
        return outer.digest()


class Signer:
    """Sign and verify session cookies under a list of secrets, newest first."""

    def __init__(self, secrets: Sequence[str]) -> None:
        if not secrets:
            raise ValueError("at least one secret is needed")
        self._keys = [_HMAC(_derive(secret)) for secret in secrets]

    def _signature(self, key: _HMAC, payload: str) -> str:
        digest = key.digest(payload.encode("ascii"))
        return base64.urlsafe_b64encode(digest)[:43].decode("ascii")

    def sign(self, session_id: str, timeout: int | None | object = DEFAULT) -> str:
        """Return the cookie value for *session_id* (and its own *timeout*)."""
        payload = session_id
        if timeout is not DEFAULT:
            payload = f"{session_id}.{'n' if timeout is None else timeout}"
        return f"{payload}.{self._signature(self._keys[0], payload)}"

    def verify(self, value: str | None) -> CookieValue | None:
        """Return the verified contents of a cookie *value*, or None if it is not valid."""
        if not value or len(value) > MAX_COOKIE_LENGTH or not value.isascii():
            return None
        payload, _, signature = value.rpartition(".")
        if not payload:
            return None
        session_id, _, timeout_text = payload.partition(".")
        if not _ID_RE.match(session_id):
            return None
        if timeout_text and not _TIMEOUT_RE.match(timeout_text):
            return None
        index = next(
            (
                i
                for i, key in enumerate(self._keys)
                if hmac.compare_digest(self._signature(key, payload), signature)
            ),
            None,
        )
        if index is None:
            return None
        timeout: int | None | object = DEFAULT
        if timeout_text:
            timeout = None if timeout_text == "n" else int(timeout_text)
        return CookieValue(session_id, timeout, index == 0)
