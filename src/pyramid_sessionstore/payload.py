"""The bytes a store keeps for one session: a small binary header, then the data.

Layout (little-endian): the 4-byte magic ``PSS\\x01``; created (int64),
written (float64), own timeout (int32, -1 for none), userid length (uint16);
the userid (``s`` + UTF-8 for a str, ``i`` + digits for an int, empty for
none); then whatever the configured serializer produced.

Keeping the header apart from the data lets the factory compare the data
bytes with what was loaded to decide whether anything changed, without the
timestamps getting in the way; packing it with :mod:`struct` keeps a read
cheap (a JSON header cost more than the rest of the decoding).

This module parses bytes from a store, which may be corrupt or written by
something else: :func:`decode` raises :class:`CorruptPayloadError`, never a
parsing error of its own.
"""

from __future__ import annotations

import struct
from typing import Any
from typing import NamedTuple

__all__ = [
    "TOMBSTONE",
    "CorruptPayloadError",
    "Header",
    "decode",
    "decode_userid",
    "encode",
    "encode_userid",
    "is_tombstone",
]

MAGIC = b"PSS\x01"
_FIXED = struct.Struct("<4sqdiH")
_NO_TIMEOUT = -1
#: What a session's old key holds for a moment while it moves to a new id
#: (``regenerate_id``): it reads as "no session", and it keeps a compare-and-set
#: on the old key meaningful until the move is finished.
TOMBSTONE = b"PSS\x00moved"


class CorruptPayloadError(ValueError):
    """The stored bytes are not a session this library wrote."""


class Header(NamedTuple):
    """What the library keeps about a session beside its data."""

    #: Unix time the session was created (whole seconds).
    created: int
    #: Unix time the record was last written.
    written: float
    #: The user bound with ``bind_user`` (a str or an int), or None.
    userid: Any = None
    #: The session's own idle timeout from ``set_timeout``, or None for the default.
    timeout: int | None = None


def encode_userid(userid: Any) -> bytes:
    """Return the stored form of a user id (``s`` + UTF-8, ``i`` + digits, or empty)."""
    if userid is None:
        return b""
    if type(userid) is str:
        return b"s" + userid.encode("utf-8")
    if type(userid) is int:
        return b"i" + str(userid).encode("ascii")
    raise TypeError(f"userid must be a str or int, not {type(userid).__name__}")


def decode_userid(raw: bytes) -> Any:
    """Return the user id stored as *raw* (see :func:`encode_userid`).

    :raises CorruptPayloadError: when *raw* is not one.
    """
    if not raw:
        return None
    try:
        if raw[:1] == b"s":
            return raw[1:].decode("utf-8")
        if raw[:1] == b"i":
            return int(raw[1:].decode("ascii"))
    except (UnicodeDecodeError, ValueError) as err:
        raise CorruptPayloadError(f"bad userid: {err}") from err
    raise CorruptPayloadError("bad userid tag")


def encode(header: Header, data: bytes) -> bytes:
    """Return the stored form of a session with *header* and serialized *data*."""
    userid = encode_userid(header.userid)
    timeout = _NO_TIMEOUT if header.timeout is None else header.timeout
    fixed = _FIXED.pack(MAGIC, header.created, header.written, timeout, len(userid))
    return b"".join((fixed, userid, data))


def is_tombstone(payload: bytes) -> bool:
    """Return True if *payload* marks a session that moved to a new id."""
    return payload == TOMBSTONE


def decode(payload: bytes) -> tuple[Header, bytes]:
    """Split a stored session into its header and its serialized data."""
    try:
        magic, created, written, timeout, userid_len = _FIXED.unpack_from(payload)
    except struct.error as err:
        raise CorruptPayloadError(f"not a pyramid_sessionstore record: {err}") from err
    if magic != MAGIC:
        raise CorruptPayloadError("not a pyramid_sessionstore record (bad magic)")
    if timeout < _NO_TIMEOUT:
        raise CorruptPayloadError(f"bad timeout {timeout}")
    start = _FIXED.size
    end = start + userid_len
    if len(payload) < end:
        raise CorruptPayloadError("truncated record")
    userid = decode_userid(payload[start:end])
    own_timeout = None if timeout == _NO_TIMEOUT else timeout
    return Header(created, written, userid, own_timeout), payload[end:]
