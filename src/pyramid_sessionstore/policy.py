"""What a session factory decided, handed down to the request lifecycle.

:class:`~pyramid_sessionstore.factory.SessionFactory` checks its options and
builds one :class:`Policy`; :mod:`.lifecycle`, :mod:`.writes` and
:mod:`.users` read it. It is the one object those modules share, so they
never import the factory (dependencies run one way: factory → lifecycle →
store, cookie codec, payload, user index).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from dataclasses import field
from typing import TYPE_CHECKING
from typing import Any

from .cookies import CookieValue
from .cookies import store_key
from .exceptions import ConfigurationError
from .exceptions import missing_dependency
from .payload import CorruptPayloadError
from .payload import Header
from .payload import decode
from .payload import encode
from .sealing import RecordSealer
from .sealing import is_sealed
from .sealing import read_header

if TYPE_CHECKING:
    from .cookie_header import CookieHeader
    from .cookies import Signer
    from .serializers import Serializer
    from .session import Session
    from .stores.base import SealsCookies
    from .stores.base import Store

__all__ = ["VERIFIED_CACHE_SIZE", "Policy", "policy_of"]

#: How many verified cookie values a factory remembers (about 300 bytes each).
VERIFIED_CACHE_SIZE = 10_000


@dataclass(eq=False)
class Policy:
    """The fixed decisions of one session factory (see its options)."""

    store: Store
    serializer: Serializer
    #: Checks a value at assignment (the serializer's own check), raising
    #: :class:`~pyramid_sessionstore.serializers.SerializationError`.
    check: Callable[[Any, str], None]
    signer: Signer
    cookie: CookieHeader
    timeout: int | None
    max_lifetime: int | None
    max_age: int | None
    reissue_time: int | None
    set_on_exception: bool
    on_store_error: str
    #: Seconds a write may spend retrying lost compare-and-sets.
    conflict_timeout: float
    #: The cookie store, when the cookie carries the session itself.
    sealer: SealsCookies | None = None
    #: A cookie store whose cookies are imported into the store.
    import_from: SealsCookies | None = None
    #: Check the user index on every load of a bound session (the store may
    #: evict the index while the session lives: see ``evicts_live_records``).
    verify_index: bool = False
    #: What is kept about a client when its session is bound to a user:
    #: a subset of ``{"user_agent", "ip"}``.
    record_client: frozenset[str] = frozenset({"user_agent"})
    #: Sessions a user may have at once; None for no limit.
    max_sessions_per_user: int | None = None
    #: Key of the HMAC that names a session in the active-sessions list.
    handle_key: bytes = b""
    #: Seal records written from now on (``encrypt``); sealed records are
    #: read whatever this says, so switching it logs nobody out.
    encrypt: bool = False
    #: Seals and opens records; None without the ``cryptography`` package.
    records: RecordSealer | None = None
    #: Keys (one per secret, newest first) of the HMAC naming user indexes.
    index_salts: tuple[bytes, ...] = ()

    def pack(self, session_id: str | None, header: Header, data: bytes) -> bytes:
        """Return the stored form of a session: sealed under its id with ``encrypt``."""
        if self.encrypt and session_id is not None and self.records is not None:
            return self.records.seal(session_id, header, data)
        return encode(header, data)

    def unpack(self, session_id: str | None, payload: bytes) -> tuple[Header, bytes]:
        """Return the header and serialized data of a stored session, sealed or not.

        :raises CorruptPayloadError: when the record is not a session, or a
            sealed one does not authenticate under *session_id*.
        :raises MissingDependencyError: for a sealed record without ``cryptography``.
        """
        header, data, _ = self.unpack_record(session_id, payload)
        return header, data

    def unpack_record(self, session_id: str | None, payload: bytes) -> tuple[Header, bytes, bool]:
        """Return what :meth:`unpack` does, and whether the record is sealed under an
        older secret (then it is written again, so the secret can be retired).
        """
        if not is_sealed(payload):
            header, data = decode(payload)
            return header, data, False
        if self.records is None:
            raise missing_dependency("reading encrypted session records", "cryptography", "cookie")
        if session_id is None:
            raise CorruptPayloadError("a sealed record needs its session id")
        return self.records.open_record(session_id, payload)

    def is_record(self, payload: bytes) -> bool:
        """Return True if *payload* is a session record (whoever it belongs to)."""
        try:
            if is_sealed(payload):
                read_header(payload)
            else:
                decode(payload)
        except CorruptPayloadError:
            return False
        return True

    def belongs_elsewhere(self, key: str, userid: Any) -> bool:
        """Return True if the record under *key* is a session of a user other than *userid*.

        One ``peek`` (a store without it answers False: nothing can be told).
        """
        peek = getattr(self.store, "peek", None)
        if not callable(peek):
            return False
        peeked = peek(key)
        if peeked is None:
            return False
        data = peeked[0].data
        return self.owned_by(data, userid) is None and self.is_record(data)

    def owned_by(self, payload: bytes, userid: Any) -> tuple[int, float, int | None] | None:
        """Return (created, written, own timeout) of a stored session bound to *userid*.

        Reads only what a record shows without its id. None when the record is
        not a session of *userid* (or not a session at all).
        """
        try:
            if is_sealed(payload):
                clear = read_header(payload)
                if self.records is None or clear.user_tag not in self.records.tags_of(userid):
                    return None
                return clear.created, clear.written, clear.timeout
            header, _ = decode(payload)
        except CorruptPayloadError:
            return None
        if header.userid != userid:
            return None
        return header.created, header.written, header.timeout

    # Verified cookie values: verification is a pure function of the value
    # (and the fixed secrets), so a browser's next request skips the HMAC and
    # the key hash. Only valid values get in; bounded by clearing.
    _verified: dict[str, tuple[CookieValue, str]] = field(default_factory=dict, repr=False)

    def verify(self, value: str) -> tuple[CookieValue, str] | None:
        """Return the verified cookie *value* and its store key, or None."""
        if (known := self._verified.get(value)) is not None:
            return known
        if (verified := self.signer.verify(value)) is None:
            return None
        if len(self._verified) >= VERIFIED_CACHE_SIZE:
            self._verified.clear()
        known = self._verified[value] = (verified, store_key(verified.session_id))
        return known

    def idle_timeout(self, own: int | None) -> int | None:
        """Return the idle timeout of a session whose own timeout is *own*."""
        return own if own is not None else self.timeout

    def cap_ttl(self, idle: int | None, created: float | None) -> int | None:
        """Cap *idle* seconds by what is left of ``max_lifetime`` for a session *created* then.

        With *created* unknown (None), the cap is the whole lifetime.
        """
        if self.max_lifetime is None:
            return idle
        left = self.max_lifetime if created is None else created + self.max_lifetime - time.time()
        left_int = max(1, int(left) + 1)
        return left_int if idle is None else min(idle, left_int)

    def ttl_of(self, session: Session) -> int | None:
        """Return the store expiry of *session*: its idle timeout, capped by its lifetime."""
        return self.cap_ttl(self.idle_timeout(session._timeout), session.created)

    def cookie_value(self, session: Session) -> str:
        """Return the signed cookie value of a stored *session*."""
        assert session._id is not None
        if session._timeout is None:
            return self.signer.sign(session._id)
        return self.signer.sign(session._id, session._timeout)


def policy_of(owner: Any) -> Policy:
    """Return the :class:`~.policy.Policy` of a session factory (or *owner* itself)."""
    policy = owner if isinstance(owner, Policy) else getattr(owner, "policy", None)
    if not isinstance(policy, Policy):
        raise ConfigurationError(
            "this needs pyramid_sessionstore's SessionFactory as the session factory"
            " (config.include('pyramid_sessionstore') or config.set_session_factory)"
        )
    return policy
