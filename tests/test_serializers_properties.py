"""Hypothesis: what loads returns, dumps takes; what check accepts, dumps writes."""

from __future__ import annotations

import datetime
import enum
import json
import math
import uuid
from decimal import Decimal
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st
from markupsafe import Markup

from pyramid_sessionstore._tagged import nests_deeper
from pyramid_sessionstore.serializers import JSONSerializer
from pyramid_sessionstore.serializers import MsgpackSerializer
from pyramid_sessionstore.serializers import SerializationError

JSON, MSGPACK = JSONSerializer(), MsgpackSerializer()
TAGS = [" b", " dt", " d", " tm", " dec", " u", " t", " s", " fs", " di", " x", " "]
# Payloads that decode, next to the random ones that mostly do not.
GOOD_PAYLOADS = ["AAEC", "2024-01-02", "2024-01-02T03:04:05", "03:04", "1.5", str(uuid.uuid4())]
SURROGATES = st.sampled_from(["\ud800", "a\udfffb", "\udbff\udc00"])  # the last one is a pair

leaves = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False)
    | st.text(max_size=8)
    | st.sampled_from(GOOD_PAYLOADS)
    | SURROGATES
)


def documents(keys: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Trees another writer could store: plain JSON plus one-key tag look-alikes."""

    def nest(inner: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
        tagged = st.builds(lambda name, payload: {name: payload}, st.sampled_from(TAGS), inner)
        pairs = st.lists(st.lists(inner, min_size=1, max_size=3), max_size=3)
        escaped = st.builds(lambda pairs: {" di": pairs}, pairs)
        return (
            st.lists(inner, max_size=4)
            | st.dictionaries(keys, inner, max_size=3)
            | tagged
            | escaped
        )

    return st.recursive(leaves, nest, max_leaves=16)


def same(a: Any, b: Any) -> bool:
    """Equality that also holds for a float nan inside (json writes NaN for it)."""
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a):
        return math.isnan(b)
    return bool(a == b)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(doc=documents(st.text(max_size=4) | SURROGATES))
def test_whatever_json_loads_returns_dumps_again(doc: Any) -> None:
    data = json.dumps(doc).encode()  # ensure_ascii: surrogates become \\u escapes
    try:
        value = JSON.loads(data)
    except ValueError:
        return
    again = JSON.dumps(value)
    assert same(JSON.loads(again), value)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(doc=documents(st.text(max_size=4) | st.integers() | st.none() | st.binary(max_size=3)))
def test_whatever_msgpack_loads_returns_dumps_again(doc: Any) -> None:
    try:
        data = msgspec.msgpack.encode(doc)
    except (TypeError, OverflowError, UnicodeEncodeError):
        return  # not msgpack at all: no writer could have stored it
    try:
        value = MSGPACK.loads(data)
    except ValueError:
        return
    assert same(MSGPACK.loads(MSGPACK.dumps(value)), value)


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=64))
def test_any_stored_bytes_load_or_raise_a_value_error(data: bytes) -> None:
    for serializer in (JSON, MSGPACK):
        try:
            value = serializer.loads(data)
        except ValueError:
            continue
        serializer.dumps(value)


class Colour(str, enum.Enum):
    RED = "red"


class Size(enum.IntEnum):
    BIG = 3


scalars = st.one_of(
    leaves,
    st.binary(max_size=4),
    st.sampled_from([Markup("<b>"), Colour.RED, Size.BIG, 2**64, -(2**63) - 1]),
    st.builds(pow, st.just(10), st.just(5000)),  # more digits than int() writes
    st.sampled_from([Decimal("1.5"), datetime.date(2024, 1, 2), uuid.UUID(int=1), object()]),
)
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.text(max_size=3) | SURROGATES | st.integers(), inner, max_size=3)
        | st.tuples(inner, inner)
        | st.frozensets(st.text(max_size=3) | st.integers(), max_size=3)
    ),
    max_leaves=10,
)


@pytest.mark.parametrize("serializer", [JSON, MSGPACK], ids=["json", "msgpack"])
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(value=values, key=st.sampled_from(["k", " t"]))
def test_check_accepts_exactly_what_dumps_writes(serializer: Any, value: Any, key: str) -> None:
    try:
        serializer.check(value, key)
    except SerializationError:
        with pytest.raises(SerializationError):
            serializer.dumps({key: value})
        return
    back = serializer.loads(serializer.dumps({key: value}))
    assert same(back[key], value)


def depth(value: Any) -> int:
    if isinstance(value, (list, dict)):
        children = value.values() if isinstance(value, dict) else value
        return 1 + max((depth(child) for child in children), default=0)
    return 0


tricky_text = st.text(alphabet='[]{}"\\ab\u00e9', max_size=6)
json_values = st.recursive(
    st.integers() | tricky_text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(tricky_text, inner, max_size=3),
    max_leaves=20,
)


@settings(max_examples=500, deadline=None)
@given(value=json_values, limit=st.integers(min_value=0, max_value=6), ascii=st.booleans())
def test_nests_deeper_reads_the_depth_from_the_text(value: Any, limit: int, ascii: bool) -> None:
    data = json.dumps(value, ensure_ascii=ascii).encode()
    assert nests_deeper(data, limit) is (depth(value) > limit)
