"""ChainStore's cache frames: what a cache holds in front of the store of record.

A frame is a data frame (the store of record's version, when it was last
confirmed there, when the record expires there, the bytes) or a lease (a
placeholder that a fill or a save swaps for a data frame). The chain's
protocol (leases, freshness, the margin) stays in :mod:`.chain`.
"""

from __future__ import annotations

import contextlib
import math
import struct

__all__ = ["DATA", "LEASE", "Frame", "pack", "unpack"]

# Frame: magic, kind (D data, L lease), time, deadline (NaN: none), version length,
# version, data. Session payloads and user indexes start with "{", never NUL.
HEAD = struct.Struct(">6scddH")
MAGIC, DATA, LEASE = b"\x00chain", b"D", b"L"
Frame = tuple[bytes, float, "float | None", str, bytes]


def pack(kind: bytes, at: float, deadline: float | None, version: str, data: bytes) -> bytes:
    """Return the frame of *kind* (``DATA`` or ``LEASE``); *deadline* None: never expires."""
    raw = version.encode()
    nan = math.nan if deadline is None else deadline
    return HEAD.pack(MAGIC, kind, at, nan, len(raw)) + raw + data


def unpack(raw: bytes) -> Frame | None:
    """Return (kind, time, deadline, version, data) of a frame, or None if it is not one."""
    if len(raw) < HEAD.size or not raw.startswith(MAGIC):
        return None
    _, kind, at, deadline, size = HEAD.unpack_from(raw)
    end = HEAD.size + size
    if kind not in (DATA, LEASE) or len(raw) < end:
        return None
    with contextlib.suppress(UnicodeDecodeError):
        version = raw[HEAD.size : end].decode()
        return kind, at, None if math.isnan(deadline) else deadline, version, raw[end:]
    return None
