"""Read the cookies of Pyramid's ``SignedCookieSessionFactory`` (for the cookie store).

:class:`~.cookie.CookieStore` with ``accept_pyramid_signed`` reads these so that
switching over logs nobody out; it never writes them. The format is Pyramid's
(``webob.cookies.SignedSerializer`` over JSON): url-safe base64 of
``HMAC(salt + secret, body) | body``, the body being the JSON list
``[accessed, created, state]``. Only the default JSON serializer is understood.

Kept apart from the store so that the store module reads as the store. This
module parses untrusted input: every malformed value is answered with None.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import logging
import re

from ..payload import Header
from ..payload import encode
from ..serializers import JSONSerializer
from ..serializers import SerializationError

__all__ = ["b64decode", "open_pyramid", "pyramid_key"]

security_log = logging.getLogger("pyramid_sessionstore.security")

_B64URL = re.compile(r"[A-Za-z0-9_-]+")

#: What :func:`open_pyramid` needs: the salted secret, the hash name, its digest size.
PyramidKey = tuple[bytes, str, int]


def b64decode(text: str) -> bytes | None:
    """Return the bytes of unpadded url-safe base64 *text*, or None when it is not that."""
    if not _B64URL.fullmatch(text):
        return None
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        return None


def pyramid_key(secret: str, salt: str, hashalg: str) -> PyramidKey:
    """Return the key :func:`open_pyramid` checks signatures with.

    :raises ValueError: *hashalg* is not a name ``hashlib`` knows.
    """
    digest_size = hashlib.new(hashalg).digest_size
    try:  # webob.cookies.SignedSerializer: latin-1, else utf-8 for both
        salted = salt.encode("latin-1") + secret.encode("latin-1")
    except UnicodeEncodeError:
        salted = salt.encode() + secret.encode()
    return salted, hashalg, digest_size


def open_pyramid(text: str, salted: bytes, hashalg: str, size: int) -> tuple[bytes, bool] | None:
    """Return (payload, False) from a ``SignedCookieSessionFactory`` cookie, or None.

    The payload is what the cookie store seals (a header and the JSON data);
    False says the cookie is in an old format, so the factory re-issues it.
    """
    raw = b64decode(text)
    if raw is None or len(raw) <= size:
        return None
    signature, body = raw[:size], raw[size:]
    if not hmac.compare_digest(signature, hmac.new(salted, body, hashalg).digest()):
        return None
    try:
        accessed, created, state = json.loads(body.decode("utf-8"))
        accessed, created = float(accessed), float(created)
        if type(state) is not dict or not (0 <= created < 2**40 and 0 <= accessed < 2**40):
            raise ValueError("not (accessed, created, dict) with plausible times")
        return encode(Header(int(created), accessed), JSONSerializer().dumps(state)), False
    except (ValueError, TypeError, SerializationError) as err:
        security_log.warning("a signed Pyramid session cookie is unreadable: %s", err)
        return None
