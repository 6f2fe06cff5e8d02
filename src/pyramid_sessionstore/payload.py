"""The bytes a store keeps for one session: a small JSON header, then the data.

``{"v":1,"c":created,"a":written,"u":userid,"t":timeout}\\n<serialized data>``

The header is always compact JSON written by us (so it holds no raw newline);
the data is whatever the configured serializer produced. Keeping them apart
lets the factory compare the data bytes with what was loaded to decide whether
anything changed, without the timestamps getting in the way.

This module parses bytes from a store, which may be corrupt or written by
something else: :func:`decode` raises :class:`CorruptPayloadError`, never a
parsing error of its own.
"""

from __future__ import annotations

import json
from typing import Any
from typing import NamedTuple

__all__ = ["CorruptPayloadError", "Header", "decode", "encode"]

FORMAT = 1


class CorruptPayloadError(ValueError):
    """The stored bytes are not a session this library wrote."""


class Header(NamedTuple):
    """What the library keeps about a session beside its data."""

    #: Unix time the session was created (whole seconds).
    created: int
    #: Unix time the record was last written.
    written: float
    #: The user bound with ``bind_user``, or None.
    userid: Any = None
    #: The session's own idle timeout from ``set_timeout``, or None for the default.
    timeout: int | None = None


def encode(header: Header, data: bytes) -> bytes:
    """Return the stored form of a session with *header* and serialized *data*."""
    fields: dict[str, Any] = {"v": FORMAT, "c": header.created, "a": round(header.written, 3)}
    if header.userid is not None:
        fields["u"] = header.userid
    if header.timeout is not None:
        fields["t"] = header.timeout
    return json.dumps(fields, separators=(",", ":")).encode("utf-8") + b"\n" + data


def decode(payload: bytes) -> tuple[Header, bytes]:
    """Split a stored session into its header and its serialized data."""
    head, sep, data = payload.partition(b"\n")
    if not sep or not head.startswith(b"{"):
        raise CorruptPayloadError("not a pyramid_sessionstore record")
    try:
        fields = json.loads(head)
        if fields.get("v") != FORMAT:
            raise CorruptPayloadError(f"unknown record format {fields.get('v')!r}")
        created, written = fields["c"], fields["a"]
        timeout = fields.get("t")
        if type(created) is not int or type(written) not in (int, float):
            raise CorruptPayloadError("bad timestamps")
        if timeout is not None and (type(timeout) is not int or timeout < 0):
            raise CorruptPayloadError("bad timeout")
    except (ValueError, TypeError, KeyError, AttributeError) as err:
        raise CorruptPayloadError(f"unreadable record header: {err}") from err
    return Header(created, float(written), fields.get("u"), timeout), data
