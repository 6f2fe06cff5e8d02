"""SessionFactory: the options of a session, and Pyramid's hooks into the lifecycle.

Pyramid calls the factory only when a view touches ``request.session``, so a
request that never does costs nothing. The factory checks its options once,
keeps what it decided in a :class:`~.policy.Policy`, and hands each request
to :mod:`.lifecycle`: the cookie is verified (a bad one is a new, empty
session, with no store call), the record loaded in one round trip, and at
the end of the request the session is written only if it changed
(:mod:`.writes`: compare-and-set, merge and retry).

The timing model, in one place:

- store expiry (TTL) = the session's idle timeout (its own from
  ``set_timeout``, else ``timeout``), capped by what is left of
  ``max_lifetime``; every load pushes it out again, so idle time is measured
  by the store, on the server. The record, not the cookie, holds the
  session's own timeout.
- ``created`` (in the record) enforces ``max_lifetime`` on every load.
- cookie ``Max-Age`` = ``max_age`` (None: a browser-session cookie). With a
  ``max_age``, the cookie is re-sent when the record was last written at
  least ``reissue_time`` seconds ago, so an active user's cookie does not run
  out before the session does.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from functools import partial
from typing import TYPE_CHECKING
from typing import Any

from pyramid.interfaces import ISessionFactory
from zope.interface import implementer

from . import events
from . import lifecycle
from .answers import answer_save_failure
from .cookie_header import CookieHeader
from .cookie_header import vary_on_cookie
from .cookies import MAX_COOKIE_LENGTH
from .cookies import MIN_COOKIE_LENGTH
from .cookies import Signer
from .cookies import checked_secrets
from .cookies import derive_key
from .exceptions import MissingDependencyError
from .exceptions import SessionBusyError
from .exceptions import StoreUnavailableError
from .policy import Policy
from .sealing import RecordSealer
from .serializers import JSONSerializer
from .serializers import Serializer
from .serializers import checker_for
from .serializers import serializer_by_name
from .session import MAX_SECONDS
from .session import Session
from .stores.base import SealsCookies
from .stores.base import Store
from .stores.base import evicts_live_records

if TYPE_CHECKING:
    from pyramid.request import Request

__all__ = ["SessionFactory"]

log = logging.getLogger(__name__)
security_log = logging.getLogger("pyramid_sessionstore.security")

SAMESITE_VALUES = ("Strict", "Lax", "None")
STORE_ERROR_POLICIES = ("raise", "fresh")
#: Times the factory's response callback lets later-registered callbacks run first.
MAX_DEFERRALS = 8


@implementer(ISessionFactory)
class SessionFactory:
    """Build sessions kept in a store, identified by a signed cookie.

    :param secret: the secret that signs session cookies (64 random characters
        or more). Give either this or *secrets*. A secret that is obviously not
        random (short, with whitespace, few distinct characters, a placeholder)
        raises :class:`ValueError`.
    :param secrets: several secrets, newest first: the newest signs, all
        verify, so a secret can be rotated without logging anybody out.
    :param store: where sessions are kept (any :class:`~.stores.Store`).
        Default: a new :class:`~.stores.MemoryStore` (one process only).
    :param cookie_name: the cookie's name. Default: ``session``.
    :param max_age: the cookie's ``Max-Age`` in seconds (RFC 6265 §5.2.2); None
        makes it last until the browser closes. Default: None.
    :param path: the cookie's ``Path`` (RFC 6265 §5.2.4). Default: ``/``.
    :param domain: the cookie's ``Domain`` (RFC 6265 §5.2.3). Default: None
        (the current host only).
    :param secure: send the cookie over HTTPS only (``Secure``, RFC 6265
        §5.2.5). Default: False.
    :param httponly: hide the cookie from JavaScript (``HttpOnly``, RFC 6265
        §5.2.6). Default: True.
    :param samesite: the ``SameSite`` attribute (RFC 6265bis): the string
        ``"Strict"``, ``"Lax"`` or ``"None"`` (which browsers accept only with
        *secure*), or None to leave the attribute out. Default: ``"Lax"``.
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
    :param conflict_timeout: seconds a write that keeps losing races with
        other requests of the same session (or of the same user's index) may
        spend merging and retrying, with jittered backoff, before
        :class:`~pyramid_sessionstore.SessionBusyError` ends it. Writers in
        one process take turns and never lose to each other. Default: 3.0.
    :param max_sessions_per_user: how many sessions one user may have at once;
        binding a session beyond it ends the user's least recently active other
        sessions. None for no limit. Default: None.
    :param record_client: what is kept about the client when a session is
        bound to a user, for the active-sessions list: any of ``user_agent``
        and ``ip`` (``request.client_addr``). Default: ``("user_agent",)``: an
        address is personal data, kept only when the application asks.
    :param encrypt: seal each record with AES-GCM under a key derived (HKDF)
        from its session id and the secret, so a dump of the store, even with
        the application's secrets, opens no session without its cookie. Needs
        the ``cryptography`` package (``[cookie]`` extra). Records written
        before are read either way, so switching logs nobody out. Default: False.
    :param import_from: a cookie store (``CookieStore``) whose cookies are
        imported: a request carrying such a cookie instead of a session id
        gets its data in a new server-side session, so moving from the cookie
        store (or from Pyramid's ``SignedCookieSessionFactory``, through the
        cookie store's compatibility mode) logs nobody out. Default: None.
    :raises ValueError: for a refused secret or a bad option value (the
        message names the option); from settings these become
        :class:`~pyramid_sessionstore.ConfigurationError` naming the setting.
    :raises TypeError: for a *store*, *serializer* or *import_from* that is
        not what it must be.
    :raises MissingDependencyError: for ``encrypt=True`` without ``cryptography``.
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
        conflict_timeout: float = 3.0,
        import_from: SealsCookies | None = None,
        max_sessions_per_user: int | None = None,
        record_client: Sequence[str] = ("user_agent",),
        encrypt: bool = False,
    ) -> None:
        if (secret is None) == (secrets is None):
            raise ValueError("give exactly one of secret= or secrets=")
        all_secrets = checked_secrets(
            [secret] if secret is not None else secrets,  # type: ignore[arg-type]
            "secret" if secret is not None else "secrets",
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
            if value is not None and (type(value) is not int or not 0 <= value <= MAX_SECONDS):
                raise ValueError(
                    f"{name} must be whole seconds from 0 to {MAX_SECONDS} or None, not {value!r}"
                )
        if timeout == 0 or max_lifetime == 0:
            raise ValueError("timeout and max_lifetime must be at least 1 second (or None)")
        if (
            isinstance(conflict_timeout, bool)
            or not isinstance(conflict_timeout, (int, float))
            or not 0 < conflict_timeout <= 300
        ):
            raise ValueError(
                f"conflict_timeout must be seconds > 0 and <= 300, not {conflict_timeout!r}"
            )
        if max_sessions_per_user is not None and (
            type(max_sessions_per_user) is not int or max_sessions_per_user < 1
        ):
            raise ValueError(
                f"max_sessions_per_user must be a whole number >= 1 or None,"
                f" not {max_sessions_per_user!r}"
            )
        if isinstance(record_client, str) or not set(record_client) <= {"user_agent", "ip"}:
            raise ValueError(f"record_client must list user_agent and/or ip, not {record_client!r}")
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
            # A signed id is at most 128 characters: a longer value is dropped
            # unread. Sealed cookies (the cookie store, or imported) need more.
            min_length=(
                1
                if isinstance(store, SealsCookies) or import_from is not None
                else MIN_COOKIE_LENGTH
            ),
            max_length=max(
                [
                    MAX_COOKIE_LENGTH,
                    *(
                        max(4096, int(getattr(sealer, "max_size", 4096)))
                        for sealer in (store, import_from)
                        if isinstance(sealer, SealsCookies)
                    ),
                ]
            ),
        )
        self.timeout = timeout
        self.max_lifetime = max_lifetime
        self.reissue_time = reissue_time
        self.set_on_exception = set_on_exception
        self.on_store_error = on_store_error
        self.conflict_timeout = float(conflict_timeout)
        #: The cookie store, when the cookie carries the session itself. Kept
        #: typed here: a runtime Protocol check per request costs microseconds.
        self.sealer: SealsCookies | None = store if isinstance(store, SealsCookies) else None
        #: True for the cookie store.
        self.client_side = self.sealer is not None
        #: Cookie store whose cookies are imported into this factory's store.
        self.import_from = import_from
        for sealer in (self.sealer, import_from):  # one secret serves the cookie store too
            use_secrets = getattr(sealer, "use_secrets", None)
            if callable(use_secrets):
                use_secrets(all_secrets)
        use_cookie_name = getattr(self.sealer, "use_cookie_name", None)
        if callable(use_cookie_name):  # it counts the name in its size limit
            use_cookie_name(cookie_name)
        #: What this factory decided, as the lifecycle reads it.
        self.policy = Policy(
            store=store,
            serializer=serializer,
            check=checker_for(serializer),
            signer=self.signer,
            cookie=self.cookie,
            timeout=timeout,
            max_lifetime=max_lifetime,
            max_age=max_age,
            reissue_time=reissue_time,
            set_on_exception=set_on_exception,
            on_store_error=on_store_error,
            conflict_timeout=self.conflict_timeout,
            sealer=self.sealer,
            import_from=import_from,
            verify_index=evicts_live_records(store),
            record_client=frozenset(record_client),
            max_sessions_per_user=max_sessions_per_user,
            handle_key=derive_key(all_secrets[0], b"pyramid_sessionstore.session-handle"),
            encrypt=encrypt,
            records=_record_sealer(all_secrets, required=encrypt),
            index_salts=tuple(
                derive_key(s, b"pyramid_sessionstore.user-index") for s in all_secrets
            ),
        )

    def __repr__(self) -> str:
        return f"SessionFactory(store={self.store!r}, cookie_name={self.cookie_name!r})"

    # -- Pyramid's hooks -------------------------------------------------------

    def __call__(self, request: Request) -> Session:
        """Return the session of *request*; Pyramid calls this on first access."""
        session = lifecycle.begin(self.policy, request)
        request.add_response_callback(self._on_response)
        request.__dict__["_sessionstore_session"] = session
        request.__dict__["_sessionstore_deferrals"] = 0
        return session

    def _on_response(self, request: Request, response: Any) -> None:
        if request.exception is not None and not self.set_on_exception:
            request.__dict__["_sessionstore_outcome"] = "not saved: the view raised"
            return
        pending = request.response_callbacks
        deferrals: int = request.__dict__["_sessionstore_deferrals"]
        if pending and deferrals < MAX_DEFERRALS:
            # A callback registered after the session was read may still
            # change it (a "remember the last page" helper): save after it.
            request.__dict__["_sessionstore_deferrals"] = deferrals + 1
            request.add_response_callback(self._on_response)
            return
        session: Session = request.__dict__["_sessionstore_session"]
        vary_on_cookie(response.headerlist)
        if lifecycle.rejected_by_csrf(self.policy, request, session):
            # The check minted a token in a session nobody should keep.
            request.__dict__["_sessionstore_outcome"] = "not saved: the CSRF check failed"
            return
        try:
            if self.client_side:
                outcome = lifecycle.finish_sealed(self.policy, session, response)
            else:
                outcome = lifecycle.finish(self.policy, session, request, response)
            request.__dict__["_sessionstore_outcome"] = outcome
        except (SessionBusyError, StoreUnavailableError) as err:
            request.__dict__["_sessionstore_outcome"] = f"not saved: {type(err).__name__}"
            if isinstance(err, StoreUnavailableError):
                events.notify(
                    request, partial(events.SessionStoreError, request, session._key, "save", err)
                )
            answer_save_failure(request, response, err)

    # -- helpers kept for callers of 0.1 (internal; the lifecycle uses the policy) ---

    def ttl_of(self, session: Session) -> int | None:
        """Return the store expiry for *session* in seconds (internal, kept from 0.1)."""
        return self.policy.ttl_of(session)

    def cap_ttl(self, idle: int | None, created: float | None) -> int | None:
        """Cap *idle* seconds by what is left of ``max_lifetime`` (internal, kept from 0.1)."""
        return self.policy.cap_ttl(idle, created)

    def set_cookie(self, response: Any, value: str) -> None:
        """Set the session cookie to *value* on *response* (internal, kept from 0.1)."""
        self.cookie.set(response, value)

    def expire_cookie(self, response: Any) -> None:
        """Tell the browser to forget the session cookie (internal, kept from 0.1)."""
        self.cookie.expire(response)

    def cookie_value(self, session: Session) -> str:
        """Return the signed cookie value of a stored *session* (internal, kept from 0.1)."""
        return self.policy.cookie_value(session)


def _record_sealer(secrets: Sequence[str], *, required: bool) -> RecordSealer | None:
    """Return the record sealer, or None when ``cryptography`` is missing and not *required*."""
    try:
        return RecordSealer(secrets)
    except MissingDependencyError:
        if required:
            raise
        return None
