"""CookieStore: the whole session in the browser's cookie, encrypted (AES-GCM).

The successor to Pyramid's ``SignedCookieSessionFactory``; the client can
neither read nor change its session. Value: ``1.`` + unpadded url-safe base64
of ``nonce | AES-256-GCM(flag | payload)``, flag 1 meaning zlib-compressed.
Keys come from the secrets by HKDF-SHA256 (RFC 5869) with a salt of this
purpose alone; the newest encrypts, all decrypt. Without secrets of its own the
store uses the factory's (``use_secrets``): its keys still differ from the
factory's signing keys, which are derived for another purpose.
``accept_pyramid_signed`` also reads validly signed ``SignedCookieSessionFactory``
cookies (:mod:`._signedcookie`), so the factory re-issues them.

The factory only calls ``seal`` and ``unseal``. The Store methods keep sealed
values in a process-local "jar" modelling the browser (empty in an app), so the
store runs the shared contract suite. Not a server store: no logout everywhere,
no revocation of a cookie before it expires; a session must fit in a cookie.
"""

from __future__ import annotations

import base64
import logging
import os
import time
import zlib
from collections.abc import Sequence
from typing import ClassVar

from ..cookies import checked_secrets
from ..cookies import resolve_secret
from ..cookies import secret_setting
from ..cookies import secrets_setting
from ..exceptions import ConfigurationError
from ..exceptions import SessionTooLargeError
from ..exceptions import missing_dependency
from ._signedcookie import PyramidKey
from ._signedcookie import b64decode
from ._signedcookie import open_pyramid
from ._signedcookie import pyramid_key
from .base import Clock
from .base import Converter
from .base import Record
from .base import as_bool
from .base import as_int
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


class CookieStore:
    """Keep the whole session in an encrypted cookie.

    :param secret: the secret keys are derived from (64 random characters).
    :param secrets: several secrets, newest first, instead of *secret*.
        Without either, the store takes its factory's (:meth:`use_secrets`).
    :param max_size: the most bytes of ``name=value`` the cookie may take.
        Default: 4093.
    :param compress: zlib-compress payloads when that makes them smaller.
        Default: False (compression leaks length; see the docs).
    :param cookie_name: the cookie's name, counted in *max_size*; the factory
        replaces it with its own (:meth:`use_cookie_name`). Default: ``session``.
    :param accept_pyramid_signed: also read ``SignedCookieSessionFactory``
        cookies. Default: False.
    :param pyramid_secret: the ``secret`` those cookies were signed with.
    :param pyramid_salt: their ``salt``. Default: ``pyramid.session.``.
    :param pyramid_hashalg: their ``hashalg``. Default: ``sha512``.
    :param clock: returns the current Unix time (for the jar's expiry).
    """

    OPTIONS: ClassVar[dict[str, Converter]] = {
        "secret": secret_setting,
        "secrets": secrets_setting,
        "max_size": as_int,
        "compress": as_bool,
        "cookie_name": str,
        "accept_pyramid_signed": as_bool,
        "pyramid_secret": lambda value: resolve_secret(str(value).strip()),
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
        if secret is not None and secrets is not None:
            raise ValueError("secret: give secret or secrets, not both")
        if max_size < 64:
            raise ValueError(f"max_size: must be at least 64 bytes, got {max_size}")
        self.max_size = max_size
        self.compress = compress
        self.cookie_name = cookie_name
        self._ciphers: list[AESGCM] = []
        if secret is not None:
            self._set_keys([secret], "secret")
        elif secrets is not None:
            self._set_keys(secrets, "secrets")
        self._pyramid: PyramidKey | None = None
        if accept_pyramid_signed:
            if not pyramid_secret:
                raise ValueError("pyramid_secret: required with accept_pyramid_signed")
            self._pyramid = pyramid_key(pyramid_secret, pyramid_salt, pyramid_hashalg)
        self._jar = MemoryStore(clock=clock)

    def _set_keys(self, secrets: Sequence[str], name: str) -> None:
        self._ciphers = [AESGCM(self._derive(k)) for k in checked_secrets(secrets, name)]

    @staticmethod
    def _derive(secret: str) -> bytes:
        hkdf = HKDF(algorithm=SHA256(), length=32, salt=_HKDF_SALT, info=_HKDF_INFO)
        return hkdf.derive(secret.encode("utf-8"))

    def use_secrets(self, secrets: Sequence[str]) -> None:
        """Derive the keys from the factory's *secrets* (newest first) if it has none yet.

        :class:`~pyramid_sessionstore.SessionFactory` calls it with its secrets,
        so ``CookieStore()`` needs no secret of its own. A store built with
        *secret* or *secrets*, or already given a factory's, keeps its keys.
        The keys differ from the factory's signing keys (HKDF, this store's salt).

        :raises ValueError: no secret, or one that ``weak_secret_reason`` refuses.
        """
        if not self._ciphers:
            self._set_keys(secrets, "secrets")

    def use_cookie_name(self, name: str) -> None:
        """Count the factory's cookie *name* in ``max_size`` (the factory calls this)."""
        self.cookie_name = name

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
        if not self._ciphers:
            raise ConfigurationError(
                "CookieStore has no secret: give it secret= or secrets=, or make it the"
                " store of a SessionFactory, which gives it its own (use_secrets)"
            )
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
            return open_pyramid(value, *self._pyramid)
        return None

    def _open(self, text: str) -> tuple[bytes, bool] | None:
        raw = b64decode(text)
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
