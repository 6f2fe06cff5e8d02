"""The cookie on the wire: the Set-Cookie header we render, Vary, and bad options."""

from __future__ import annotations

import email.utils
import logging
import time
from http.cookies import SimpleCookie
from typing import Any

import pytest
from pyramid.response import Response
from webob.cookies import parse_cookie

from apps import make_app
from pyramid_sessionstore import SessionFactory
from pyramid_sessionstore import policy as factory_module
from pyramid_sessionstore.cookie_header import MAX_CANDIDATES
from pyramid_sessionstore.cookie_header import CookieHeader
from pyramid_sessionstore.cookie_header import vary_on_cookie
from pyramid_sessionstore.exceptions import ConfigurationError
from pyramid_sessionstore.settings import session_factory_from_settings

SECRET = "tests-secret-" + "Xb7qL2vN" * 6


def header(**options: Any) -> CookieHeader:
    defaults: dict[str, Any] = dict(
        max_age=None, path="/", domain=None, secure=False, httponly=True, samesite="Lax"
    )
    return CookieHeader("session", **(defaults | options))


def set_cookie(cookie: CookieHeader, value: str) -> str:
    response = Response()
    cookie.set(response, value)
    (rendered,) = response.headers.getall("Set-Cookie")
    return str(rendered)


def test_a_browser_session_cookie_has_no_lifetime() -> None:
    rendered = set_cookie(header(), "abc.def")
    assert rendered == "session=abc.def; Path=/; HttpOnly; SameSite=Lax"


def test_every_attribute_is_rendered_and_parses_back() -> None:
    cookie = header(max_age=3600, path="/app", domain="example.com", secure=True, samesite="None")
    before = time.time()
    rendered = set_cookie(cookie, "abc.def")
    parsed = SimpleCookie(rendered)["session"]
    assert parsed.value == "abc.def"
    assert (parsed["max-age"], parsed["path"], parsed["domain"]) == ("3600", "/app", "example.com")
    assert parsed["secure"] and parsed["httponly"] and parsed["samesite"] == "None"
    expires = email.utils.parsedate_to_datetime(parsed["expires"]).timestamp()
    assert before + 3600 - 1 <= expires <= time.time() + 3600


def test_expiring_the_cookie_keeps_its_path_and_domain() -> None:
    response = Response()
    header(path="/app", domain="example.com").expire(response)
    parsed = SimpleCookie(response.headers["Set-Cookie"])["session"]
    assert (parsed.value, parsed["max-age"], parsed["path"]) == ("", "0", "/app")
    assert parsed["domain"] == "example.com"
    assert email.utils.parsedate_to_datetime(parsed["expires"]).timestamp() == 0


@pytest.mark.parametrize(
    ("existing", "expected"),
    [
        ([], ["Cookie"]),
        (["Accept-Encoding"], ["Accept-Encoding, Cookie"]),
        (["Accept-Encoding, cookie"], ["Accept-Encoding, cookie"]),
        (["*"], ["*"]),
        (["Accept", "Cookie"], ["Accept", "Cookie"]),
        (["X-Cookie-Policy"], ["X-Cookie-Policy, Cookie"]),
    ],
)
def test_vary_gains_cookie_once(existing: list[str], expected: list[str]) -> None:
    headerlist = [("Content-Type", "text/plain")] + [("vary", v) for v in existing]
    vary_on_cookie(headerlist)
    assert [v for k, v in headerlist if k.lower() == "vary"] == expected


@pytest.mark.parametrize(
    ("option", "value"),
    [("cookie_name", "my session"), ("cookie_name", "a;b"), ("path", "/a;b"), ("domain", "a;b")],
)
def test_a_cookie_option_that_would_break_the_header_is_refused(option: str, value: str) -> None:
    with pytest.raises(ValueError, match=option):
        SessionFactory(SECRET, **{option: value})
    with pytest.raises(ConfigurationError, match=f"session.{option}"):
        session_factory_from_settings({"session.secret": SECRET, f"session.{option}": value})


def test_verified_cookies_are_remembered_within_a_bound(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(factory_module, "VERIFIED_CACHE_SIZE", 2)
    factory = SessionFactory(SECRET)
    values = [factory.signer.sign(f"{i:043d}") for i in range(3)]
    for value in values:
        assert factory.policy.verify(value) is not None
    assert list(factory.policy._verified) == [values[2]]  # cleared when full, then the newest
    tampered = values[2][:-1] + ("A" if values[2][-1] != "A" else "B")
    assert factory.policy.verify(tampered) is None and tampered not in factory.policy._verified


# -- reading: every value under the name, unquoted as WebOb writes it (issue 10) --


def read_all(cookie_header: str, **options: Any) -> list[str]:
    return header(**options).read_all({"HTTP_COOKIE": cookie_header})


def test_every_value_under_the_name_is_a_candidate_in_header_order() -> None:
    # What a browser sends after the cookie's path changed: longer path first.
    assert read_all("session=new; theme=dark; session=old") == ["new", "old"]
    assert header().read({"HTTP_COOKIE": "session=new; session=old"}) == "new"


def test_candidates_are_bounded() -> None:
    many = "; ".join(f"session=v{i}" for i in range(50))
    assert read_all(many) == [f"v{i}" for i in range(MAX_CANDIDATES)]
    assert MAX_CANDIDATES == 4


def test_empty_unbalanced_or_absent_values_are_skipped() -> None:
    assert read_all('session=; session=""; session="abc; session=live') == ["live"]
    assert header().read({"HTTP_COOKIE": "session=; session=live"}) == "live"
    assert header().read({"HTTP_COOKIE": "other=1"}) is None
    assert header().read({}) is None


@pytest.mark.parametrize(
    "text",
    [
        "session=a; xsession=b; session_x=c; my session=d",
        "other=session=evil; x=1",
        'other="a session=evil"',
        "sessionsession=x",
    ],
)
def test_the_name_counts_only_where_a_pair_starts(text: str) -> None:
    expected = ["a"] if text.startswith("session=a") else []
    assert read_all(text) == expected


def test_blanks_around_the_name_and_value_are_ignored() -> None:
    assert read_all("a=1;session = v ;\tsession\t=\tw") == ["v", "w"]


@pytest.mark.parametrize(
    "value",
    ["plain.token", "a,b;c", 'quote"d', "back\\slash", "sp ace", "tab\tx", "ctl\x01", "~!@#$%&*"],
)
def test_quoted_values_read_as_webob_reads_them(value: str) -> None:
    # http.cookies (and webob) quote such values with backslash and octal escapes.
    quoted = SimpleCookie({"session": value})["session"].OutputString().split("=", 1)[1]
    text = f"a=1; session={quoted}; b=2"
    expected = dict(parse_cookie(text))[b"session"].decode("latin-1")
    assert expected == value
    assert read_all(text) == [value]


def test_values_that_are_not_ascii_are_skipped_with_one_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    text = 'session=caf\xe9; session="\\351t\\351"; session=ok; session=\xff'
    with caplog.at_level(logging.WARNING, logger="pyramid_sessionstore.security"):
        assert read_all(text) == ["ok"]
    assert [r.getMessage() for r in caplog.records] == [
        "rejected a session cookie value that is not ASCII"
    ]


def test_values_longer_than_max_length_are_dropped_unread(
    caplog: pytest.LogCaptureFixture,
) -> None:
    assert header().max_length == 4096
    assert read_all("session=" + "a" * 4096) == ["a" * 4096]
    with caplog.at_level(logging.WARNING, logger="pyramid_sessionstore.security"):
        assert read_all("session=" + "a" * 4097 + "; session=ok") == ["ok"]
        assert read_all('session="' + "\\054" * 40 + '"', max_length=128) == []
    assert len(caplog.records) == 2
    assert "longer than 128 characters" in caplog.records[1].getMessage()


@pytest.mark.parametrize("bad", [0, -1, 1.5, "4096", True])
def test_max_length_must_be_a_positive_int(bad: Any) -> None:
    with pytest.raises(ValueError, match="max_length"):
        header(max_length=bad)


def test_a_live_session_behind_an_old_cookie_of_the_same_name_is_found() -> None:
    # Issue 10: "session=<ended or garbage>; session=<live>" logged users out.
    app = make_app(SessionFactory(SECRET))
    app.get("/set/user/alice")
    live = app.cookies["session"]
    ended = SessionFactory(SECRET).signer.sign("B" * 43)
    for stale in ("garbage", ended, '"quoted\\054garbage"'):
        app.cookiejar.clear()
        res = app.get("/dump", headers={"Cookie": f"session={stale}; session={live}"})
        assert res.json["data"] == {"user": "alice"}, stale
