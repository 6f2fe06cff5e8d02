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
import os
import re
import secrets as _secrets
from collections.abc import Sequence
from typing import Any
from typing import NamedTuple

__all__ = [
    "CookieValue",
    "Signer",
    "checked_secrets",
    "new_session_id",
    "resolve_secret",
    "secret_setting",
    "secrets_setting",
    "store_key",
    "weak_secret_reason",
]

#: Bytes of randomness in a session id (256 bits).
ID_BYTES = 32
_ID_RE = re.compile(r"\A[A-Za-z0-9_-]{43}\Z")
_TIMEOUT_RE = re.compile(r"\A(?:0|[1-9][0-9]{0,9}|n)\Z")
#: No valid cookie is longer; longer input is rejected before any work.
MAX_COOKIE_LENGTH = 128
#: No valid cookie is shorter: a 43-character id, a dot, a 43-character signature.
MIN_COOKIE_LENGTH = 87
MIN_SECRET_LENGTH = 32
#: Fewer distinct characters than this is not a random secret. 32 random hex
#: digits have fewer with a chance of 4e-8, 43 url-safe characters of 1e-33;
#: "changeme" or "password" repeated have 7.
MIN_SECRET_CHARACTERS = 8
#: How to make a good secret, for error messages.
SECRET_ADVICE = (
    "use 64 random characters, e.g. the output of"
    " python -c 'import secrets; print(secrets.token_urlsafe(48))'"
)
_ENV_PREFIX = "env:"
_ENV_NAME = re.compile(r"\A[A-Za-z_][A-Za-z0-9_]*\Z")
_UNEXPANDED = re.compile(r"\A(?:\$\w+|\$\{\w+\}|%\(\w+\)s|<[^<>]*>)\Z")


def new_session_id() -> str:
    """Return a new random session id (43 url-safe characters, 256 bits)."""
    return _secrets.token_urlsafe(ID_BYTES)


def resolve_secret(value: str) -> str:
    """Return *value*, or the environment variable it names when it is ``env:NAME``.

    The variable is read when this is called (at start-up). A secret is never
    read from anywhere else: a value that does not start with ``env:`` is the
    secret itself.

    :raises ValueError: *NAME* is not a variable name, or the variable is not
        set or is empty; the message names the variable, never a secret.
    """
    if not value.startswith(_ENV_PREFIX):
        return value
    name = value[len(_ENV_PREFIX) :].strip()
    if not _ENV_NAME.match(name):
        raise ValueError(f"env:{name[:40]} does not name an environment variable (env:NAME)")
    resolved = os.environ.get(name, "").strip()
    if not resolved:
        raise ValueError(f"the environment variable {name} (given as env:{name}) is not set")
    return resolved


def weak_secret_reason(secret: str) -> str | None:
    """Return why *secret* must not be used as a secret, or None when it may.

    Refused: a reference that was not expanded (``$NAME``, ``${NAME}``,
    ``%(name)s``, ``<placeholder>``), whitespace (a sentence or an example
    copied as written, not a random string), fewer than
    :data:`MIN_SECRET_LENGTH` characters, fewer than
    :data:`MIN_SECRET_CHARACTERS` distinct characters (``"s" * 64``). These
    catch mistakes, not every weak secret: a random one is the only good one.
    The reason never quotes the secret.
    """
    if _UNEXPANDED.search(secret):
        return "it is a placeholder or a variable that was not expanded (env:NAME reads one)"
    if any(c.isspace() for c in secret):
        return "it contains whitespace, so it is a placeholder or a phrase, not a random string"
    if len(secret) < MIN_SECRET_LENGTH:
        return f"it is {len(secret)} characters long, under the minimum of {MIN_SECRET_LENGTH}"
    distinct = len(set(secret))
    if distinct < MIN_SECRET_CHARACTERS:
        return f"it has only {distinct} distinct characters, so it is not random"
    return None


def checked_secrets(secrets: Sequence[str], name: str = "") -> list[str]:
    """Return *secrets* as a list, after refusing a missing or weak one.

    :param name: the option they come from, put before the message
        (``"secret"`` gives ``"secret: refused: ..."``).
    :raises ValueError: no secret, one that is not a non-empty str, or one that
        :func:`weak_secret_reason` refuses; the message never contains a secret.
    """
    label = f"{name}: " if name else ""
    if isinstance(secrets, (str, bytes)):
        raise ValueError(f"{label}expected a list of secrets, newest first, not one string")
    found = list(secrets)
    if not found:
        raise ValueError(f"{label}at least one secret is needed; {SECRET_ADVICE}")
    for number, secret in enumerate(found, 1):
        reason = weak_secret_reason(secret) if isinstance(secret, str) else "it is not a str"
        if reason is not None:
            which = "refused" if len(found) == 1 else f"secret {number} of {len(found)} is refused"
            raise ValueError(f"{label}{which}: {reason}; {SECRET_ADVICE}")
    return found


def secret_setting(value: Any) -> str:
    """Convert the value of a secret setting: ``env:NAME`` is read, a weak secret refused.

    :raises ValueError: the variable is missing, or :func:`weak_secret_reason`
        refuses the secret; the message never contains the secret.
    """
    return checked_secrets([resolve_secret(str(value).strip())])[0]


def secrets_setting(value: Any) -> list[str]:
    """Convert the value of a secrets setting: one secret per line (or list item), newest first.

    Each line is a secret or ``env:NAME``, and a variable may hold several
    secrets separated by whitespace (``SESSION_SECRETS="new old"``). Blank
    lines are skipped; no secret at all is an empty list (the caller decides
    whether that is an error). Every secret is checked as by :func:`checked_secrets`.
    """
    lines = value if isinstance(value, (list, tuple)) else str(value).splitlines()
    found: list[str] = []
    for line in (str(line).strip() for line in lines):
        if line.startswith(_ENV_PREFIX):
            found.extend(resolve_secret(line).split())
        elif line:
            found.append(line)
    return checked_secrets(found) if found else []


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


def derive_key(secret: str, purpose: bytes) -> bytes:
    """Return a 32-byte key for one *purpose* from *secret* (HMAC-SHA256, RFC 2104).

    A key per purpose, so the same secret used elsewhere (the cookie store's
    encryption, session handles) never yields the same key.
    """
    return hmac.new(secret.encode("utf-8"), purpose, hashlib.sha256).digest()


def _derive(secret: str) -> bytes:
    return derive_key(secret, b"pyramid_sessionstore.cookie-signature")


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
