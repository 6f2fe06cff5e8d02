"""Session: Pyramid's ISession over a dict, with change tracking.

The session does no I/O. It records what the request did (which keys it set,
whether it handed out a mutable value, whether it was invalidated or given a
new id) and the factory turns that into store calls when the response goes
out. Flash queues and the CSRF token use the same keys as Pyramid's own
sessions (``_f_<queue>``, ``_csrft_``), so Pyramid's CSRF policies work
unchanged.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING
from typing import Any

from pyramid.interfaces import ISession
from zope.interface import implementer

from .exceptions import StoreUnavailableError
from .serializers import SCALARS
from .serializers import check as json_check

if TYPE_CHECKING:
    from collections.abc import Callable
    from collections.abc import Iterable

__all__ = ["Session"]

_MISSING: Any = object()
#: The longest time in seconds a session option can hold (2**31 - 1: about 68 years).
MAX_SECONDS = 2**31 - 1
#: The longest user id kept, in bytes of UTF-8.
MAX_USERID_BYTES = 1024


def _utf8(text: str, what: str) -> bytes:
    """Return *text* in UTF-8; refuse, here and now, text that has no UTF-8 form."""
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError as err:
        raise ValueError(f"{what} must be text UTF-8 can encode (no lone surrogate)") from err


FLASH_PREFIX = "_f_"
CSRF_KEY = "_csrft_"


@implementer(ISession)
class Session:
    """One user's session: a dict with Pyramid's session API on top.

    Created by :class:`~pyramid_sessionstore.SessionFactory`; views reach it as
    ``request.session``. Its constructor's keyword arguments are the factory's
    business (what it loaded from the store), not part of the public API.
    """

    __slots__ = (
        "_data",
        "_dirty",
        "_forced",
        "_exposed",
        "_id",
        "_key",
        "_version",
        "_loaded_bytes",
        "_loaded_record",
        "_ended",
        "_moved_from",
        "_attempts",
        "_reseal",
        "_check",
        "_userid",
        "_user_changed",
        "_timeout",
        "_timeout_changed",
        "_written",
        "_degraded",
        "_cookie_stale",
        "created",
        "new",
        "__weakref__",
    )

    def __init__(
        self,
        data: dict[str, Any] | None = None,
        *,
        created: int | None = None,
        session_id: str | None = None,
        key: str | None = None,
        version: str | None = None,
        loaded_bytes: bytes | None = None,
        userid: Any = None,
        timeout: int | None = None,
        written: float = 0.0,
        check: Callable[[Any, str], None] = json_check,
    ) -> None:
        self._data: dict[str, Any] = {} if data is None else data
        #: Unix time (whole seconds) the session was created.
        self.created: int = int(time.time()) if created is None else created
        #: True when the session was created during this request.
        self.new: bool = session_id is None
        self._id = session_id
        self._key = key
        self._version = version
        self._loaded_bytes = loaded_bytes
        # The record as loaded (header and data), to put back if a move fails.
        self._loaded_record: bytes | None = None
        self._dirty = False
        # Set by changed(): every key counts as set by this request.
        self._forced = False
        self._exposed = False
        # Keys of records this request ended (invalidate): deleted at the end.
        self._ended: list[str] = []
        # (key, version, id) of the record this session is moving away from
        # (regenerate_id): moved at the end only if still at that version.
        self._moved_from: tuple[str, str | None, str | None] | None = None
        # Compare-and-set attempts of the last write (more than 1: it merged).
        self._attempts = 0
        # Set when the record was sealed under an older secret: write it again.
        self._reseal = False
        # The serializer's value check, run at assignment.
        self._check = check
        self._userid = userid
        self._user_changed = False
        self._timeout = timeout
        self._timeout_changed = False
        self._written = written
        # Set when the store was down and the factory chose an empty session
        # (on_store_error = fresh): it can be read, and any change raises.
        self._degraded = False
        # Set by the factory when the cookie must be re-sent although nothing
        # changed (signed with an older secret, say).
        self._cookie_stale = False

    def __repr__(self) -> str:
        state = "new" if self.new else "loaded"
        return f"<Session {state} keys={sorted(self._data)!r}>"

    # -- reading ---------------------------------------------------------------

    def _hand_out(self, value: Any) -> Any:
        # A mutable value may be changed in place without changed(): remember
        # to compare with what was loaded before deciding there is no write.
        if type(value) not in SCALARS:
            self._exposed = True
        return value

    def __getitem__(self, key: str) -> Any:
        return self._hand_out(self._data[key])

    def get(self, key: str, default: Any = None) -> Any:
        return self._hand_out(self._data.get(key, default))

    def __contains__(self, key: object) -> bool:
        return key in self._data

    def __len__(self) -> int:
        return len(self._data)

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def keys(self) -> Any:
        return self._data.keys()

    def values(self) -> Any:
        self._exposed = True
        return self._data.values()

    def items(self) -> Any:
        self._exposed = True
        return self._data.items()

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Session):
            return self._data == other._data
        return self._data == other

    __hash__ = None  # type: ignore[assignment]

    # -- writing ---------------------------------------------------------------

    def _writable(self) -> None:
        if self._degraded:
            raise StoreUnavailableError(
                "the session store could not be reached when this request loaded the session"
                " (session.on_store_error = fresh): it can be read but not changed"
            )

    def __setitem__(self, key: str, value: Any) -> None:
        if type(key) is not str:
            raise TypeError(f"session keys must be str, not {type(key).__name__}: {key!r}")
        if self._degraded:
            self._writable()
        if not key.isascii():
            _utf8(key, "session keys")
        self._check(value, key)
        self._data[key] = value
        self._dirty = True

    def __delitem__(self, key: str) -> None:
        self._writable()
        del self._data[key]
        self._dirty = True

    def setdefault(self, key: str, default: Any = None) -> Any:
        if key not in self._data:
            self[key] = default
        return self._hand_out(self._data[key])

    def pop(self, key: str, default: Any = _MISSING) -> Any:
        if key in self._data:
            self._writable()
            self._dirty = True
            return self._hand_out(self._data.pop(key))
        if default is _MISSING:
            raise KeyError(key)
        return default

    def popitem(self) -> tuple[str, Any]:
        self._writable()
        key, value = self._data.popitem()
        self._dirty = True
        return key, self._hand_out(value)

    def update(self, other: Any = (), /, **kwargs: Any) -> None:
        pairs: Iterable[tuple[str, Any]]
        pairs = other.items() if hasattr(other, "items") else other
        for key, value in pairs:
            self[key] = value
        for key, value in kwargs.items():
            self[key] = value

    def clear(self) -> None:
        if self._data:
            self._writable()
            self._data.clear()
            self._dirty = True

    def changed(self) -> None:
        """Mark the session as changed, so it is saved even if nothing seems different.

        After a lost race with another request, every key this request holds
        is written over the other request's (and every key it deleted stays
        deleted), as if each had been set again.
        """
        self._writable()
        self._dirty = self._forced = True

    # -- lifecycle -------------------------------------------------------------

    def invalidate(self) -> None:
        """End this session: its record is deleted and its cookie expired.

        The object stays usable: anything stored in it afterwards in the same
        request starts a new session under a new id (a flash message after
        logging out, say).
        """
        self._writable()
        if self._key is not None:
            self._ended.append(self._key)
        if self._moved_from is not None:
            self._ended.append(self._moved_from[0])
            self._moved_from = None
        self._data = {}
        self._id = self._key = self._version = self._loaded_bytes = None
        self.created = int(time.time())
        self.new = True
        self._userid = None
        self._timeout = None
        self._dirty = self._exposed = self._forced = False
        self._user_changed = self._timeout_changed = False

    def regenerate_id(self) -> None:
        """Give the session a new id, keeping its data; the old record is deleted.

        Call it on login, so an id an attacker planted before login is worth
        nothing after it (session fixation: OWASP Session Management Cheat
        Sheet, "Renew the Session ID After Any Privilege Level Change").

        The move happens at the end of the request, and only if the old
        record is still what this request loaded, unchanged by a logout
        elsewhere meanwhile: a session ended by another request (``invalidate``,
        ``invalidate_user_sessions``) is never brought back under a new id.
        """
        self._writable()
        if self._key is not None:
            self._moved_from = (self._key, self._version, self._id)
        self._id = self._key = self._version = None
        self._dirty = True

    def bind_user(self, userid: Any) -> None:
        """Record *userid* as the owner, for ``invalidate_user_sessions``.

        Binding a user other than the current owner (including the first
        binding of a stored anonymous session) gives the session a new id.
        """
        if type(userid) not in (str, int):
            raise TypeError(f"userid must be a str or int, not {type(userid).__name__}")
        if type(userid) is str:
            if len(_utf8(userid, "userid")) > MAX_USERID_BYTES:
                raise ValueError(f"userid must be at most {MAX_USERID_BYTES} bytes in UTF-8")
        elif not -(10**18) < userid < 10**18:
            raise ValueError("an int userid must be less than 10**18 in size")
        if userid == self._userid:
            return
        self._writable()
        if self._id is not None:
            self.regenerate_id()
        self._userid = userid
        self._user_changed = True

    @property
    def userid(self) -> Any:
        """The user bound with :meth:`bind_user`, or None."""
        return self._userid

    def set_timeout(self, seconds: int | None) -> None:
        """Set this session's idle timeout ("remember me"); None restores the default."""
        if seconds is not None and (type(seconds) is not int or not 1 <= seconds <= MAX_SECONDS):
            raise ValueError(
                f"timeout must be whole seconds from 1 to {MAX_SECONDS}, got {seconds!r}"
            )
        if seconds != self._timeout:
            self._writable()
            self._timeout = seconds
            self._timeout_changed = True

    @property
    def timeout(self) -> int | None:
        """This session's own idle timeout, or None when it uses the factory's."""
        return self._timeout

    # -- flash -----------------------------------------------------------------

    def flash(self, msg: Any, queue: str = "", allow_duplicate: bool = True) -> None:
        """Add *msg* to the flash queue *queue*."""
        storage = self._data.get(FLASH_PREFIX + queue)
        if storage is None:
            self[FLASH_PREFIX + queue] = [msg]
            return
        if allow_duplicate or msg not in storage:
            self._writable()
            self._check([msg], FLASH_PREFIX + queue)  # it sits one level down, in the list
            storage.append(msg)
            self._dirty = True

    def pop_flash(self, queue: str = "") -> list[Any]:
        """Remove and return the messages of the flash queue *queue*."""
        result: list[Any] = self.pop(FLASH_PREFIX + queue, [])
        return result

    def peek_flash(self, queue: str = "") -> list[Any]:
        """Return the messages of the flash queue *queue*, leaving them there."""
        result: list[Any] = self.get(FLASH_PREFIX + queue, [])
        return result

    # -- CSRF ------------------------------------------------------------------

    def new_csrf_token(self) -> str:
        """Create, store and return a new CSRF token (40 hex digits, 160 bits).

        Kept under ``_csrft_``, as Pyramid's own sessions keep it, so
        ``pyramid.csrf.SessionCSRFStoragePolicy`` and the legacy policy work
        unchanged (Pyramid docs, "Preventing Cross-Site Request Forgery Attacks").
        """
        token = secrets.token_hex(20)
        self[CSRF_KEY] = token
        return token

    def get_csrf_token(self) -> str:
        """Return the CSRF token, creating (and storing) one if there is none."""
        token = self._data.get(CSRF_KEY)
        if token is None:
            token = self.new_csrf_token()
        return str(token)
