"""Serializers: tagged JSON round-trips the types people keep in sessions."""

from __future__ import annotations

import datetime
import enum
import functools
import json
import re
import sys
import threading
import timeit
import uuid
from decimal import Decimal
from fractions import Fraction
from typing import Any

import msgspec
import pytest
from markupsafe import Markup

from pyramid_sessionstore.serializers import MAX_DEPTH
from pyramid_sessionstore.serializers import CorruptDataError
from pyramid_sessionstore.serializers import JSONSerializer
from pyramid_sessionstore.serializers import MsgpackSerializer
from pyramid_sessionstore.serializers import PickleSerializer
from pyramid_sessionstore.serializers import SerializationError
from pyramid_sessionstore.serializers import Serializer
from pyramid_sessionstore.serializers import check
from pyramid_sessionstore.serializers import checker_for
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


# -- hostile stored data: what loads gives back, dumps takes again (issue 10) --

TAGGED = [JSONSerializer(), MsgpackSerializer()]


def stored(serializer: Any, doc: Any) -> bytes:
    """Return *doc* as another writer would have stored it for *serializer*."""
    if isinstance(serializer, JSONSerializer):
        return json.dumps(doc).encode()
    return bytes(msgspec.msgpack.encode(doc))


@pytest.mark.parametrize("serializer", TAGGED, ids=["json", "msgpack"])
@pytest.mark.parametrize(
    "doc",
    [
        {"k": {" di": [[1, "x"]]}},  # a key that is not text
        {" di": [[None, 1]]},
        {"k": {" di": [["a"]]}},
        {"k": {" di": "ab"}},
        {"k": {" b": "!!!!"}},  # base64 with characters outside the alphabet
        {"k": {" b": "QUI"}},  # missing padding
        {"k": {" b": ["QUJD"]}},
        {"k": {" dt": 5}},
        {"k": {" dt": "yesterday"}},
        {"k": {" d": None}},
        {"k": {" tm": "25:00"}},
        {"k": {" dec": [0, [1], 0]}},
        {"k": {" dec": "one"}},
        {"k": {" u": 5}},
        {"k": {" u": "not-a-uuid"}},
        {"k": {" t": "ab"}},
        {"k": {" s": [[1]]}},  # an unhashable member
        {"k": {" fs": [{"a": 1}]}},
        {"k": {" zz": 1}},  # an unknown tag
    ],
)
def test_a_bad_tag_is_corrupt_data_not_a_value(serializer: Any, doc: Any) -> None:
    with pytest.raises(CorruptDataError):
        serializer.loads(stored(serializer, doc))


def test_msgpack_map_keys_that_are_not_text_are_corrupt() -> None:
    for doc in ({1: "x"}, {"k": {None: 1}}, {"k": [{(1, 2): 1}]}):
        with pytest.raises(CorruptDataError, match="key of type"):
            MsgpackSerializer().loads(stored(MsgpackSerializer(), doc))


def test_msgpack_extension_types_are_corrupt() -> None:
    data = msgspec.msgpack.encode({"k": msgspec.msgpack.Ext(5, b"x")})
    with pytest.raises(CorruptDataError):
        MsgpackSerializer().loads(data)


@pytest.mark.parametrize("serializer", TAGGED, ids=["json", "msgpack"])
def test_msgpack_and_json_load_what_they_cannot_nest_as_corrupt(serializer: Any) -> None:
    deep: Any = "x"
    for _ in range(MAX_DEPTH + 1):
        deep = [deep]
    with pytest.raises(CorruptDataError, match="deeper"):
        serializer.loads(stored(serializer, {"k": deep}))


@pytest.mark.parametrize("data", [b"[" * 100_000, b'{"a":' * 50_000, b"\x91" * 100_000])
def test_bytes_nested_past_the_stack_are_corrupt_not_a_recursion_error(data: bytes) -> None:
    for serializer in TAGGED:
        with pytest.raises(CorruptDataError):
            serializer.loads(data)


def test_json_text_with_a_lone_surrogate_is_corrupt() -> None:
    # json reads "\ud800" as a lone surrogate, which UTF-8 (and so dumps) cannot write.
    for doc in (b'{"k":"\\ud800"}', b'{"k":["ok","a\\udfffb"]}', b'{"\\ud800":1}'):
        with pytest.raises(CorruptDataError, match="UTF-8"):
            JSONSerializer().loads(doc)
    assert JSONSerializer().loads(b'{"k":"\\ud83d\\ude00 \\\\ud800"}') == {"k": "😀 \\ud800"}


def test_what_dumps_writes_at_the_depth_limit_loads_back() -> None:
    for serializer in TAGGED:
        for inner in ("x", (1,), b"\x00"):
            value: Any = inner
            levels = MAX_DEPTH - 1 - (0 if type(inner) is str else 1 if type(inner) is bytes else 2)
            for _ in range(levels):
                value = [value]
            data = serializer.dumps({"k": value})
            assert serializer.loads(data) == {"k": value}


def test_corrupt_data_is_a_value_error() -> None:
    assert issubclass(CorruptDataError, ValueError)
    with pytest.raises(CorruptDataError):
        JSONSerializer().loads(b"\xff")
    with pytest.raises(CorruptDataError):
        PickleSerializer().loads(b"not a pickle")


# -- values refused where the view can handle them (issue 10, items 19, 22) --


@pytest.mark.parametrize(
    ("value", "where"),
    [
        ("\ud800", "session['k']"),
        (["ok", "a\udfff"], r"session['k'][1]"),
        ({"in": {"x": "\ud800"}}, "session['k']['in']['x']"),
        ({"\ud800": 1}, "session['k']"),
        (("a", "\ud800"), "session['k'][1]"),
        ({"\ud800"}, "session['k']{…}"),
    ],
)
def test_text_utf8_cannot_encode_is_refused_at_assignment(value: Any, where: str) -> None:
    for serializer in TAGGED:
        with pytest.raises(SerializationError, match=re.escape(where)):
            serializer.check(value, "k")
        with pytest.raises(SerializationError, match=re.escape(where)):
            serializer.dumps({"k": value})  # never a UnicodeEncodeError


def test_json_refuses_integers_python_will_not_write_as_text() -> None:
    huge = 10**5000
    with pytest.raises(SerializationError, match=r"session\['k'\] is an integer"):
        check(huge, "k")
    with pytest.raises(SerializationError, match=r"session\['k'\]\[0\] is an integer"):
        JSONSerializer().dumps({"k": [huge]})
    check(10**4000, "k")  # under the default limit of 4300 digits
    assert JSONSerializer().loads(JSONSerializer().dumps({"k": 10**4000})) == {"k": 10**4000}


def test_msgpack_checks_its_64_bit_integers_at_assignment() -> None:
    checker = checker_for(MsgpackSerializer())
    checker(2**64 - 1, "k")
    checker(-(2**63), "k")
    for bad in (2**64, -(2**63) - 1, [1, 2**64]):
        with pytest.raises(SerializationError, match=r"session\['k'\].* 64-bit"):
            checker(bad, "k")
    check(2**64, "k")  # JSON has no such limit


def test_nesting_past_the_limit_or_a_cycle_is_refused_at_assignment() -> None:
    deep: Any = 1
    for _ in range(MAX_DEPTH):
        deep = [deep]
    cycle: list[Any] = []
    cycle.append(cycle)
    for value in (deep, cycle, {"a": cycle}):
        for serializer in TAGGED:
            with pytest.raises(SerializationError, match="deeper"):
                serializer.check(value, "k")
            with pytest.raises(SerializationError, match="deeper"):
                serializer.dumps({"k": value})


def test_the_check_and_dumps_agree_at_the_depth_limit() -> None:
    for key in ("k", " t"):  # a lone space-led key is stored escaped, two levels deeper
        value: Any = 1
        for _ in range(MAX_DEPTH - (3 if key == " t" else 1)):
            value = [value]
        check(value, key)
        JSONSerializer().dumps({key: value})
        with pytest.raises(SerializationError):
            check([value], key)
        with pytest.raises(SerializationError):
            JSONSerializer().dumps({key: [value]})


# -- subclasses of str, int and float are stored as their base value (item 18) --


class Colour(str, enum.Enum):
    RED = "red"


class Size(enum.IntEnum):
    BIG = 3


class Flags(enum.IntFlag):
    A = 1
    B = 2


class Meters(float):
    def __repr__(self) -> str:
        return "Meters!"


def subclassed() -> list[tuple[Any, Any]]:
    values: list[tuple[Any, Any]] = [
        (Markup("<b>hi</b>"), "<b>hi</b>"),
        (Colour.RED, "red"),
        (Size.BIG, 3),
        (Flags.A | Flags.B, 3),
        (Meters(1.5), 1.5),
    ]
    if sys.version_info >= (3, 11):
        values.append((enum.StrEnum("Mood", {"HAPPY": "glad"}).HAPPY, "glad"))
    return values


@pytest.mark.parametrize("serializer", TAGGED, ids=["json", "msgpack"])
@pytest.mark.parametrize(("value", "plain"), subclassed())
def test_a_str_int_or_float_subclass_comes_back_as_its_base_value(
    serializer: Any, value: Any, plain: Any
) -> None:
    serializer.check(value, "k")
    serializer.check({"nested": [value]}, "k")
    data = {"k": value, "list": [value], "keyed": {value: 1} if isinstance(value, str) else {}}
    back = serializer.loads(serializer.dumps(data))
    assert back["k"] == plain and type(back["k"]) is type(plain)
    assert back["list"] == [plain] and type(back["list"][0]) is type(plain)
    if isinstance(value, str):
        (key,) = back["keyed"]
        assert key == plain and type(key) is str


def test_a_flashed_markup_message_is_stored_as_text() -> None:
    data = {"_f_": [Markup("<i>saved</i>")]}
    assert JSONSerializer().dumps(data) == b'{"_f_":["<i>saved</i>"]}'


def test_a_plain_enum_member_is_still_refused_naming_the_key() -> None:
    class Plain(enum.Enum):
        A = 1

    with pytest.raises(SerializationError, match=r"session\['k'\] is a .*Plain"):
        check(Plain.A, "k")


# -- each serializer checks what it can store (item 22) --


def test_pickle_checks_by_pickling_so_it_accepts_any_picklable_object() -> None:
    checker = checker_for(PickleSerializer())
    checker(datetime.timedelta(days=1), "k")
    checker(Decimal("1.5"), "k")
    checker(Fraction(1, 3), "k")
    with pytest.raises(SerializationError, match=r"session\['k'\] cannot be pickled"):
        checker(lambda: None, "k")
    with pytest.raises(SerializationError, match=r"session\['bad'\] cannot be pickled"):
        PickleSerializer().dumps({"ok": 1, "bad": threading.Lock()})


def test_checker_for_a_serializer_without_check_accepts_anything() -> None:
    class Custom:
        def dumps(self, appstruct: Any) -> bytes:
            return repr(appstruct).encode()

        def loads(self, bstruct: bytes) -> Any:
            return {}

    assert isinstance(Custom(), Serializer)
    accept = checker_for(Custom())
    assert accept(object(), "k") is None
    assert checker_for(JSONSerializer()) is check
    assert checker_for(MsgpackSerializer()) is MsgpackSerializer.check


def test_a_scalar_check_is_nearly_free() -> None:
    # A view assigns scalars all the time: the check must not walk them.
    for checker in (check, checker_for(MsgpackSerializer()), checker_for(PickleSerializer())):
        for value in ("ascii", 3, 1.5, True, None):
            call = functools.partial(checker, value, "k")
            best = min(timeit.repeat(call, number=2000, repeat=5))
            assert best / 2000 < 5e-6, (checker, value)
