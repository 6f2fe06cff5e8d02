"""The cookie on the wire: the Set-Cookie header we render, Vary, and bad options."""

from __future__ import annotations

import email.utils
import time
from http.cookies import SimpleCookie
from typing import Any

import pytest
from pyramid.response import Response

from pyramid_sessionstore import SessionFactory
from pyramid_sessionstore import policy as factory_module
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
        assert factory._verify(value) is not None
    assert list(factory._verified) == [values[2]]  # cleared when full, then the newest
    tampered = values[2][:-1] + ("A" if values[2][-1] != "A" else "B")
    assert factory._verify(tampered) is None and tampered not in factory._verified
