"""Session: the whole ISession, as Pyramid documents it."""

from __future__ import annotations

import pytest
from pyramid.interfaces import ISession
from zope.interface.verify import verifyObject

from pyramid_sessionstore import Session
from pyramid_sessionstore.serializers import SerializationError


def test_session_provides_isession() -> None:
    assert verifyObject(ISession, Session())


def test_dict_api() -> None:
    s = Session()
    s["a"] = 1
    s.update({"b": 2}, c=3)
    assert s.get("a") == 1 and s.get("zz") is None and s.get("zz", 5) == 5
    assert "a" in s and "zz" not in s and len(s) == 3
    assert sorted(s) == ["a", "b", "c"] and sorted(s.keys()) == ["a", "b", "c"]
    assert sorted(s.values()) == [1, 2, 3] and dict(s.items()) == {"a": 1, "b": 2, "c": 3}
    assert s.setdefault("d", 4) == 4 and s.setdefault("d", 9) == 4
    assert s.pop("d") == 4 and s.pop("d", None) is None
    with pytest.raises(KeyError):
        s.pop("d")
    del s["c"]
    key, value = s.popitem()
    assert (key, value) in {("a", 1), ("b", 2)}
    s.clear()
    assert len(s) == 0 and s == {}
    with pytest.raises(KeyError):
        s["missing"]


def test_new_and_created() -> None:
    s = Session()
    assert s.new is True and isinstance(s.created, int)
    loaded = Session({"a": 1}, created=5, session_id="x" * 43, key="k")
    assert loaded.new is False and loaded.created == 5


def test_flash_allow_duplicate() -> None:
    s = Session()
    s.flash("hi")
    s.flash("hi")
    s.flash("hi", allow_duplicate=False)
    s.flash("x", queue="other")
    assert s.peek_flash() == ["hi", "hi"]
    assert s.pop_flash() == ["hi", "hi"] and s.pop_flash() == []
    assert s.pop_flash("other") == ["x"]


def test_csrf_token_is_stable_until_renewed() -> None:
    s = Session()
    token = s.get_csrf_token()
    assert len(token) == 40 and s.get_csrf_token() == token
    new = s.new_csrf_token()
    assert new != token and s.get_csrf_token() == new


def test_non_string_key_is_refused() -> None:
    with pytest.raises(TypeError):
        Session()[1] = "x"  # type: ignore[index]


def test_unserializable_value_is_refused_at_setitem() -> None:
    with pytest.raises(SerializationError, match="session\\['k'\\]"):
        Session()["k"] = [object()]


def test_set_timeout_validates() -> None:
    s = Session()
    s.set_timeout(60)
    assert s.timeout == 60
    s.set_timeout(None)
    assert s.timeout is None
    for bad in (0, -5, 1.5, "60"):
        with pytest.raises(ValueError):
            s.set_timeout(bad)  # type: ignore[arg-type]


def test_bind_user_on_stored_session_regenerates_id() -> None:
    s = Session({"a": 1}, session_id="i" * 43, key="k" * 64, version="1")
    s.bind_user("alice")
    assert s.userid == "alice" and s._key is None and s._moved_from == ("k" * 64, "1", "i" * 43)
    s.bind_user("alice")
    assert s._moved_from == ("k" * 64, "1", "i" * 43)
    with pytest.raises(TypeError):
        s.bind_user(["alice"])


def test_invalidate_resets_to_a_new_session() -> None:
    s = Session({"a": 1}, session_id="i" * 43, key="k" * 64, version="1", userid="u")
    s.invalidate()
    assert s == {} and s.new is True and s.userid is None and s._ended == ["k" * 64]
