"""Turn session data into bytes and back: tagged JSON (default), msgpack, pickle.

The default JSON serializer gives back what was put in for the types people
keep in sessions. Types JSON lacks (tuple, bytes, set, frozenset, datetime,
date, time, Decimal, UUID) are tagged, so nothing silently turns into a string
or a list. A tag is a one-key object whose key starts with a space
(``{" t": [...]}``); a user's own one-key dict with such a key is stored as
key/value pairs, so any dict with string keys round-trips.

Pickle is never chosen implicitly: it runs code on load, so only
``session.serializer = pickle`` enables it.
"""

from __future__ import annotations

import base64
import datetime
import json
import pickle
import uuid
from collections.abc import Callable
from decimal import Decimal
from typing import Any
from typing import Protocol
from typing import runtime_checkable

__all__ = [
    "JSONSerializer",
    "MsgpackSerializer",
    "PickleSerializer",
    "Serializer",
    "SerializationError",
    "serializer_by_name",
]


@runtime_checkable
class Serializer(Protocol):
    """What the factory needs of a serializer: ``dumps`` to bytes, ``loads`` back."""

    def dumps(self, appstruct: Any) -> bytes: ...

    def loads(self, bstruct: bytes) -> Any: ...


class SerializationError(TypeError):
    """A session value cannot be serialized; the message names the key."""


# Values of these types are immutable and serialize as themselves: no walk needed.
SCALARS: frozenset[type] = frozenset({str, int, float, bool, type(None)})

_ENCODERS: dict[type, tuple[str, Callable[[Any], Any]]] = {
    bytes: (" b", lambda v: base64.b64encode(v).decode("ascii")),
    datetime.datetime: (" dt", lambda v: v.isoformat()),
    datetime.date: (" d", lambda v: v.isoformat()),
    datetime.time: (" tm", lambda v: v.isoformat()),
    Decimal: (" dec", str),
    uuid.UUID: (" u", str),
}

_DECODERS: dict[str, Callable[[Any], Any]] = {
    " b": lambda v: base64.b64decode(v),
    " dt": datetime.datetime.fromisoformat,
    " d": datetime.date.fromisoformat,
    " tm": datetime.time.fromisoformat,
    " dec": Decimal,
    " u": uuid.UUID,
    " t": tuple,
    " s": set,
    " fs": frozenset,
    " di": lambda pairs: {k: v for k, v in pairs},
}


def tag(value: Any, path: str = "") -> Any:
    """Return *value* as plain JSON types, tagging the types JSON lacks.

    :param path: where *value* sits, named in the error when it cannot be tagged.
    """
    kind = type(value)
    if kind in SCALARS:
        return value
    if kind is list:
        return [tag(item, f"{path}[{i}]") for i, item in enumerate(value)]
    if kind is dict:
        out = {}
        for key, item in value.items():
            if type(key) is not str:
                raise SerializationError(
                    f"{path or 'value'} has a key {key!r} of type {type(key).__name__};"
                    " only str keys survive JSON"
                )
            out[key] = tag(item, f"{path}[{key!r}]")
        if len(out) == 1 and next(iter(out)).startswith(" "):
            # A user's dict that looks like a tag: store it as key/value pairs,
            # which the decoder cannot mistake (it decodes objects bottom-up).
            return {" di": [[k, v] for k, v in out.items()]}
        return out
    if kind is tuple:
        return {" t": [tag(item, f"{path}[{i}]") for i, item in enumerate(value)]}
    if kind is set or kind is frozenset:
        items = [tag(item, f"{path}{{…}}") for item in value]
        return {" s" if kind is set else " fs": items}
    encoder = _ENCODERS.get(kind)
    if encoder is not None:
        name, encode = encoder
        return {name: encode(value)}
    raise SerializationError(
        f"{path or 'value'} is a {kind.__module__}.{kind.__qualname__}, which the session"
        " serializer cannot store; store plain data, or configure another serializer"
    )


def untag(obj: dict[str, Any]) -> Any:
    """Turn a tagged one-key object back into its value (a JSON ``object_hook``)."""
    if len(obj) == 1:
        name, value = next(iter(obj.items()))
        decode = _DECODERS.get(name)
        if decode is not None:
            return decode(value)
    return obj


def _untag_tree(value: Any) -> Any:
    """Apply :func:`untag` bottom-up to a decoded msgpack tree."""
    if type(value) is list:
        return [_untag_tree(item) for item in value]
    if type(value) is dict:
        return untag({k: _untag_tree(v) for k, v in value.items()})
    return value


def check(value: Any, key: str) -> None:
    """Raise :class:`SerializationError` naming *key* if *value* cannot be stored."""
    if type(value) not in SCALARS:
        tag(value, f"session[{key!r}]")


class JSONSerializer:
    """Tagged JSON: compact, UTF-8, safe to load from an untrusted store."""

    def __init__(self) -> None:
        self._encoder = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))
        self._decoder = json.JSONDecoder(object_hook=untag)
        # What json.loads runs, minus its checks and whitespace regexes.
        self._scan = json.JSONDecoder().scan_once  # type: ignore[attr-defined]

    def dumps(self, appstruct: Any) -> bytes:
        return self._encoder.encode(tag(appstruct)).encode("utf-8")

    def loads(self, bstruct: bytes) -> Any:
        text = bstruct.decode("utf-8")
        if '{" ' in text:
            return self._decoder.decode(text)
        # No tag can be inside: skip the Python object_hook, and scan what dumps
        # wrote (no surrounding space) directly; anything else gets json's errors.
        try:
            value, end = self._scan(text, 0)
        except StopIteration:
            end = -1
        return value if end == len(text) else json.loads(text)


class MsgpackSerializer:
    """Tagged msgpack through msgspec: smaller and faster than JSON for large sessions."""

    def __init__(self) -> None:
        try:
            import msgspec
        except ImportError as err:
            from .exceptions import missing_dependency

            raise missing_dependency("the msgpack serializer", "msgspec", "msgpack") from err
        self._encode = msgspec.msgpack.Encoder().encode
        self._decode = msgspec.msgpack.Decoder().decode

    def dumps(self, appstruct: Any) -> bytes:
        try:
            return bytes(self._encode(tag(appstruct)))
        except OverflowError as err:
            raise SerializationError(
                f"session data holds an integer msgpack cannot store (it keeps 64-bit"
                f" integers): {err}"
            ) from err

    def loads(self, bstruct: bytes) -> Any:
        return _untag_tree(self._decode(bstruct))


class PickleSerializer:
    """Pickle, for apps that keep arbitrary objects. Loading a record runs code:
    only use it with a store nobody else can write to."""

    def dumps(self, appstruct: Any) -> bytes:
        try:
            return pickle.dumps(appstruct, protocol=pickle.HIGHEST_PROTOCOL)
        except (pickle.PicklingError, TypeError, AttributeError) as err:
            raise SerializationError(f"session data cannot be pickled: {err}") from err

    def loads(self, bstruct: bytes) -> Any:
        return pickle.loads(bstruct)  # noqa: S301 - chosen by name, see class docstring


_BY_NAME: dict[str, Callable[[], Serializer]] = {
    "json": JSONSerializer,
    "msgpack": MsgpackSerializer,
    "pickle": PickleSerializer,
}


def serializer_by_name(name: str) -> Serializer | None:
    """Return a new serializer for a built-in *name*, or None when it is not one."""
    make = _BY_NAME.get(name.strip().lower())
    return None if make is None else make()
