"""The session cookie on the wire: found in ``Cookie``, written as ``Set-Cookie``.

Our cookie values are plain ASCII tokens (a signed id, or base64url for the
cookie store), so neither direction needs a general cookie codec. Reading
scans the ``Cookie`` header once, in time linear in its length whatever the
other cookies look like (RFC 6265 §5.4: ``name=value`` pairs joined by
``;``); WebOb's parser takes time quadratic in the header on some shapes
(seconds for 16 KB) and decodes every cookie, failing on the first
non-UTF-8 byte of another application's cookie. The ``Set-Cookie``
attributes, fixed per factory, are rendered once. Writing the header this way
costs a string format instead of WebOb's ``set_cookie`` (about 8 µs), on
every request that sets the cookie.
"""

from __future__ import annotations

import logging
import re
import time
from email.utils import formatdate
from typing import Any

__all__ = ["MAX_CANDIDATES", "CookieHeader", "as_attribute", "as_cookie_name", "vary_on_cookie"]

security_log = logging.getLogger("pyramid_sessionstore.security")

# RFC 6265: a cookie name is an RFC 7230 token; attribute values have no ";" or controls.
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_ATTRIBUTE = re.compile(r"[^;\x00-\x1f\x7f]*")
_EXPIRED = "Max-Age=0; Expires=Thu, 01 Jan 1970 00:00:00 GMT"
# A backslash escape inside a quoted value as WebOb and http.cookies write it:
# three octal digits for a byte (\054 is ","), else the character itself.
_ESCAPE = re.compile(r"\\(?:([0-3][0-7][0-7])|(.))", re.DOTALL)

#: The most values under the cookie's name that :meth:`CookieHeader.read_all`
#: returns. A browser sends every cookie that matches the request, those with
#: longer paths first (RFC 6265 §5.4), so after the cookie's path or domain
#: changed it sends the old and the new one under one name. A few cover that;
#: the bound keeps a header of thousands of duplicates from costing thousands
#: of signature checks and store reads.
MAX_CANDIDATES = 4


def _unescape(match: re.Match[str]) -> str:
    octal, char = match.groups()
    return chr(int(octal, 8)) if octal else char


def as_cookie_name(value: Any) -> str:
    """Return *value* if it can name a cookie (a token: letters, digits, ``-_.!#$%&'*+^`|~``)."""
    if not isinstance(value, str) or not _TOKEN.fullmatch(value):
        raise ValueError(f"expected a token (letters, digits, -_.), got {value!r}")
    return value


def as_attribute(value: Any) -> str:
    """Return *value* if it can be a cookie attribute's value (no ``;``, no controls)."""
    if not isinstance(value, str) or not _ATTRIBUTE.fullmatch(value):
        raise ValueError(f"expected no ';' and no control characters, got {value!r}")
    return value


class CookieHeader:
    """Read and write one cookie whose attributes are fixed when it is built."""

    def __init__(
        self,
        name: str,
        *,
        max_age: int | None,
        path: str,
        domain: str | None,
        secure: bool,
        httponly: bool,
        samesite: str | None,
        max_length: int = 4096,
        min_length: int = 1,
    ) -> None:
        if type(max_length) is not int or max_length < 1:
            raise ValueError(f"max_length: expected a positive int, got {max_length!r}")
        if type(min_length) is not int or not 1 <= min_length <= max_length:
            raise ValueError(f"min_length: expected 1 to max_length, got {min_length!r}")
        for option, value, check in (
            ("cookie_name", name, as_cookie_name),
            ("path", path, as_attribute),
            ("domain", domain or "", as_attribute),
        ):
            try:
                check(value)
            except ValueError as err:
                raise ValueError(f"{option}: {err}") from None
        self.name = name
        self.max_age = max_age
        #: Values longer than this many characters are dropped unread: 4096, the
        #: least a browser must store for a whole cookie (RFC 6265 §6.1), by
        #: default; the factory passes less when its values are short.
        self.max_length = max_length
        #: Shorter values cannot be one of ours: skipped without counting
        #: against :data:`MAX_CANDIDATES`, so junk cookies cannot hide a real one.
        self.min_length = min_length
        # The name and "=": a literal prefix, which re finds without trying every
        # position; whether it starts a pair is checked by looking back.
        self._name_eq = re.compile(rf"{re.escape(name)}[ \t]*=")
        attributes = [f"Path={path}"]
        attributes += [f"Domain={domain}"] if domain else []
        attributes += ["Secure"] if secure else []
        attributes += ["HttpOnly"] if httponly else []
        attributes += [f"SameSite={samesite}"] if samesite else []
        self._attributes = "; ".join(attributes)
        self._expires: tuple[int, str] = (0, "")

    def read(self, environ: dict[str, Any]) -> str | None:
        """Return the first usable value of the cookie in *environ*, or None."""
        values = self._scan(environ, 1)
        return values[0] if values else None

    def read_all(self, environ: dict[str, Any]) -> list[str]:
        """Return the cookie's usable values in *environ*, in header order.

        Usable: not empty, at most :attr:`max_length` characters, ASCII once
        unquoted. At most :data:`MAX_CANDIDATES` values; a skipped value is
        reported on the ``pyramid_sessionstore.security`` logger, once per call.
        """
        return self._scan(environ, MAX_CANDIDATES)

    def _scan(self, environ: dict[str, Any], limit: int) -> list[str]:
        """Return up to *limit* usable values, in time linear in the header.

        Each ``name=`` found counts when it starts a pair (the header's start or
        a ``;`` before it, blanks aside); its value runs to the next ``;`` and
        the search goes on after it. Every ``=`` of the header is looked at
        once and every blank at most twice, whatever the other cookies hold.
        """
        header: str = environ.get("HTTP_COOKIE", "")
        values: list[str] = []
        rejected = ""
        search, at = self._name_eq.search, 0
        while (found := search(header, at)) is not None:
            at = first = found.start()
            while first and header[first - 1] in " \t":
                first -= 1
            if first and header[first - 1] != ";":  # the end of another pair's name or value
                at += 1
                continue
            at = header.find(";", found.end())
            at = len(header) if at == -1 else at
            value = header[found.end() : at].strip(" \t")
            if len(value) > self.max_length:
                rejected = f"longer than {self.max_length} characters"
                continue
            if value[:1] == '"':  # a quoted value (RFC 6265 §4.1.1), maybe escaped
                if len(value) < 2 or value[-1] != '"':
                    continue
                value = value[1:-1]
                if "\\" in value:
                    value = _ESCAPE.sub(_unescape, value)
            if not value:
                continue
            if len(value) < self.min_length:
                rejected = f"shorter than {self.min_length} characters"
                continue
            if not value.isascii():
                rejected = "not ASCII"
                continue
            values.append(value)
            if len(values) == limit:
                break
        if rejected:
            security_log.warning("rejected a session cookie value that is %s", rejected)
        return values

    def set(self, response: Any, value: str) -> None:
        """Add a ``Set-Cookie`` header for *value* (an ASCII token) to *response*."""
        if self.max_age is None:
            header = f"{self.name}={value}; {self._attributes}"
        else:
            lifetime = f"Max-Age={self.max_age}; Expires={self._expires_at(self.max_age)}"
            header = f"{self.name}={value}; {lifetime}; {self._attributes}"
        response.headerlist.append(("Set-Cookie", header))

    def expire(self, response: Any) -> None:
        """Add a ``Set-Cookie`` header that makes the browser drop the cookie."""
        response.headerlist.append(("Set-Cookie", f"{self.name}=; {_EXPIRED}; {self._attributes}"))

    def _expires_at(self, max_age: int) -> str:
        """Return the HTTP date *max_age* seconds from now (formatted once per second)."""
        at = int(time.time()) + max_age
        second, text = self._expires
        if second != at:
            text = formatdate(at, usegmt=True)
            self._expires = (at, text)
        return text


def vary_on_cookie(headerlist: list[tuple[str, str]]) -> None:
    """Add ``Cookie`` to the response's ``Vary`` (on the header list: WebOb's views cost more)."""
    first = None
    for index, (name, value) in enumerate(headerlist):
        if name.lower() == "vary":
            if any(v.strip().lower() in ("cookie", "*") for v in value.split(",")):
                return
            first = index if first is None else first
    if first is None:
        headerlist.append(("Vary", "Cookie"))
    else:
        name, value = headerlist[first]
        headerlist[first] = (name, f"{value}, Cookie")
