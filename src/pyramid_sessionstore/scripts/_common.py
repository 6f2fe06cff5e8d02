"""What the ``psessions`` subcommands share: exit codes, the error that ends one, printing.

Private to :mod:`.psessions` (split out to keep each module within the size
budget); nothing here is public API.
"""

from __future__ import annotations

import re
from datetime import datetime
from datetime import timezone

__all__ = [
    "BROKEN_PIPE",
    "FAILED",
    "INDEX_KEY",
    "INTERRUPTED",
    "OK",
    "SESSION_ID",
    "SESSION_KEY",
    "USAGE",
    "CommandError",
    "printable",
    "when",
]

OK, FAILED, USAGE = 0, 1, 2
#: 128 + the signal number, as shells report a command a signal ended.
INTERRUPTED, BROKEN_PIPE = 128 + 2, 128 + 13  # SIGINT, SIGPIPE (POSIX numbers)

#: A session's store key (SHA-256 of its id), a user index's key, a session id.
SESSION_KEY = re.compile(r"\A[0-9a-f]{64}\Z")
INDEX_KEY = re.compile(r"\A[0-9a-f]{40}\Z")
SESSION_ID = re.compile(r"\A[A-Za-z0-9_-]{43}\Z")


class CommandError(Exception):
    """End the command with *code*, after printing *message* on stderr."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


def when(timestamp: float) -> str:
    """Return Unix time *timestamp* as ISO 8601 in UTC, to the second."""
    return datetime.fromtimestamp(timestamp, timezone.utc).isoformat(timespec="seconds")


def printable(text: str) -> str:
    """Return *text* with every character a terminal would act on escaped (``\\x1b``).

    User agents and addresses come from HTTP requests, that is from anyone:
    printed raw, an escape sequence in one could rewrite the operator's screen.
    """
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode() for c in text)
