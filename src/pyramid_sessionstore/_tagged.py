"""The tagged form the JSON and msgpack serializers share: types JSON lacks, as tags.

A tag is a one-key object whose key starts with a space (``{" t": [...]}``).
:func:`tag` turns session data into plain JSON types (and, asked to, checks
every leaf); :func:`untag` and :func:`untag_tree` turn tags back, refusing
anything :func:`tag` would not take again. This module knows no serializer,
no bytes format beyond JSON's brackets, and raises no public exception:
:class:`Refused` for a value that cannot be stored, ``ValueError`` for data
that is not what :func:`tag` writes. The serializers turn both into their
errors.
"""

from __future__ import annotations

import base64
import datetime
import re
import uuid
from collections.abc import Callable
from decimal import Decimal
from typing import Any

#: How deeply data may nest, counted as its serialized form nests (a list or
#: dict is one level, a tuple or set two, a bytes or date value one): the
#: bound keeps every walk far from Python's recursion limit.
MAX_DEPTH = 200

#: Values of these types are immutable and serialize as themselves: no walk needed.
SCALARS: frozenset[type] = frozenset({str, int, float, bool, type(None)})

IntCheck = Callable[[int], "str | None"]  # why an integer cannot be stored, or None

TOO_DEEP = f"nests deeper than {MAX_DEPTH} levels (or contains itself)"
_SURROGATE = re.compile(r"[\ud800-\udfff]")  # the only str UTF-8 cannot encode
_NOT_UTF8 = "holds text UTF-8 cannot encode (a lone surrogate such as '\\ud800')"
_ENCODERS: dict[type, tuple[str, Callable[[Any], Any]]] = {
    bytes: (" b", lambda v: base64.b64encode(v).decode("ascii")),
    datetime.datetime: (" dt", lambda v: v.isoformat()),
    datetime.date: (" d", lambda v: v.isoformat()),
    datetime.time: (" tm", lambda v: v.isoformat()),
    Decimal: (" dec", str),
    uuid.UUID: (" u", str),
}
_COLLECTIONS: dict[type, str] = {tuple: " t", set: " s", frozenset: " fs"}
# Subclasses kept as their base value. The base's own conversion gives the
# value where the subclass overrides __str__ (an Enum member gives its name).
_BASES: tuple[tuple[type, Callable[[Any], Any]], ...] = (
    (str, str.__str__),
    (int, int.__int__),
    (float, float.__float__),
)


def _quiet(value: Decimal) -> Decimal:
    if value.is_snan():
        raise ValueError("a signaling NaN")
    return value


def _pairs(pairs: list[Any]) -> dict[str, Any]:
    out = {}
    for pair in pairs:
        if type(pair) is not list or len(pair) != 2 or type(pair[0]) is not str:
            raise ValueError("expected [str, value] pairs")
        out[pair[0]] = pair[1]
    return out


# Tag -> (the type its payload must have, decoder).
_DECODERS: dict[str, tuple[type, Callable[[Any], Any]]] = {
    " b": (str, lambda v: base64.b64decode(v, validate=True)),
    " dt": (str, datetime.datetime.fromisoformat),
    " d": (str, datetime.date.fromisoformat),
    " tm": (str, datetime.time.fromisoformat),
    " dec": (str, lambda v: _quiet(Decimal(v))),
    " u": (str, uuid.UUID),
    " t": (list, tuple),
    " s": (list, set),
    " fs": (list, frozenset),
    " di": (list, _pairs),
}


class Refused(Exception):
    """A value :func:`tag` cannot store; containers add where it sits on the way out."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason
        self.where: list[str] = []

    def describe(self, path: str) -> str:
        """Return the reason, after *path* and where the value sits below it."""
        return f"{path}{''.join(reversed(self.where))} {self.reason}"


def tag(value: Any, room: int = MAX_DEPTH, ints: IntCheck | None = None) -> Any:
    """Return *value* as plain JSON types, tagging the types JSON lacks.

    One frame per level of nesting (loops inline), so *room* bounds the recursion.

    :param room: how many more levels of nesting the serialized form may take.
    :param ints: when given, also check the leaves: text must encode as UTF-8,
        and ``ints`` says why an integer cannot be stored.
    :raises Refused: for a value that cannot be stored.
    """
    kind = type(value)
    if kind in SCALARS:
        if ints is not None:
            if kind is str:
                if not value.isascii() and _SURROGATE.search(value):
                    raise Refused(_NOT_UTF8)
            elif kind is int and (reason := ints(value)) is not None:
                raise Refused(reason)
        return value
    if kind is dict:
        # A one-key dict whose key looks like a tag is stored as {" di": [[k, v]]},
        # which the decoder cannot mistake (it decodes objects bottom-up).
        escaped = False
        if len(value) == 1:
            first = next(iter(value))
            escaped = isinstance(first, str) and str.__str__(first)[:1] == " "
        room -= 3 if escaped else 1
        if room < 0:
            raise Refused(TOO_DEEP)
        out = {}
        for key, item in value.items():
            if type(key) is not str:
                if not isinstance(key, str):
                    raise Refused(
                        f"has a key {key!r} of type {type(key).__name__}; only str keys survive"
                    )
                key = str.__str__(key)
            if ints is not None and not key.isascii() and _SURROGATE.search(key):
                raise Refused(f"has a key {key!r} UTF-8 cannot encode (a lone surrogate)")
            try:
                out[key] = tag(item, room, ints)
            except Refused as err:
                err.where.append(f"[{key!r}]")
                raise
        return {" di": [[k, v] for k, v in out.items()]} if escaped else out
    if kind is list or kind in _COLLECTIONS:
        room -= 1 if kind is list else 2  # a tuple or set is {" t": [...]}
        if room < 0:
            raise Refused(TOO_DEEP)
        items: list[Any] = []
        try:
            for item in value:
                items.append(tag(item, room, ints))
        except Refused as err:
            err.where.append("{…}" if kind is set or kind is frozenset else f"[{len(items)}]")
            raise
        return items if kind is list else {_COLLECTIONS[kind]: items}
    encoder = _ENCODERS.get(kind)
    if encoder is not None:
        if room < 1:
            raise Refused(TOO_DEEP)
        if kind is Decimal and value.is_snan():
            raise Refused("is a signaling NaN, which cannot even be compared")
        return {encoder[0]: encoder[1](value)}
    for base, to_base in _BASES:
        if isinstance(value, base):
            return tag(to_base(value), room, ints)
    raise Refused(
        f"is a {kind.__module__}.{kind.__qualname__}, which the session serializer"
        " cannot store; store plain data, or configure another serializer"
    )


def untag(obj: dict[str, Any]) -> Any:
    """Turn a tagged one-key object back into its value (a JSON ``object_hook``).

    :raises ValueError: for an unknown tag, or a tag holding a bad payload.
    """
    if len(obj) != 1:
        return obj
    name, payload = next(iter(obj.items()))
    if name[:1] != " ":
        return obj
    wanted, decode = _DECODERS.get(name, (None, None))
    if decode is None or type(payload) is not wanted:
        raise ValueError(f"unknown tag {name!r}, or it holds a {type(payload).__name__}")
    try:
        return decode(payload)
    except (ValueError, TypeError, ArithmeticError) as err:  # Decimal: InvalidOperation
        raise ValueError(f"tag {name!r} holds a bad value: {err}") from err


def untag_tree(value: Any, room: int = MAX_DEPTH) -> Any:
    """Untag a decoded msgpack tree bottom-up, refusing what :func:`tag` would refuse.

    :raises ValueError: for a non-text key, an extension type, a bad tag, or
        nesting past *room*.
    """
    kind = type(value)
    if kind in SCALARS:  # msgspec gives valid UTF-8 and 64-bit integers only
        return value
    room -= 1
    if room < 0:
        raise ValueError(TOO_DEEP)
    if kind is list:
        items = []
        for item in value:
            items.append(untag_tree(item, room))
        return items
    if kind is dict:
        out = {}
        for key, item in value.items():
            if type(key) is not str:
                raise ValueError(f"a key of type {type(key).__name__}")
            out[key] = untag_tree(item, room)
        return untag(out)
    if kind is bytes or kind is datetime.datetime:  # msgpack bin and timestamp: tag tags them
        return value
    raise ValueError(f"a value of type {kind.__qualname__}")


SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")  #: the only JSON text for a lone surrogate
_SKELETON = bytes.maketrans(b"{}", b"[]")  # objects and arrays nest alike
_NOT_SKELETON = bytes(sorted(set(range(256)) - set(b'[]{}"')))
_BACKSLASH, _QUOTE = ord("\\"), ord('"')


def nests_deeper(data: bytes, limit: int = MAX_DEPTH) -> bool:
    """Return whether valid JSON *data* nests arrays and objects deeper than *limit*.

    C-speed string operations, no walk: drop escapes (``\\\\`` pairs first, so
    a quote left after a backslash is inside a string), keep brackets and
    quotes, drop the strings, then remove one level of ``[]`` per pass.
    """
    if _BACKSLASH in data:  # (an int: bytes' "in" with a bytes needle costs 10 times more)
        data = data.replace(b"\\\\", b"").replace(b'\\"', b"")
    skeleton = data.translate(_SKELETON, _NOT_SKELETON)
    if skeleton.count(b"[") <= limit:  # too few to nest that deep: the usual answer
        return False
    skeleton = skeleton.replace(b'""', b"")  # strings without brackets
    if _QUOTE in skeleton:  # strings holding brackets: keep what is outside them
        skeleton = b"".join(skeleton.split(b'"')[::2])
    for _ in range(limit):
        if not skeleton:
            return False
        skeleton = skeleton.replace(b"[]", b"")
    return bool(skeleton)
