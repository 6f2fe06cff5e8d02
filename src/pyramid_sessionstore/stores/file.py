"""FileStore: one file per record in a sharded directory, for a single machine.

A record is ``<path>/<k0k1>/<k2k3>/<key>``: a 48-byte header (magic and format
version, expiry, version, length, CRC-32), then the data. A write goes to a
temp file in the same directory, fsynced, renamed over the record: a reader, or
a writer killed mid-write, sees the old record or the new one, never a torn one.
Compare-and-set holds a lock per key (``flock`` on ``<key>.lock`` behind a
striped thread lock). ``load`` and ``touch`` rewrite the expiry in place with
one ``pwrite``, not fsynced; ``peek`` only reads. Anything at a record's path that is not a record
file is a miss and is removed; no path is followed through a symlink.

Not for network filesystems nor many machines (use ``redis`` or ``sql``); does
not expire anything by itself (run ``psessions gc``)."""

from __future__ import annotations

import contextlib
import fcntl
import glob
import math
import os
import re
import secrets
import stat
import struct
import tempfile
import threading
import time
import zlib
from collections.abc import Iterator
from typing import Any
from typing import ClassVar

from ..exceptions import ConflictError
from ._file_records import HEADER
from ._file_records import MAGIC
from ._file_records import NOT_A_FILE
from ._file_records import open_entry
from ._file_records import peek
from ._file_records import read_head
from ._file_records import remove
from .base import Clock
from .base import Converter
from .base import Record
from .base import UnavailableOn
from .base import as_bool
from .base import as_int

__all__ = ["FileStore"]

_KEY = re.compile(r"[0-9a-z_-]{1,200}\Z")  # a file name, even on case-insensitive disks
_Found = tuple[Record, float] | None  # a live record (data only if read) and its expiry (inf)


def _as_mode(value: Any) -> int:
    """Convert an octal permission such as ``0600`` (or an int)."""
    return int(value, 8) if isinstance(value, str) else as_int(value)


class FileStore:
    """Keep each record in its own file under *path*.

    :param path: the directory; created (mode 0700) when missing.
    :param mode: permission bits of record files. Default: ``0600``.
    :param shard_depth: levels of two-character sub-directories, 0 to 3. Default: 2.
    :param fsync: fsync each record before renaming it into place. Default: true.
    :param clock: returns the current Unix time; tests pass a fake one.
    """

    OPTIONS: ClassVar[dict[str, Converter]] = {"path": str, "mode": _as_mode}
    OPTIONS |= {"shard_depth": as_int, "fsync": as_bool}
    CODE_ONLY: ClassVar[frozenset[str]] = frozenset({"clock"})
    #: Temp files older than this (seconds) were left by a dead writer; gc removes them.
    TEMP_MAX_AGE: ClassVar[float] = 300.0

    def __init__(
        self,
        *,
        path: str | os.PathLike[str],
        mode: int = 0o600,
        shard_depth: int = 2,
        fsync: bool = True,
        clock: Clock = time.time,
    ) -> None:
        if not 0 <= shard_depth <= 3:
            raise ValueError(f"shard_depth must be between 0 and 3, got {shard_depth}")
        self.path = os.path.abspath(os.fspath(path))
        self.mode, self.shard_depth, self.fsync = mode, shard_depth, fsync
        self._clock, self._guard = clock, UnavailableOn(self, (OSError,))
        self._thread_locks = [threading.Lock() for _ in range(64)]
        self._pattern = os.path.join(glob.escape(self.path), *["??"] * shard_depth, "*")
        with self._guard:  # fail at start-up, not at the first request
            os.makedirs(self.path, 0o700, exist_ok=True)
            tempfile.TemporaryFile(dir=self.path).close()  # can we write here?

    def __repr__(self) -> str:
        return f"FileStore(path={self.path!r}, shard_depth={self.shard_depth})"

    def _file(self, key: str) -> str:
        """Return the record path of *key* (lower-case hex, as the protocol says)."""
        if not _KEY.match(key):
            raise ValueError(f"FileStore keys are [0-9a-z_-]{{1,200}}, not {key[:40]!r}")
        parts = [key[2 * i : 2 * i + 2].ljust(2, "_") for i in range(self.shard_depth)]
        return os.path.join(self.path, *parts, key)

    def _shards(self, path: str) -> None:
        """Make the shard directories of *path*; anything else in their place is removed."""
        for depth in range(self.shard_depth, 0, -1):
            shard = path.rsplit(os.sep, depth)[0]
            with contextlib.suppress(FileExistsError):
                os.mkdir(shard, 0o700)
            if not stat.S_ISDIR(os.lstat(shard).st_mode):  # a symlink would lead out of the store
                remove(shard, "not a shard directory")
                os.mkdir(shard, 0o700)

    @contextlib.contextmanager
    def _locked(self, key: str, path: str) -> Iterator[None]:
        """Hold the lock of *key*; its lock file exists only while held (or its holder died)."""
        with self._thread_locks[hash(key) & 63]:
            self._shards(path)
            while True:
                if (fd := open_entry(f"{path}.lock", os.O_WRONLY | os.O_CREAT | os.O_APPEND)) < 0:
                    remove(f"{path}.lock", "not a lock file")  # so no one's lock
                    continue
                with open(fd, "ab") as lock:  # closing it releases the flock
                    fcntl.flock(lock, fcntl.LOCK_EX)
                    if os.fstat(fd).st_nlink:  # else the last holder unlinked it
                        try:
                            yield
                        finally:
                            os.unlink(f"{path}.lock")
                        return

    def _refresh(self, key: str, ttl: int | None, read: bool, write: bool = True) -> _Found:
        """Set a live record to expire *ttl* from now if *write*; return it and its expiry."""
        path = self._file(key)
        if (fd := open_entry(path, os.O_RDWR if write else os.O_RDONLY)) < 0:
            if fd == NOT_A_FILE:
                with self._locked(key, path):
                    remove(path, "corrupt record, or not a file", fd)
            return None
        with open(fd, "rb", buffering=0):
            head, data = read_head(fd), b""
            if head is not None and read:
                data = os.pread(fd, head[2], HEADER.size)
                if len(data) != head[2] or zlib.crc32(data, zlib.crc32(head[1])) != head[3]:
                    head = None
            if head is None:  # remove it, unless a writer replaced it meanwhile
                with self._locked(key, path):
                    remove(path, "corrupt record, or not a file", fd)
                return None
            if (expires := head[0]) <= (now := self._clock()):
                return None
            if write:
                expires = math.inf if ttl is None else now + ttl
                os.pwrite(fd, struct.pack("<d", expires), 8)  # the header's expiry, in place
            return Record(data, head[1].hex()), expires

    def load(self, key: str, ttl: int | None) -> Record | None:
        with self._guard:
            found = self._refresh(key, ttl, read=True)
        return None if found is None else found[0]

    def peek(self, key: str) -> tuple[Record, float | None] | None:
        """Return the record of *key* and its expiry (Unix seconds), leaving the file alone.

        One open and two reads; corrupt entries are misses, removed as by ``load``.
        """
        with self._guard:
            found = self._refresh(key, None, read=True, write=False)
        return None if found is None else (found[0], None if found[1] == math.inf else found[1])

    def save(self, key: str, data: bytes, ttl: int | None, expected_version: str | None) -> str:
        path = self._file(key)
        with self._guard, self._locked(key, path):
            (expires, stored), now = peek(path), self._clock()  # corrupt counts as absent
            current = stored if expires > now else None
            if current != expected_version:
                raise ConflictError(f"{key[:12]}... at {current!r}, not {expected_version!r}", self)
            if expires == -math.inf:  # rename cannot replace a directory
                remove(path, "corrupt record, or not a file")
            version, expires = secrets.token_bytes(16), math.inf if ttl is None else now + ttl
            crc = zlib.crc32(data, zlib.crc32(version))
            tmp = f"{path}.{secrets.token_hex(4)}.tmp"
            try:
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, self.mode)
                with open(fd, "wb") as out:
                    out.write(HEADER.pack(MAGIC, expires, version, len(data), crc))
                    out.write(data)
                    out.flush()
                    if self.fsync:
                        os.fsync(out.fileno())
                os.replace(tmp, path)
            except BaseException:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(tmp)
                raise
        return version.hex()

    def touch(self, key: str, ttl: int | None) -> bool:
        with self._guard:
            return self._refresh(key, ttl, read=False) is not None

    def delete(self, key: str) -> None:
        path = self._file(key)
        with self._guard, contextlib.suppress(FileNotFoundError):
            with contextlib.suppress(NotADirectoryError):  # a shard is not one: the lock repairs it
                os.lstat(path)  # a missing record needs no lock (and no lock file)
            with self._locked(key, path):
                remove(path, None)

    def close(self) -> None:
        """Nothing to release: no file stays open between calls."""

    def _paths(self) -> list[str]:
        """Return the paths in every shard directory; raise if the directory is unusable."""
        os.stat(os.path.join(self.path, ""))  # glob would not say
        return glob.glob(self._pattern)

    def delete_expired(self) -> int:
        """Remove expired and corrupt records, and what dead writers left behind."""
        now, removed = self._clock(), 0
        with self._guard:
            for path in self._paths():
                name = os.path.basename(path)
                if name.endswith(".tmp"):
                    with contextlib.suppress(FileNotFoundError):
                        if os.lstat(path).st_mtime < time.time() - self.TEMP_MAX_AGE:
                            remove(path, None)
                elif name.endswith(".lock"):  # its holder died, or is about to let go
                    with self._locked(name[:-5], path[:-5]):
                        pass  # then unlinks it
                elif "." not in name and peek(path, math.inf)[0] <= now:
                    with self._locked(name, path):
                        expires = peek(path, math.inf)[0]  # again, now that no one writes
                        if expires == -math.inf:
                            remove(path, "corrupt record, or not a file")
                        elif expires <= now:
                            os.unlink(path)
                        removed += expires <= now
        return removed

    def keys(self) -> Iterator[str]:
        now = self._clock()
        with self._guard:
            names = [(p, os.path.basename(p)) for p in self._paths()]
            return iter([n for p, n in names if "." not in n and peek(p)[0] > now])

    def count(self) -> int:
        return sum(1 for _ in self.keys())
