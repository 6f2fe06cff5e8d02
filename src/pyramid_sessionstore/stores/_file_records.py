"""FileStore's record files on disk: their format, and opening them without trusting the disk.

A record file is a 48-byte header (magic and format version, expiry, version,
length, CRC-32 of version and data), then the data. Anything else at a record's
path (a truncated or foreign file, a directory, a symlink, a FIFO, a socket) is
corruption: these helpers report it, never follow a symlink and never wait on a
FIFO, so the store can treat it as a miss and remove it (issue 10, item 9).
Locking, versions and expiry policy stay in :mod:`.file`.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import math
import os
import shutil
import stat
import struct

security_log = logging.getLogger("pyramid_sessionstore.security")

MAGIC = b"PSSF\x01\x00\x00\x00"  # format name, format version 1, reserved
HEADER = struct.Struct("<8sd16sQI4x")  # magic, expires (inf: never), version, length, crc32
#: What :func:`open_entry` returns instead of a descriptor.
MISSING, NOT_A_FILE = -1, -2


def open_entry(path: str, flags: int) -> int:
    """Open the regular file at *path* with *flags*; return its descriptor.

    Return ``MISSING`` when nothing is there, ``NOT_A_FILE`` when something is
    that is not a regular file, or a shard on the way is not a directory (the
    caller takes the key's lock, which repairs shards or raises if the store's
    directory itself is gone). Never follows a symlink (``O_NOFOLLOW``), never
    blocks on a FIFO (``O_NONBLOCK``).
    """
    try:
        fd = os.open(path, flags | os.O_NOFOLLOW | os.O_NONBLOCK, 0o600)
    except FileNotFoundError:
        return MISSING
    except OSError as err:  # a symlink, a directory opened for writing, a socket
        if err.errno in (errno.ELOOP, errno.EISDIR, errno.ENXIO, errno.EOPNOTSUPP, errno.ENOTDIR):
            return NOT_A_FILE
        raise
    if not stat.S_ISREG(os.fstat(fd).st_mode):  # a directory opened read-only, a FIFO
        os.close(fd)
        return NOT_A_FILE
    return fd


def read_head(fd: int) -> tuple[float, bytes, int, int] | None:
    """Return (expires, version, length, crc) of the record at *fd*; None when malformed."""
    header = os.pread(fd, HEADER.size, 0).ljust(HEADER.size, b"\0")  # short: bad magic or size
    magic, expires, version, length, crc = HEADER.unpack(header)
    # The expiry is outside the checksum: a NaN there would never expire.
    if magic != MAGIC or HEADER.size + length != os.fstat(fd).st_size or math.isnan(expires):
        return None
    return expires, version, length, crc


def peek(path: str, missing: float = -math.inf) -> tuple[float, str]:
    """Return (expires, version) at *path*: expires is -inf when malformed, *missing* when gone."""
    if (fd := open_entry(path, os.O_RDONLY)) < 0:
        return (missing if fd == MISSING else -math.inf), ""
    with open(fd, "rb", buffering=0):
        head = read_head(fd)
    return (-math.inf, "") if head is None else (head[0], head[1].hex())


def remove(path: str, why: str | None, seen: int | None = None) -> None:
    """Remove the entry at *path*, a directory and its contents too; log *why* it was corrupt.

    :param seen: when given, remove a regular file only if it is the one open as
        this descriptor (``NOT_A_FILE``: none), so what a writer has just put in
        place of the corrupt entry stays. Hold the key's lock.
    """
    with contextlib.suppress(FileNotFoundError):
        found = os.lstat(path)
        if seen is not None and stat.S_ISREG(found.st_mode):
            if seen < 0 or not os.path.samestat(os.fstat(seen), found):
                return
        if why:
            security_log.warning("FileStore: removed %s: %s", path, why)
        if stat.S_ISDIR(found.st_mode):  # rmtree removes symlinks inside, never their targets
            shutil.rmtree(path)
        else:
            os.unlink(path)
