"""Serializers: tagged JSON round-trips the types people keep in sessions."""

from __future__ import annotations

import datetime
import uuid
from decimal import Decimal
from typing import Any

import pytest

from pyramid_sessionstore.serializers import JSONSerializer
from pyramid_sessionstore.serializers import MsgpackSerializer
from pyramid_sessionstore.serializers import PickleSerializer
from pyramid_sessionstore.serializers import SerializationError
from pyramid_sessionstore.serializers import serializer_by_name

VALUES: dict[str, Any] = {
    "str": "héllo \x00 ✓",
    "int": 2**70,
    "float": 1.5,
    "bool": True,
    "none": None,
    "list": [1, [2, [3]]],
    "dict": {"a": {"b": 1}},
    "tuple": (1, (2, "x")),
    "bytes": b"\x00\xff",
    "set": {1, 2},
    "frozenset": frozenset({"a"}),
    "datetime": datetime.datetime(2024, 1, 2, 3, 4, 5, 6),
    "aware": datetime.datetime(2024, 1, 2, tzinfo=datetime.timezone(datetime.timedelta(hours=2))),
    "date": datetime.date(2024, 1, 2),
    "time": datetime.time(3, 4, 5),
    "decimal": Decimal("0.10"),
    "uuid": uuid.UUID("12345678-1234-5678-1234-567812345678"),
    "tag-lookalike": {" t": [1, 2]},
    "escaped-lookalike": {" di": {" t": 1}},
}


@pytest.mark.parametrize("serializer", [JSONSerializer(), MsgpackSerializer(), PickleSerializer()])
@pytest.mark.parametrize("name", sorted(VALUES))
def test_value_round_trips_with_its_type(serializer: Any, name: str) -> None:
    value = VALUES[name]
    if name == "int" and isinstance(serializer, MsgpackSerializer):
        value = 2**63 - 1  # msgpack integers are 64-bit
    back = serializer.loads(serializer.dumps({"v": value}))["v"]
    assert back == value and type(back) is type(value)


def test_non_string_dict_key_is_refused_naming_the_path() -> None:
    with pytest.raises(SerializationError, match="'outer'"):
        JSONSerializer().dumps({"outer": {1: "x"}})


def test_unknown_type_is_refused_naming_the_path() -> None:
    with pytest.raises(SerializationError, match=r"\['k'\]\[0\]"):
        JSONSerializer().dumps({"k": [object()]})


def test_names() -> None:
    assert isinstance(serializer_by_name("JSON"), JSONSerializer)
    assert isinstance(serializer_by_name("pickle"), PickleSerializer)
    assert serializer_by_name("yaml") is None


def test_msgpack_refuses_integers_past_64_bits_clearly() -> None:
    with pytest.raises(SerializationError, match="64-bit"):
        MsgpackSerializer().dumps({"big": 2**70})


@pytest.mark.parametrize("stored", [b' {"a": 1} ', b'{"a":1}', b'\n{"a":1}'])
def test_json_loads_what_other_writers_space_out(stored: bytes) -> None:
    assert JSONSerializer().loads(stored) == {"a": 1}


@pytest.mark.parametrize("stored", [b"", b"{} x", b'{"a":1}}', b"nul", b"[1,"])
def test_json_refuses_what_is_not_one_json_document(stored: bytes) -> None:
    with pytest.raises(ValueError):
        JSONSerializer().loads(stored)
