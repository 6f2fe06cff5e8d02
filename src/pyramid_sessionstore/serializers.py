"""Turn session data into bytes and back: tagged JSON (default), msgpack, pickle.

The default JSON serializer gives back what was put in for the types people
keep in sessions. Types JSON lacks (tuple, bytes, set, frozenset, datetime,
date, time, Decimal, UUID) are tagged, so nothing silently turns into a string
or a list: a tag is a one-key object whose key starts with a space
(``{" t": [1, 2]}``), and any dict with string keys round-trips. A subclass of
``str``, ``int`` or ``float`` (markupsafe's ``Markup``, an ``IntEnum`` or
``(str, Enum)`` member) is stored as its base value, as Pyramid's own cookie
sessions store it: what comes back is the plain ``str``, ``int`` or ``float``.

Two promises hold for the JSON and msgpack serializers, so that nothing fails
after the view returned:

- ``check(value, key)`` refuses at assignment what ``dumps`` would refuse:
  other types, non-text keys, text UTF-8 cannot encode (a lone surrogate),
  integers the format cannot hold, nesting deeper than ``MAX_DEPTH`` (200).
- Whatever ``loads`` returns, ``dumps`` takes again. Bytes that are not what
  ``dumps`` writes (bad JSON, a bad or unknown tag, a non-text key, too deep)
  raise :class:`CorruptDataError`, a ``ValueError``.

Pickle is never chosen implicitly: it runs code on load, so only
``session.serializer = pickle`` enables it.
"""

from __future__ import annotations

import json
import pickle
from collections.abc import Callable
from typing import Any
from typing import Protocol
from typing import runtime_checkable

from ._tagged import MAX_DEPTH
from ._tagged import SCALARS as SCALARS  # session.py walks no scalar either
from ._tagged import SURROGATE_ESCAPE
from ._tagged import TOO_DEEP
from ._tagged import IntCheck
from ._tagged import Refused
from ._tagged import nests_deeper
from ._tagged import tag
from ._tagged import untag
from ._tagged import untag_tree

__all__ = [
    "MAX_DEPTH",
    "CorruptDataError",
    "JSONSerializer",
    "MsgpackSerializer",
    "PickleSerializer",
    "SerializationError",
    "Serializer",
    "checker_for",
    "serializer_by_name",
]

#: What a value check looks like: ``check(value, key)``, raising
#: :class:`SerializationError` that names ``session[key]``.
Check = Callable[[Any, str], None]


@runtime_checkable
class Serializer(Protocol):
    """What the factory needs of a serializer: ``dumps`` to bytes, ``loads`` back.

    ``loads`` should raise ``ValueError`` on bytes it cannot read (the factory
    treats any error there as a corrupt record: a fresh session).

    Optional: a ``check(value, key)`` method, which the session calls when a
    view assigns ``session[key] = value``, raising :class:`SerializationError`
    naming *key* for a value ``dumps`` would refuse. A serializer without it
    is checked at save only, after the view returned (:func:`checker_for`).
    """

    def dumps(self, appstruct: Any) -> bytes: ...

    def loads(self, bstruct: bytes) -> Any: ...


class SerializationError(TypeError):
    """A session value cannot be serialized; the message names the key."""


class CorruptDataError(ValueError):
    """Stored bytes are not what the serializer writes: a bad tag, type or nesting."""


def _json_ints(value: int) -> str | None:
    try:
        int.__repr__(value)  # as json writes it; refused past sys.get_int_max_str_digits()
    except ValueError:
        return "is an integer with more digits than Python converts to text"
    return None


_I64_MIN, _U64_MAX = -(2**63), 2**64 - 1


def _msgpack_ints(value: int) -> str | None:
    if _I64_MIN <= value <= _U64_MAX:
        return None
    return "is an integer msgpack cannot store (it keeps 64-bit integers)"


def _checker(low: int, high: int, ints: IntCheck) -> Check:
    """Return a tagged serializer's assignment-time check.

    ASCII text, integers in *low*..*high* and the other scalars pass without a
    walk (nearly free); anything else is walked as ``dumps`` walks it.
    """

    def check(value: Any, key: str) -> None:
        """Raise :class:`SerializationError` naming *key* if *value* cannot be stored."""
        kind = type(value)
        if kind is str:
            if value.isascii():
                return
        elif kind is int:
            if low <= value <= high:
                return
        elif kind in SCALARS:
            return
        # Inside the session's dict, which is escaped when its one key is space-led.
        try:
            tag(value, MAX_DEPTH - (3 if key[:1] == " " else 1), ints)
        except Refused as err:
            raise SerializationError(err.describe(f"session[{key!r}]")) from None

    return check


#: The JSON serializer's check, kept for callers of the module function
#: (integers under 2**2000 have fewer digits than any
#: ``sys.set_int_max_str_digits`` allows: 640 at least).
check: Check = _checker(-(2**2000), 2**2000, _json_ints)


def _accept(value: Any, key: str) -> None:
    """Accept any value: the serializer reports what it cannot store at save."""


def checker_for(serializer: object) -> Check:
    """Return *serializer*'s ``check(value, key)``, or a check accepting everything."""
    method = getattr(serializer, "check", None)
    return method if callable(method) else _accept


class _Tagged:
    """``dumps`` for the tagged formats: tag, encode, and name the value that failed."""

    _encode: Callable[[Any], bytes]
    _ints: IntCheck
    _fails: tuple[type[Exception], ...]  # what the encoder raises for a bad leaf

    def dumps(self, appstruct: Any) -> bytes:
        try:
            return self._encode(tag(appstruct))
        except Refused as err:
            raise SerializationError(err.describe("session")) from None
        except self._fails as err:
            try:  # walk again, checking the leaves, to say which value it was
                tag(appstruct, MAX_DEPTH, self._ints)
            except Refused as refused:
                raise SerializationError(refused.describe("session")) from err
            raise SerializationError(f"session data cannot be serialized: {err}") from err


_NESTS_DEEP = 2 * MAX_DEPTH  # shorter JSON cannot nest deeper than MAX_DEPTH


class JSONSerializer(_Tagged):
    """Tagged JSON: compact, UTF-8, safe to load from an untrusted store."""

    check = staticmethod(check)
    _ints = staticmethod(_json_ints)
    _fails = (UnicodeEncodeError, ValueError, RecursionError)

    def __init__(self) -> None:
        self._encoder = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))
        self._decoder = json.JSONDecoder(object_hook=untag)
        # What json.loads runs, minus its checks and whitespace regexes.
        self._scan = json.JSONDecoder().scan_once  # type: ignore[attr-defined]

    def _encode(self, tagged: Any) -> bytes:
        return self._encoder.encode(tagged).encode("utf-8")

    def loads(self, bstruct: bytes) -> Any:
        try:
            if len(bstruct) > _NESTS_DEEP and nests_deeper(bstruct):
                raise ValueError(TOO_DEEP)
            text = bstruct.decode("utf-8")
            # A tag is a key starting with a space: written '" ' or '"\u0020'.
            if '" ' in text or "\\u0020" in text:
                value = self._decoder.decode(text)
            else:
                # No tag can be inside: skip the Python object_hook, and scan what
                # dumps wrote (no surrounding space) directly; anything else gets
                # the full decoder (tags included) and json's errors.
                try:
                    value, end = self._scan(text, 0)
                except StopIteration:
                    end = -1
                if end != len(text):
                    value = self._decoder.decode(text)
            # Only a \u escape makes a lone surrogate, which dumps would refuse.
            if "\\" in text and SURROGATE_ESCAPE.search(text):
                tag(value, MAX_DEPTH, _json_ints)
        except Refused as err:
            raise CorruptDataError(err.describe("stored data")) from None
        except (ValueError, TypeError, RecursionError) as err:
            raise CorruptDataError(f"stored data is not tagged JSON: {err}") from err
        return value


class MsgpackSerializer(_Tagged):
    """Tagged msgpack through msgspec: smaller and faster than JSON for large sessions."""

    check = staticmethod(_checker(_I64_MIN, _U64_MAX, _msgpack_ints))
    _ints = staticmethod(_msgpack_ints)
    _fails = (UnicodeEncodeError, OverflowError, RecursionError)

    def __init__(self) -> None:
        try:
            import msgspec
        except ImportError as err:
            from .exceptions import missing_dependency

            raise missing_dependency("the msgpack serializer", "msgspec", "msgpack") from err
        self._encode = msgspec.msgpack.Encoder().encode
        self._decode = msgspec.msgpack.Decoder().decode

    def loads(self, bstruct: bytes) -> Any:
        try:
            return untag_tree(self._decode(bstruct))
        except (ValueError, TypeError, RecursionError) as err:
            raise CorruptDataError(f"stored data is not tagged msgpack: {err}") from err


class PickleSerializer:
    """Pickle, for apps that keep arbitrary objects. Loading a record runs code:
    only use it with a store nobody else can write to."""

    def check(self, value: Any, key: str) -> None:
        """Raise :class:`SerializationError` naming *key* if *value* cannot be pickled."""
        if type(value) not in SCALARS:
            try:
                pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
            except Exception as err:  # __reduce__ may raise anything
                raise SerializationError(f"session[{key!r}] cannot be pickled: {err}") from err

    def dumps(self, appstruct: Any) -> bytes:
        try:
            return pickle.dumps(appstruct, protocol=pickle.HIGHEST_PROTOCOL)
        except Exception as err:
            for key, value in appstruct.items() if type(appstruct) is dict else ():
                self.check(value, key)  # names the key
            raise SerializationError(f"session data cannot be pickled: {err}") from err

    def loads(self, bstruct: bytes) -> Any:
        try:
            return pickle.loads(bstruct)  # noqa: S301 - chosen by name, see class docstring
        except Exception as err:  # a bad pickle may raise anything
            raise CorruptDataError(f"stored data cannot be unpickled: {err}") from err


_BY_NAME: dict[str, Callable[[], Serializer]] = {
    "json": JSONSerializer,
    "msgpack": MsgpackSerializer,
    "pickle": PickleSerializer,
}


def serializer_by_name(name: str) -> Serializer | None:
    """Return a new serializer for a built-in *name*, or None when it is not one."""
    make = _BY_NAME.get(name.strip().lower())
    return None if make is None else make()
