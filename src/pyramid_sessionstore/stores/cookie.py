"""CookieStore: the whole session in the browser's cookie, encrypted (AES-GCM).

The successor to Pyramid's ``SignedCookieSessionFactory``; the client can
neither read nor change its session. Value: ``1.`` + unpadded url-safe base64
of ``nonce | AES-256-GCM(flag | payload)``, flag 1 meaning zlib-compressed.
Keys come from the secrets by HKDF-SHA256 with a salt of this purpose alone;
the newest encrypts, all decrypt. ``accept_pyramid_signed`` also reads validly
signed ``SignedCookieSessionFactory`` cookies, so the factory re-issues them.

The factory only calls ``seal`` and ``unseal``. The Store methods keep sealed
values in a process-local "jar" modelling the browser (empty in an app), so the
store runs the shared contract suite. Not a server store: no logout everywhere,
no revocation of a cookie before it expires; a session must fit in a cookie.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import logging
import os
import re
import time
import zlib
from collections.abc import Sequence
from typing import ClassVar

from ..exceptions import SessionTooLargeError
from ..exceptions import missing_dependency
from ..payload import Header
from ..payload import encode
from ..serializers import JSONSerializer
from ..serializers import SerializationError
from .base import Clock
from .base import Converter
from .base import Record
from .base import as_bool
from .base import as_int
from .base import as_list
from .memory import MemoryStore

try:
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM
    from cryptography.hazmat.primitives.hashes import SHA256
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF
except ImportError:  # pragma: no cover - exercised by monkeypatching AESGCM
    AESGCM = None  # type: ignore[assignment,misc]

__all__ = ["CookieStore"]

log = logging.getLogger(__name__)
security_log = logging.getLogger("pyramid_sessionstore.security")

PREFIX = "1."
_AAD = b"pyramid_sessionstore.cookie-store.v1"
_HKDF_SALT, _HKDF_INFO = b"pyramid_sessionstore.cookie-store", b"aes-256-gcm key v1"
_NONCE, _TAG = 12, 16
MAX_PLAINTEXT = 1024 * 1024  # seal refuses more, unseal inflates no more
_ADVICE = "keep less in the session, or use a server store (session.store = redis, ...)"
_B64URL = re.compile(r"[A-Za-z0-9_-]+")


def _b64decode(text: str) -> bytes | None:
    if not _B64URL.fullmatch(text):
        return None
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        return None


def _open_pyramid(text: str, salted: bytes, hashalg: str, size: int) -> tuple[bytes, bool] | None:
    """Read a ``SignedCookieSessionFactory`` cookie: base64(HMAC | JSON)."""
    raw = _b64decode(text)
    if raw is None or len(raw) <= size:
        return None
    signature, body = raw[:size], raw[size:]
    if not hmac.compare_digest(signature, hmac.new(salted, body, hashalg).digest()):
        return None
    try:
        accessed, created, state = json.loads(body.decode("utf-8"))
        accessed, created = float(accessed), float(created)
        if type(state) is not dict or not (0 <= created < 2**40 and 0 <= accessed < 2**40):
            raise ValueError("not (accessed, created, dict) with plausible times")
        return encode(Header(int(created), accessed), JSONSerializer().dumps(state)), False
    except (ValueError, TypeError, SerializationError) as err:
        security_log.warning("a signed Pyramid session cookie is unreadable: %s", err)
        return None


class CookieStore:
    """Keep the whole session in an encrypted cookie.

    :param secret: the secret keys are derived from (64 random characters).
    :param secrets: several secrets, newest first, instead of *secret*.
    :param max_size: the most bytes of ``name=value`` the cookie may take.
        Default: 4093.
    :param compress: zlib-compress payloads when that makes them smaller.
        Default: False (compression leaks length; see the docs).
    :param cookie_name: the factory's, counted in *max_size*. Default: ``session``.
    :param accept_pyramid_signed: also read ``SignedCookieSessionFactory``
        cookies. Default: False.
    :param pyramid_secret: the ``secret`` those cookies were signed with.
    :param pyramid_salt: their ``salt``. Default: ``pyramid.session.``.
    :param pyramid_hashalg: their ``hashalg``. Default: ``sha512``.
    :param clock: returns the current Unix time (for the jar's expiry).
    """

    OPTIONS: ClassVar[dict[str, Converter]] = {
        "secret": str,
        "secrets": as_list,
        "max_size": as_int,
        "compress": as_bool,
        "cookie_name": str,
        "accept_pyramid_signed": as_bool,
        "pyramid_secret": str,
        "pyramid_salt": str,
        "pyramid_hashalg": str,
    }
    CODE_ONLY: ClassVar[frozenset[str]] = frozenset({"clock"})

    def __init__(
        self,
        *,
        secret: str | None = None,
        secrets: Sequence[str] | None = None,
        max_size: int = 4093,
        compress: bool = False,
        cookie_name: str = "session",
        accept_pyramid_signed: bool = False,
        pyramid_secret: str | None = None,
        pyramid_salt: str = "pyramid.session.",
        pyramid_hashalg: str = "sha512",
        clock: Clock = time.time,
    ) -> None:
        if AESGCM is None:
            raise missing_dependency("CookieStore", "cryptography", "cookie")
        keys = [secret] if secret is not None else list(secrets or ())
        if (secret is None) == (secrets is None) or not keys or not all(keys):
            raise ValueError("give one of session.cookie.secret or .secrets, not empty")
        if any(len(k) < 32 for k in keys):
            security_log.warning("a cookie store secret is shorter than 32 characters")
        if max_size < 64:
            raise ValueError(f"max_size must be at least 64 bytes, got {max_size}")
        self.max_size = max_size
        self.compress = compress
        self.cookie_name = cookie_name
        self._ciphers = [AESGCM(self._derive(k)) for k in keys]
        self._pyramid: tuple[bytes, str, int] | None = None
        if accept_pyramid_signed:
            if not pyramid_secret:
                raise ValueError("accept_pyramid_signed needs session.cookie.pyramid_secret")
            digest_size = hashlib.new(pyramid_hashalg).digest_size  # ValueError if unknown
            try:  # webob.cookies.SignedSerializer: latin-1, else utf-8 for both
                salted = pyramid_salt.encode("latin-1") + pyramid_secret.encode("latin-1")
            except UnicodeEncodeError:
                salted = pyramid_salt.encode() + pyramid_secret.encode()
            self._pyramid = (salted, pyramid_hashalg, digest_size)
        self._jar = MemoryStore(clock=clock)

    @staticmethod
    def _derive(secret: str) -> bytes:
        hkdf = HKDF(algorithm=SHA256(), length=32, salt=_HKDF_SALT, info=_HKDF_INFO)
        return hkdf.derive(secret.encode("utf-8"))

    def __repr__(self) -> str:
        return f"CookieStore(max_size={self.max_size}, compress={self.compress})"

    # -- SealsCookies: what the factory uses ------------------------------------

    def _too_large(self, size: int, limit: int, what: str) -> SessionTooLargeError:
        message = f"the session {what} is {size} bytes, over the limit of {limit}; {_ADVICE}"
        log.error("%s", message)
        return SessionTooLargeError(message, size, limit)

    def seal(self, payload: bytes) -> str:
        """Return the cookie value carrying *payload*, encrypted with the newest key."""
        if len(payload) > MAX_PLAINTEXT:
            raise self._too_large(len(payload), MAX_PLAINTEXT, "payload")
        flag, body = 0, payload
        if self.compress:
            packed = zlib.compress(payload, 6)
            if len(packed) < len(payload):
                flag, body = 1, packed
        # Check the size before encrypting: base64 of n bytes is (4n + 2) // 3 chars.
        sealed_len = _NONCE + 1 + len(body) + _TAG
        size = len(self.cookie_name) + 1 + len(PREFIX) + (4 * sealed_len + 2) // 3
        if size > self.max_size:
            raise self._too_large(size, self.max_size, "cookie")
        nonce = os.urandom(_NONCE)
        box = self._ciphers[0].encrypt(nonce, bytes((flag,)) + body, _AAD)
        return PREFIX + base64.urlsafe_b64encode(nonce + box).rstrip(b"=").decode("ascii")

    def unseal(self, value: str) -> tuple[bytes, bool] | None:
        """Return (payload, sealed with the newest key) from *value*, or None; never raise."""
        if not value or len(value) > max(self.max_size, 4096) * 2 or not value.isascii():
            return None
        if value.startswith(PREFIX):
            return self._open(value[len(PREFIX) :])
        if self._pyramid is not None and "." not in value:
            return _open_pyramid(value, *self._pyramid)
        return None

    def _open(self, text: str) -> tuple[bytes, bool] | None:
        raw = _b64decode(text)
        if raw is None or len(raw) < _NONCE + 1 + _TAG:
            return None
        nonce, box = raw[:_NONCE], raw[_NONCE:]
        for index, cipher in enumerate(self._ciphers):
            try:
                plain = cipher.decrypt(nonce, box, _AAD)
            except InvalidTag:
                continue
            if plain[0] == 0:  # the flag byte: 0 stored, 1 zlib
                return plain[1:], index == 0
            inflater = zlib.decompressobj()
            try:
                payload = inflater.decompress(plain[1:], MAX_PLAINTEXT)
            except zlib.error:
                return None
            whole = plain[0] == 1 and inflater.eof and not inflater.unconsumed_tail
            return (payload, index == 0) if whole else None
        return None

    # -- Store: sealed values in a MemoryStore, the browser's cookie jar ----------

    def load(self, key: str, ttl: int | None) -> Record | None:
        record = self._jar.load(key, ttl)
        if record is None:
            return None
        unsealed = self.unseal(record.data.decode("ascii"))  # sealed here: it opens
        return None if unsealed is None else Record(unsealed[0], record.version)

    def save(self, key: str, data: bytes, ttl: int | None, expected_version: str | None) -> str:
        return self._jar.save(key, self.seal(bytes(data)).encode("ascii"), ttl, expected_version)

    def touch(self, key: str, ttl: int | None) -> bool:
        return self._jar.touch(key, ttl)

    def delete(self, key: str) -> None:
        self._jar.delete(key)

    def close(self) -> None:
        """Nothing to release: the keys live as long as the object."""
