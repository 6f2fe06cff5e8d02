"""Delete what benchmark runs left in memcached: ours under ``bench:``, and Beaker's sessions.

Beaker's memcached backend stores a session as ``<32 hex digits>_session``
with no expiry, so every run's Beaker rows (thousands of cold browsers) stay
until memcached evicts them. They pile up in one slab class; memcached then
has no free page to give the slab class of another record size, and a store
whose records are a little larger (ours with ``encrypt = true``) gets its
fresh records evicted within seconds: its cold reads find sessions gone.

The keys are found with ``lru_crawler metadump all`` (memcached 1.4.31+),
read-only, then deleted one by one; nothing else on the server is touched.
Deleted items free their chunks; memcached's slab automover returns free
pages to the global pool over the next minute or so.
"""

from __future__ import annotations

import re
import socket
from urllib.parse import unquote

__all__ = ["BENCH_KEYS", "clean_memcached"]

#: Keys a benchmark run leaves: ours (``bench:``) and Beaker's sessions.
BENCH_KEYS = re.compile(r"bench:.*|[0-9a-f]{32}_session")


def _address(servers: str) -> tuple[str, int]:
    host, _, port = servers.split(",")[0].strip().rpartition(":")
    return host or "127.0.0.1", int(port or 11211)


def _call(sock: socket.socket, command: bytes, ends: tuple[bytes, ...]) -> bytes:
    sock.sendall(command)
    buf = b""
    while not buf.endswith(ends):
        chunk = sock.recv(1 << 20)
        if not chunk:
            raise ConnectionError("memcached closed the connection")
        buf += chunk
    return buf


def clean_memcached(servers: str, timeout: float = 30.0) -> int:
    """Delete the benchmark keys on the first memcached of *servers*; return how many.

    :param servers: ``host:port`` (a comma-separated list: the first is used).
    :raises OSError: when memcached cannot be reached or answers oddly.
    """
    with socket.create_connection(_address(servers), timeout=timeout) as sock:
        dump = _call(sock, b"lru_crawler metadump all\r\n", (b"END\r\n", b"ERROR\r\n"))
        keys = []
        for line in dump.decode("ascii", "replace").splitlines():
            if line.startswith("key="):
                key = unquote(line.split(" ", 1)[0][4:])
                if BENCH_KEYS.fullmatch(key):
                    keys.append(key)
        for start in range(0, len(keys), 500):
            batch = keys[start : start + 500]
            sock.sendall(b"".join(f"delete {k} noreply\r\n".encode() for k in batch))
        _call(sock, b"version\r\n", (b"\r\n",))  # every delete before it is done
    return len(keys)
