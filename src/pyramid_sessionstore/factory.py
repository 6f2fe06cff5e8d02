"""SessionFactory: the request lifecycle between a cookie, a store and a Session.

Pyramid calls the factory only when a view touches ``request.session``, so a
request that never does costs nothing. When it is called:

1. The cookie is verified (HMAC, constant time). A bad one is a new, empty
   session, with no store call.
2. The record is loaded in one round trip that also refreshes its expiry.
3. At the end of the request the session is written only if it changed,
   with a compare-and-set on the version that was loaded. When another
   request of the same session won the race, this one reloads, re-applies its
   own key-level changes and tries again (:mod:`.lifecycle`).

The timing model, in one place:

- store expiry (TTL) = the session's idle timeout (its own from
  ``set_timeout``, else ``timeout``), capped by what is left of
  ``max_lifetime``; every load pushes it out again, so idle time is measured
  by the store, on the server.
- ``created`` (in the record) enforces ``max_lifetime`` on every load.
- cookie ``Max-Age`` = ``max_age`` (None: a browser-session cookie). With a
  ``max_age``, the cookie is re-sent when the record was last written at
  least ``reissue_time`` seconds ago, so an active user's cookie does not run
  out before the session does.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING
from typing import Any

from pyramid.interfaces import ISessionFactory
from zope.interface import implementer

from . import lifecycle
from .cookie_header import CookieHeader
from .cookie_header import vary_on_cookie
from .cookies import DEFAULT
from .cookies import CookieValue
from .cookies import Signer
from .cookies import store_key
from .exceptions import StoreUnavailableError
from .payload import CorruptPayloadError
from .payload import decode
from .serializers import JSONSerializer
from .serializers import Serializer
from .serializers import serializer_by_name
from .session import Session
from .stores.base import SealsCookies
from .stores.base import Store

if TYPE_CHECKING:
    from pyramid.request import Request

__all__ = ["SessionFactory"]

log = logging.getLogger(__name__)
security_log = logging.getLogger("pyramid_sessionstore.security")

SAMESITE_VALUES = ("Strict", "Lax", "None")
STORE_ERROR_POLICIES = ("raise", "fresh")
#: How many verified cookie values a factory remembers (about 300 bytes each).
VERIFIED_CACHE_SIZE = 10_000


@implementer(ISessionFactory)
class SessionFactory:
    """Build sessions kept in a store, identified by a signed cookie.

    :param secret: the secret that signs session cookies (64 random characters
        or more). Give either this or *secrets*.
    :param secrets: several secrets, newest first: the newest signs, all
        verify, so a secret can be rotated without logging anybody out.
    :param store: where sessions are kept (any :class:`~.stores.Store`).
        Default: a new :class:`~.stores.MemoryStore` (one process only).
    :param cookie_name: the cookie's name. Default: ``session``.
    :param max_age: the cookie's Max-Age in seconds; None makes it last until
        the browser closes. Default: None.
    :param path: the cookie's path. Default: ``/``.
    :param domain: the cookie's domain. Default: None (the current host).
    :param secure: send the cookie over HTTPS only. Default: False.
    :param httponly: hide the cookie from JavaScript. Default: True.
    :param samesite: ``Strict``, ``Lax``, ``None`` or None. Default: ``Lax``.
    :param timeout: idle seconds before a session expires; None for never.
        Default: 1200.
    :param max_lifetime: seconds after creation when a session ends however
        active it is; None for no limit. Default: None.
    :param reissue_time: seconds between refreshes of the cookie's Max-Age
        (and of the cookie store's cookie) on requests that only read the
        session; None never refreshes. Default: 0.
    :param serializer: ``json``, ``msgpack``, ``pickle`` or an object with
        ``dumps``/``loads``. Default: tagged JSON.
    :param set_on_exception: save the session and set its cookie even when the
        view raised and an exception view made the response. Default: True.
    :param on_store_error: ``raise`` (a :class:`StoreUnavailableError` when the
        store cannot be reached) or ``fresh`` (an empty session that is never
        saved, for requests that only read). Default: ``raise``.
    :param conflict_retries: how often a write that lost a race with another
        request of the same session is merged and retried. Default: 5.
    :param import_from: a cookie store (``CookieStore``) whose cookies are
        imported: a request carrying such a cookie instead of a session id
        gets its data in a new server-side session, so moving from the cookie
        store (or from Pyramid's ``SignedCookieSessionFactory``, through the
        cookie store's compatibility mode) logs nobody out. Default: None.
    """

    def __init__(
        self,
        secret: str | None = None,
        *,
        secrets: Sequence[str] | None = None,
        store: Store | None = None,
        cookie_name: str = "session",
        max_age: int | None = None,
        path: str = "/",
        domain: str | None = None,
        secure: bool = False,
        httponly: bool = True,
        samesite: str | None = "Lax",
        timeout: int | None = 1200,
        max_lifetime: int | None = None,
        reissue_time: int | None = 0,
        serializer: Serializer | str | None = None,
        set_on_exception: bool = True,
        on_store_error: str = "raise",
        conflict_retries: int = 5,
        import_from: SealsCookies | None = None,
    ) -> None:
        if (secret is None) == (secrets is None):
            raise ValueError("give exactly one of secret= or secrets=")
        all_secrets = [secret] if secret is not None else list(secrets or ())
        if not all_secrets or not all(isinstance(s, str) and s for s in all_secrets):
            raise ValueError("secrets must be non-empty strings")
        if any(len(s) < 32 for s in all_secrets):
            security_log.warning(
                "a session secret is shorter than 32 characters; use 64 random characters"
            )
        if samesite is not None and samesite.capitalize() not in SAMESITE_VALUES:
            raise ValueError(f"samesite must be one of {SAMESITE_VALUES} or None, not {samesite!r}")
        if samesite is not None and samesite.capitalize() == "None" and not secure:
            raise ValueError("samesite='None' needs secure=True (browsers reject it otherwise)")
        if on_store_error not in STORE_ERROR_POLICIES:
            raise ValueError(
                f"on_store_error must be one of {STORE_ERROR_POLICIES}, not {on_store_error!r}"
            )
        for name, value in (
            ("max_age", max_age),
            ("timeout", timeout),
            ("max_lifetime", max_lifetime),
            ("reissue_time", reissue_time),
        ):
            if value is not None and (type(value) is not int or value < 0):
                raise ValueError(f"{name} must be whole seconds >= 0 or None, not {value!r}")
        if timeout == 0 or max_lifetime == 0:
            raise ValueError("timeout and max_lifetime must be at least 1 second (or None)")
        if type(conflict_retries) is not int or conflict_retries < 0:
            raise ValueError(f"conflict_retries must be >= 0, not {conflict_retries!r}")
        if store is None:
            from .stores.memory import MemoryStore

            store = MemoryStore()
        if not isinstance(store, Store):
            raise TypeError(f"{store!r} does not implement the Store protocol")
        if import_from is not None and not isinstance(import_from, SealsCookies):
            raise TypeError(f"import_from={import_from!r} is not a cookie store (seal/unseal)")
        if isinstance(serializer, str):
            named = serializer_by_name(serializer)
            if named is None:
                raise ValueError(
                    f"unknown serializer {serializer!r}: use json, msgpack, pickle or an object"
                )
            serializer = named
        if serializer is None:
            serializer = JSONSerializer()
        if not callable(getattr(serializer, "dumps", None)) or not callable(
            getattr(serializer, "loads", None)
        ):
            raise TypeError(f"serializer {serializer!r} needs dumps() and loads() methods")

        #: The store sessions are kept in.
        self.store: Store = store
        #: The serializer of session data.
        self.serializer: Serializer = serializer
        self.signer = Signer(all_secrets)
        self.cookie_name = cookie_name
        self.max_age = max_age
        self.path = path
        self.domain = domain
        self.secure = secure
        self.httponly = httponly
        self.samesite = samesite.capitalize() if samesite else None
        #: How the cookie is read from requests and written on responses.
        self.cookie = CookieHeader(
            cookie_name,
            max_age=max_age,
            path=path,
            domain=domain,
            secure=secure,
            httponly=httponly,
            samesite=self.samesite,
        )
        # Verified cookie values: verification is a pure function of the value
        # (and the fixed secrets), so a browser's next request skips the HMAC
        # and the key hash. Only valid values get in; bounded by clearing.
        self._verified: dict[str, tuple[CookieValue, str]] = {}
        self.timeout = timeout
        self.max_lifetime = max_lifetime
        self.reissue_time = reissue_time
        self.set_on_exception = set_on_exception
        self.on_store_error = on_store_error
        self.conflict_retries = conflict_retries
        #: The cookie store, when the cookie carries the session itself. Kept
        #: typed here: a runtime Protocol check per request costs microseconds.
        self.sealer: SealsCookies | None = store if isinstance(store, SealsCookies) else None
        #: True for the cookie store.
        self.client_side = self.sealer is not None
        #: Cookie store whose cookies are imported into this factory's store.
        self.import_from = import_from

    def __repr__(self) -> str:
        return f"SessionFactory(store={self.store!r}, cookie_name={self.cookie_name!r})"

    # -- the request lifecycle --------------------------------------------------

    def __call__(self, request: Request) -> Session:
        """Return the session of *request*; Pyramid calls this on first access."""
        value = self.cookie.read(request.environ)
        if self.client_side:
            session = self._load_sealed(value)
        else:
            session = self._load(value, request)
        request.add_response_callback(self._on_response)
        request.__dict__["_sessionstore_session"] = session
        return session

    def _load(self, value: str | None, request: Request) -> Session:
        if not value:
            return Session()
        if (known := self._verify(value)) is None:
            if self.import_from is not None:
                imported = self._unseal(self.import_from, value)
                if imported is not None:
                    imported.changed()  # saved under a new id; the response replaces the cookie
                    return imported
            security_log.warning(
                "rejected a session cookie that is not validly signed (from %s)",
                request.remote_addr,
            )
            return Session()
        verified, key = known
        own_timeout: int | None = None
        ttl = self.timeout
        if verified.timeout is not DEFAULT:
            own_timeout = ttl = verified.timeout  # type: ignore[assignment]
        try:
            record = self.store.load(key, self.cap_ttl(ttl, None))
        except StoreUnavailableError:
            if self.on_store_error == "raise":
                raise
            log.exception("session store unavailable; using an empty session (on_store_error)")
            session = Session()
            session._degraded = True
            return session
        if record is None:
            security_log.info("session cookie names an unknown or expired session")
            return Session()
        try:
            header, data_bytes = decode(record.data)
            data = self.serializer.loads(data_bytes)
            if type(data) is not dict:
                raise CorruptPayloadError("session data is not a dict")
        except Exception as err:  # noqa: BLE001 - any serializer's failure on stored bytes
            security_log.warning("corrupt session record %s… deleted: %s", key[:12], err)
            self.store.delete(key)
            return Session()
        if self.max_lifetime is not None and time.time() >= header.created + self.max_lifetime:
            log.info("session %s… reached max_lifetime; ended", key[:12])
            self.store.delete(key)
            return Session()
        session = Session(
            data,
            created=header.created,
            session_id=verified.session_id,
            key=key,
            version=record.version,
            loaded_bytes=data_bytes,
            userid=header.userid,
            timeout=header.timeout,
            written=header.written,
        )
        # Re-send the cookie when it was signed with an older secret, or its
        # copy of the timeout lags the record's (the record is trusted).
        session._cookie_stale = header.timeout != own_timeout or not verified.current
        return session

    def _verify(self, value: str) -> tuple[CookieValue, str] | None:
        """Return the verified cookie *value* and its store key, or None."""
        if (known := self._verified.get(value)) is not None:
            return known
        if (verified := self.signer.verify(value)) is None:
            return None
        if len(self._verified) >= VERIFIED_CACHE_SIZE:
            self._verified.clear()
        known = self._verified[value] = (verified, store_key(verified.session_id))
        return known

    def _load_sealed(self, value: str | None) -> Session:
        if not value:
            return Session()
        assert self.sealer is not None
        session = self._unseal(self.sealer, value)
        if session is None:
            return Session()
        session._id, session._key = "cookie", ""  # "" lets invalidate() expire the cookie
        return session

    def _unseal(self, sealer: SealsCookies, value: str) -> Session | None:
        """Return the session inside a sealed cookie, or None (logged) when there is none."""
        unsealed = sealer.unseal(value)
        if unsealed is None:
            security_log.warning("rejected a session cookie that does not decrypt")
            return None
        payload, current = unsealed
        try:
            header, data_bytes = decode(payload)
            data = self.serializer.loads(data_bytes)
            if type(data) is not dict:
                raise CorruptPayloadError("session data is not a dict")
        except Exception as err:  # noqa: BLE001 - authentic but unreadable (serializer change)
            security_log.warning("unreadable session cookie ignored: %s", err)
            return None
        now = time.time()
        idle = header.timeout if header.timeout is not None else self.timeout
        if (idle is not None and now >= header.written + idle) or (
            self.max_lifetime is not None and now >= header.created + self.max_lifetime
        ):
            security_log.info("expired session cookie ignored")
            return None
        session = Session(
            data,
            created=header.created,
            loaded_bytes=data_bytes,
            userid=header.userid,
            timeout=header.timeout,
            written=header.written,
        )
        session.new = False
        session._cookie_stale = not current
        return session

    def _on_response(self, request: Request, response: Any) -> None:
        if request.exception is not None and not self.set_on_exception:
            return
        session: Session = request.__dict__["_sessionstore_session"]
        vary_on_cookie(response.headerlist)
        if session._degraded:
            if session._dirty:
                log.error("session store unavailable: this request's session changes are lost")
            return
        if self.client_side:
            lifecycle.finish_sealed(self, session, response)
        else:
            lifecycle.finish(self, session, request, response)

    # -- helpers the lifecycle uses --------------------------------------------

    def ttl_of(self, session: Session) -> int | None:
        """Return the store expiry for *session*: its idle timeout, capped by lifetime."""
        idle = session._timeout if session._timeout is not None else self.timeout
        return self.cap_ttl(idle, session.created)

    def cap_ttl(self, idle: int | None, created: int | None) -> int | None:
        """Cap *idle* by what is left of ``max_lifetime`` for a session *created* then."""
        if self.max_lifetime is None:
            return idle
        left = self.max_lifetime if created is None else created + self.max_lifetime - time.time()
        left_int = max(1, int(left) + 1)
        return left_int if idle is None else min(idle, left_int)

    def set_cookie(self, response: Any, value: str) -> None:
        """Set the session cookie to *value* on *response*."""
        self.cookie.set(response, value)

    def expire_cookie(self, response: Any) -> None:
        """Tell the browser to forget the session cookie."""
        self.cookie.expire(response)

    def cookie_value(self, session: Session) -> str:
        """Return the signed cookie value of a stored *session*."""
        assert session._id is not None
        if session._timeout is None:
            return self.signer.sign(session._id)
        return self.signer.sign(session._id, session._timeout)
