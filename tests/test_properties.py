"""Hypothesis: any cookie is answered with a 200, and the session behaves as a dict."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st
from pyramid.request import Request
from webtest import TestApp

from apps import CountingStore
from apps import make_app
from pyramid_sessionstore import SessionFactory
from pyramid_sessionstore.cookies import Signer
from pyramid_sessionstore.stores import MemoryStore

SECRET = "tests-secret-" + "Xb7qL2vN" * 6
STORE = CountingStore(MemoryStore())
APP = make_app(SessionFactory(SECRET, store=STORE))
SIGNER = Signer([SECRET])

cookie_text = st.text(
    alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E, exclude_characters=';,\\"'),
    max_size=300,
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    value=cookie_text | st.just("") | st.builds(lambda v: SIGNER.sign("A" * 43) + v, cookie_text)
)
def test_any_cookie_gets_200_and_fresh_session_unless_validly_signed(value: str) -> None:
    browser = TestApp(APP.app)
    browser.set_cookie("session", value) if value else None
    STORE.reset()
    res = browser.get("/dump")
    assert res.status_int == 200
    if SIGNER.verify(value) is None:
        assert res.json == {**res.json, "data": {}, "new": True}
        assert STORE.calls["load"] == 0


@settings(max_examples=100, deadline=None)
@given(raw=st.binary(max_size=200))
def test_any_raw_cookie_header_bytes_get_200(raw: bytes) -> None:
    header = raw.decode("latin-1").replace("\r", "").replace("\n", "")
    res = APP.get("/dump", headers={"Cookie": f"session={header}"}, expect_errors=True)
    assert res.status_int == 200


scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.text(max_size=10),
    st.floats(allow_nan=False),
    st.binary(max_size=10),
)
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.text(max_size=5), inner, max_size=3)
        | st.tuples(inner, inner)
    ),
    max_leaves=8,
)
keys = st.sampled_from(["a", "b", "c", "_f_", " t"])
operations = st.lists(
    st.one_of(
        st.tuples(st.just("set"), keys, values),
        st.tuples(st.just("del"), keys, st.none()),
        st.tuples(st.just("pop"), keys, st.none()),
        st.tuples(st.just("setdefault"), keys, values),
        st.tuples(st.just("update"), keys, values),
        st.tuples(st.just("clear"), keys, st.none()),
    ),
    max_size=12,
)


def apply(target: Any, op: str, key: str, value: Any) -> None:
    if op == "set":
        target[key] = value
    elif op == "del":
        if key in target:
            del target[key]
    elif op == "pop":
        target.pop(key, None)
    elif op == "setdefault":
        target.setdefault(key, value)
    elif op == "update":
        target.update({key: value})
    elif op == "clear":
        target.clear()


@settings(max_examples=150, deadline=None)
@given(first=operations, second=operations)
def test_session_equals_dict_after_save_and_load(first: list[Any], second: list[Any]) -> None:
    seen: list[dict[str, Any]] = []
    batches = iter([first, second])

    def run(request: Request) -> Any:
        for op, key, value in next(batches):
            apply(request.session, op, key, value)
        request.response.text = "ok"
        return request.response

    def read(request: Request) -> Any:
        seen.append(dict(request.session.items()))
        request.response.text = "ok"
        return request.response

    app = make_app(
        SessionFactory(SECRET, store=MemoryStore()),
        extra_views=[("run", "/run", run), ("read", "/read", read)],
    )
    expected: dict[str, Any] = {}
    for batch in (first, second):
        for op, key, value in batch:
            apply(expected, op, key, value)
        app.get("/run")
        app.get("/read")
        assert seen[-1] == expected
