"""The session cookie on the wire: found in ``Cookie``, written as ``Set-Cookie``.

Our cookie values are plain ASCII tokens (a signed id, or base64url for the
cookie store), so neither direction needs a general cookie codec: the value is
found without decoding every cookie of the header (WebOb's ``request.cookies``
decodes them all and fails on the first non-UTF-8 byte, even in another
application's cookie), and the ``Set-Cookie`` attributes, fixed per factory,
are rendered once. Writing the header this way costs a string format instead
of WebOb's ``set_cookie`` (about 8 µs), on every request that sets the cookie.
"""

from __future__ import annotations

import logging
import re
import time
from email.utils import formatdate
from typing import Any

from webob.cookies import parse_cookie

__all__ = ["CookieHeader", "as_attribute", "as_cookie_name", "vary_on_cookie"]

security_log = logging.getLogger("pyramid_sessionstore.security")

# RFC 6265: a cookie name is an RFC 7230 token; attribute values have no ";" or controls.
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_ATTRIBUTE = re.compile(r"[^;\x00-\x1f\x7f]*")
_EXPIRED = "Max-Age=0; Expires=Thu, 01 Jan 1970 00:00:00 GMT"


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
    ) -> None:
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
        attributes = [f"Path={path}"]
        attributes += [f"Domain={domain}"] if domain else []
        attributes += ["Secure"] if secure else []
        attributes += ["HttpOnly"] if httponly else []
        attributes += [f"SameSite={samesite}"] if samesite else []
        self._attributes = "; ".join(attributes)
        self._expires: tuple[int, str] = (0, "")

    def read(self, environ: dict[str, Any]) -> str | None:
        """Return the cookie's value in *environ*; None when absent, empty or not ASCII."""
        header: str = environ.get("HTTP_COOKIE", "")
        value: str | None = None
        for part in header.split(";"):
            name, _, found = part.partition("=")
            if name.strip() == self.name:
                value = found.strip()
                break
        if value and value[0] == '"':  # quoted: let WebOb unquote it
            wanted = self.name.encode("latin-1", "replace")
            raw = next((raw for name, raw in parse_cookie(header) if name == wanted), b"")
            value = raw.decode("latin-1")
        if value and not value.isascii():
            security_log.warning("rejected a session cookie that is not ASCII")
            return None
        return value or None

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
