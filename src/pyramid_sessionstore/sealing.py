"""Encryption at rest: each session record sealed under a key only its cookie unlocks.

With ``encrypt=True`` a record is sealed with AES-256-GCM (NIST SP 800-38D)
under a key derived with HKDF-SHA256 (RFC 5869) from the *session id* as the
input keying material, with a salt derived from the application's secret.
The store holds only a hash of the id, so a dump of the store, even with
every secret in the application's configuration, opens no record: the id
lives only in the browser's cookie. The secret is mixed in so that a stolen
cookie alone does not open a record copied out of the store either.

A sealed record, byte by byte (little-endian)::

    b"PSS\\x02" | created int64 | written float64 | own timeout int32 (-1: none)
    | reserved uint8 (0) | user tag (16 bytes, zeros: no user)
    | nonce (12 bytes) | AES-GCM(userid + data) with everything before the nonce as AAD

What stays readable without the id, so that ``psessions stats/gc`` and the
active-sessions list work: the times, the session's own timeout, and a keyed
hash of the user id (an HMAC under a key from the secret, not the id itself).
Those fields are authenticated: changing any of them fails the tag.

This module parses bytes from a store: a record that does not open raises
:class:`~.payload.CorruptPayloadError`, never anything else.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import struct
from collections.abc import Sequence
from typing import TYPE_CHECKING
from typing import Any
from typing import NamedTuple

from .cookies import derive_key
from .exceptions import missing_dependency
from .payload import CorruptPayloadError
from .payload import Header
from .payload import decode_userid
from .payload import encode_userid

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

__all__ = ["SEALED_MAGIC", "RecordSealer", "SealedHeader", "is_sealed"]

SEALED_MAGIC = b"PSS\x02"
_CLEAR = struct.Struct("<4sqdiB16s")
_NONCE = 12
_NO_USER = bytes(16)
_INFO = b"pyramid_sessionstore.record-key v1"
#: Session keys remembered per sealer (about 200 bytes each).
KEY_CACHE_SIZE = 10_000


class SealedHeader(NamedTuple):
    """What a sealed record shows without its session id."""

    created: int
    written: float
    timeout: int | None
    #: A keyed hash of the bound user id (see :meth:`RecordSealer.user_tag`), or None.
    user_tag: bytes | None


def is_sealed(payload: bytes) -> bool:
    """Return True if *payload* is a sealed record."""
    return payload[:4] == SEALED_MAGIC


class RecordSealer:
    """Seal and open session records under keys derived from session ids.

    :param secrets: the factory's secrets, newest first: the newest seals,
        every one opens (so rotating the secret re-seals records as they change;
        the newest is tried first).
    :raises MissingDependencyError: without the ``cryptography`` package.
    """

    def __init__(self, secrets: Sequence[str]) -> None:
        # Imported here: importing the package loads no optional driver.
        try:
            from cryptography.exceptions import InvalidTag
            from cryptography.hazmat.primitives.ciphers.aead import AESGCM
            from cryptography.hazmat.primitives.hashes import SHA256
            from cryptography.hazmat.primitives.kdf.hkdf import HKDF
        except ImportError as err:
            raise missing_dependency("encrypt=True", "cryptography", "cookie") from err
        self._invalid_tag, self._aesgcm, self._sha256, self._hkdf = InvalidTag, AESGCM, SHA256, HKDF
        self._salts = [derive_key(s, b"pyramid_sessionstore.record-salt") for s in secrets]
        self._tag_keys = [derive_key(s, b"pyramid_sessionstore.user-tag") for s in secrets]
        self._keys: dict[tuple[str, int], AESGCM] = {}

    def _aead(self, session_id: str, number: int) -> AESGCM:
        known = self._keys.get((session_id, number))
        if known is None:
            hkdf = self._hkdf(self._sha256(), 32, self._salts[number], _INFO)
            known = self._aesgcm(hkdf.derive(session_id.encode("ascii")))
            if len(self._keys) >= KEY_CACHE_SIZE:
                self._keys.clear()
            self._keys[session_id, number] = known
        return known

    def user_tag(self, userid: Any, number: int = 0) -> bytes:
        """Return the keyed hash of *userid* kept in the clear (16 bytes)."""
        raw = encode_userid(userid)
        return hmac.new(self._tag_keys[number], raw, hashlib.sha256).digest()[:16]

    def tags_of(self, userid: Any) -> set[bytes]:
        """Return *userid*'s tag under every secret (a record may predate a rotation)."""
        return {self.user_tag(userid, n) for n in range(len(self._tag_keys))}

    def seal(self, session_id: str, header: Header, data: bytes) -> bytes:
        """Return the sealed record of a session with *header* and serialized *data*."""
        tag = _NO_USER if header.userid is None else self.user_tag(header.userid)
        timeout = -1 if header.timeout is None else header.timeout
        clear = _CLEAR.pack(SEALED_MAGIC, header.created, header.written, timeout, 0, tag)
        userid = encode_userid(header.userid)
        inner = struct.pack("<H", len(userid)) + userid + data
        nonce = os.urandom(_NONCE)
        return b"".join((clear, nonce, self._aead(session_id, 0).encrypt(nonce, inner, clear)))

    def open(self, session_id: str, payload: bytes) -> tuple[Header, bytes]:
        """Return the header and serialized data of a sealed record.

        :raises CorruptPayloadError: as :meth:`open_record`.
        """
        header, data, _ = self.open_record(session_id, payload)
        return header, data

    def open_record(self, session_id: str, payload: bytes) -> tuple[Header, bytes, bool]:
        """Return the header and serialized data of a sealed record, and whether an
        older secret sealed it (so it should be sealed again under the newest).

        :raises CorruptPayloadError: when the record is not one, or does not
            authenticate under this id and any of the secrets.
        """
        clear_header = read_header(payload)
        end = _CLEAR.size + _NONCE
        nonce, clear = payload[_CLEAR.size : end], payload[: _CLEAR.size]
        inner = None
        for candidate in range(len(self._salts)):
            try:
                inner = self._aead(session_id, candidate).decrypt(nonce, payload[end:], clear)
                break
            except self._invalid_tag:
                continue
        if inner is None:
            raise CorruptPayloadError("the record does not authenticate under this session id")
        (length,) = struct.unpack_from("<H", inner)
        userid = decode_userid(inner[2 : 2 + length])
        header = Header(clear_header.created, clear_header.written, userid, clear_header.timeout)
        return header, inner[2 + length :], candidate > 0


def read_header(payload: bytes) -> SealedHeader:
    """Return the clear fields of a sealed record (no key needed).

    :raises CorruptPayloadError: when *payload* is not a sealed record.
    """
    try:
        magic, created, written, timeout, _, tag = _CLEAR.unpack_from(payload)
    except struct.error as err:
        raise CorruptPayloadError(f"not a sealed record: {err}") from err
    if magic != SEALED_MAGIC or timeout < -1 or len(payload) < _CLEAR.size + _NONCE + 16:
        raise CorruptPayloadError("not a sealed record")
    own = None if timeout == -1 else timeout
    return SealedHeader(created, written, own, None if tag == _NO_USER else tag)
