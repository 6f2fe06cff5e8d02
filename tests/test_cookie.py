"""CookieStore: sealing, bad cookies, rotation, size, compression, and a real Pyramid app.

Pyramid compatibility and ``import_from`` are in ``test_cookie_pyramid.py``.
"""

from __future__ import annotations

import base64
import logging
import os
import time
import zlib
from collections.abc import Iterator

import pytest
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st
from pyramid.config import Configurator
from pyramid.request import Request

from cookieapp import make_app
from cookieapp import our_app
from cookieapp import set_cookie_value
from pyramid_sessionstore import SessionFactory
from pyramid_sessionstore import cookies
from pyramid_sessionstore import invalidate_user_sessions
from pyramid_sessionstore import session_factory_from_settings
from pyramid_sessionstore.exceptions import ConfigurationError
from pyramid_sessionstore.exceptions import MissingDependencyError
from pyramid_sessionstore.exceptions import SessionTooLargeError
from pyramid_sessionstore.payload import Header
from pyramid_sessionstore.payload import encode
from pyramid_sessionstore.stores import cookie as cookie_module
from pyramid_sessionstore.stores.base import SealsCookies
from pyramid_sessionstore.stores.base import Store
from pyramid_sessionstore.stores.cookie import CookieStore
from pyramid_sessionstore.stores.registry import build_store
from pyramid_sessionstore.stores.registry import keyword_parameters
from pyramid_sessionstore.stores.registry import store_from_settings

OLD = "old-cookie-secret-" + "o" * 50
NEW = "new-cookie-secret-" + "n" * 50
SECURITY = "pyramid_sessionstore.security"


@pytest.fixture
def store() -> CookieStore:
    return CookieStore(secret=NEW)


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[float]]:
    """Freeze time.time at a value the test moves forward: ``clock[0] += 61``."""
    now = [1_800_000_000.0]
    monkeypatch.setattr(time, "time", lambda: now[0])
    yield now


# -- sealing -----------------------------------------------------------------


def test_store_is_both_a_store_and_a_sealer(store: CookieStore) -> None:
    assert isinstance(store, Store) and isinstance(store, SealsCookies)
    assert NEW not in repr(store)


def test_seal_then_unseal_round_trips_as_current(store: CookieStore) -> None:
    payload = encode(Header(1, 2.0), b'{"a":1}')
    value = store.seal(payload)
    assert value.startswith("1.") and "=" not in value
    assert set(value[2:]) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
    assert store.unseal(value) == (payload, True)
    assert store.seal(payload) != value  # a fresh nonce every time


def test_key_differs_from_the_id_signing_key_of_the_same_secret() -> None:
    assert CookieStore._derive(NEW) != cookies._derive(NEW)


def _tamper(value: str) -> str:
    i = len(value) // 2
    return value[:i] + ("A" if value[i] != "A" else "B") + value[i + 1 :]


@pytest.mark.parametrize(
    "mangle",
    [
        lambda v: "",
        lambda v: "1.",
        lambda v: v[:-5],
        lambda v: v[:20],
        _tamper,
        lambda v: v + "A",
        lambda v: v[:10] + "!" + v[11:],
        lambda v: v[:10] + "é" + v[11:],
        lambda v: "2." + v[2:],
        lambda v: v[2:],
        lambda v: "1." + "A" * 100_000,
        lambda v: "1.not*base64",
        lambda v: "1." + base64.urlsafe_b64encode(os.urandom(40)).decode().rstrip("="),
    ],
    ids=[
        "empty",
        "prefix-only",
        "truncated",
        "very-truncated",
        "tampered",
        "extended",
        "bad-char",
        "non-ascii",
        "wrong-prefix",
        "no-prefix",
        "huge",
        "not-base64",
        "random",
    ],
)
def test_unseal_of_bad_input_returns_none(store: CookieStore, mangle: object) -> None:
    value = store.seal(b"payload")
    assert store.unseal(mangle(value)) is None  # type: ignore[operator]


def test_unseal_with_the_wrong_key_returns_none(store: CookieStore) -> None:
    assert CookieStore(secret=OLD).unseal(store.seal(b"payload")) is None


@settings(max_examples=300, deadline=None)
@given(text=st.text(max_size=300))
def test_unseal_never_raises_on_any_text(text: str) -> None:
    store = CookieStore(secret=NEW, accept_pyramid_signed=True, pyramid_secret=OLD)
    assert store.unseal(text) is None
    assert store.unseal("1." + text) is None


@settings(max_examples=200, deadline=None)
@given(position=st.integers(min_value=0), char=st.sampled_from("AQgw-_09z"))
def test_unseal_rejects_every_single_character_change(position: int, char: str) -> None:
    store = CookieStore(secret=NEW)
    value = store.seal(b"some session payload")
    i = 2 + position % (len(value) - 2)
    changed = value[:i] + char + value[i + 1 :]
    if changed != value and changed[:-1] != value[:-1]:
        assert store.unseal(changed) is None


def test_authentic_but_malformed_plaintext_returns_none(store: CookieStore) -> None:
    def seal_raw(plain: bytes) -> str:
        nonce = os.urandom(12)
        box = store._ciphers[0].encrypt(nonce, plain, cookie_module._AAD)
        return "1." + base64.urlsafe_b64encode(nonce + box).decode().rstrip("=")

    bomb = zlib.compress(b"\0" * (cookie_module.MAX_PLAINTEXT + 1), 9)
    assert store.unseal(seal_raw(b"\x01" + bomb)) is None  # inflates past the limit
    assert store.unseal(seal_raw(b"\x01not zlib")) is None
    assert store.unseal(seal_raw(b"\x01" + zlib.compress(b"abc")[:-3])) is None  # cut short
    assert store.unseal(seal_raw(b"\x02payload")) is None  # unknown flag
    assert store.unseal(seal_raw(b"\x00payload")) == (b"payload", True)


# -- rotation ----------------------------------------------------------------


def test_rotation_newest_seals_all_unseal() -> None:
    old, rotated = CookieStore(secret=OLD), CookieStore(secrets=[NEW, OLD])
    assert rotated.unseal(old.seal(b"from before")) == (b"from before", False)
    assert rotated.unseal(rotated.seal(b"now")) == (b"now", True)
    assert old.unseal(rotated.seal(b"now")) is None
    assert CookieStore(secret=NEW).unseal(rotated.seal(b"now")) == (b"now", True)


# -- size and compression ----------------------------------------------------


def test_size_limit_counts_name_and_value_exactly(caplog: pytest.LogCaptureFixture) -> None:
    for name in ("session", "a_much_longer_cookie_name"):
        store = CookieStore(secret=NEW, max_size=1000, cookie_name=name)
        fits = max(n for n in range(900) if _size(store, n) <= 1000)
        value = store.seal(b"x" * fits)
        assert len(name) + 1 + len(value) <= 1000
        with caplog.at_level(logging.ERROR, "pyramid_sessionstore.stores.cookie"):
            with pytest.raises(SessionTooLargeError) as info:
                store.seal(b"x" * (fits + 3))
        assert info.value.limit == 1000 and info.value.size > 1000
        assert "1000" in str(info.value) and str(info.value.size) in str(info.value)
        assert str(info.value.size) in caplog.text


def _size(store: CookieStore, n: int) -> int:
    return len(store.cookie_name) + 1 + 2 + (4 * (12 + 1 + n + 16) + 2) // 3


def test_default_limit_is_4093_bytes(store: CookieStore) -> None:
    with pytest.raises(SessionTooLargeError) as info:
        store.seal(os.urandom(3100))
    assert info.value.limit == 4093


def test_compression_shrinks_repetitive_payloads_and_round_trips() -> None:
    plain, packed = CookieStore(secret=NEW), CookieStore(secret=NEW, compress=True)
    payload = encode(Header(1, 2.0), b'{"rows":"' + b"abcdef" * 2000 + b'"}')
    with pytest.raises(SessionTooLargeError):
        plain.seal(payload)
    value = packed.seal(payload)
    assert len(value) < 400
    assert packed.unseal(value) == (payload, True)
    assert plain.unseal(value) == (payload, True)  # reading needs no flag


def test_compression_is_skipped_when_it_does_not_pay() -> None:
    packed = CookieStore(secret=NEW, compress=True)
    noise = os.urandom(500)
    assert len(packed.seal(noise)) == len(CookieStore(secret=NEW).seal(noise))


def test_payload_over_one_mebibyte_is_refused_even_when_it_compresses() -> None:
    packed = CookieStore(secret=NEW, compress=True)
    with pytest.raises(SessionTooLargeError) as info:
        packed.seal(b"\0" * (cookie_module.MAX_PLAINTEXT + 1))
    assert info.value.limit == cookie_module.MAX_PLAINTEXT


# -- options -----------------------------------------------------------------


def test_options_table_matches_init_parameters() -> None:
    params = keyword_parameters(CookieStore)
    assert set(CookieStore.OPTIONS) <= params
    assert params == set(CookieStore.OPTIONS) | CookieStore.CODE_ONLY


def test_every_option_from_settings() -> None:
    settings = {
        "session.cookie.secrets": f"{NEW}\n{OLD}",
        "session.cookie.max_size": "2000",
        "session.cookie.compress": "true",
        "session.cookie.cookie_name": "sid",
        "session.cookie.accept_pyramid_signed": "yes",
        "session.cookie.pyramid_secret": "pyramid secret",
        "session.cookie.pyramid_salt": "my.salt.",
        "session.cookie.pyramid_hashalg": "sha256",
    }
    store = build_store("cookie", settings)
    assert isinstance(store, CookieStore)
    assert (store.max_size, store.compress, store.cookie_name) == (2000, True, "sid")
    assert len(store._ciphers) == 2 and store._pyramid is not None
    assert store._pyramid[1:] == ("sha256", 32)
    assert store._pyramid[0] == b"my.salt.pyramid secret"
    assert CookieStore(secret=OLD).unseal(store.seal(b"x")) is None
    single = build_store("cookie", {"session.cookie.secret": NEW})
    assert single.unseal(store.seal(b"x")) == (b"x", True)  # type: ignore[attr-defined]


def test_the_size_limit_counts_the_factory_cookie_name_from_settings() -> None:
    settings = {
        "session.store": "cookie",
        "session.cookie.secret": NEW,
        "session.cookie_name": "sid",
    }
    assert store_from_settings(settings).cookie_name == "sid"  # type: ignore[attr-defined]
    settings["session.cookie.cookie_name"] = "other"  # told explicitly: kept
    assert store_from_settings(settings).cookie_name == "other"  # type: ignore[attr-defined]


# -- one secret: without its own, the store's keys come from session.secret ----

#: The factory's secret (random, as the docs ask for one).
APP_SECRET = "7Eal9DQz4d4i8wQFDR1-LbvwB3KiwdiV5S7DM0g7OPb0doP-ls2u6qn6XX2Va-RV"


def _cookie_factory(**settings: str) -> SessionFactory:
    return session_factory_from_settings(
        {"session.secret": APP_SECRET, "session.store": "cookie", **settings}
    )


def test_session_secret_alone_serves_the_cookie_store() -> None:
    store = _cookie_factory().store
    assert isinstance(store, CookieStore)
    sealed = store.seal(b"payload")
    assert CookieStore(secret=APP_SECRET).unseal(sealed) == (b"payload", True)
    # Its key is derived for encryption (HKDF, its own salt), not the signing key.
    assert CookieStore._derive(APP_SECRET) != cookies._derive(APP_SECRET)
    assert CookieStore(secret=NEW).unseal(sealed) is None


def test_session_secrets_give_one_key_each_newest_first() -> None:
    factory = session_factory_from_settings(
        {"session.secrets": f"{NEW}\n{OLD}", "session.store": "cookie"}
    )
    store = factory.store
    assert isinstance(store, CookieStore)
    assert store.unseal(CookieStore(secret=OLD).seal(b"old")) == (b"old", False)
    assert CookieStore(secret=NEW).unseal(store.seal(b"new")) == (b"new", True)


def test_a_separate_cookie_secret_is_still_used_and_keeps_its_cookies() -> None:
    before = CookieStore(secret=NEW).seal(b"written before")
    store = _cookie_factory(**{"session.cookie.secret": NEW}).store
    assert isinstance(store, CookieStore)
    assert store.unseal(before) == (b"written before", True)
    assert CookieStore(secret=APP_SECRET).unseal(store.seal(b"x")) is None


def test_session_secret_from_the_environment_serves_the_cookie_store(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PSS_TEST_SECRET", APP_SECRET)
    factory = session_factory_from_settings(
        {"session.secret": "env:PSS_TEST_SECRET", "session.store": "cookie"}
    )
    assert CookieStore(secret=APP_SECRET).unseal(factory.store.seal(b"x")) == (b"x", True)  # type: ignore[attr-defined]
    monkeypatch.setenv("PSS_TEST_COOKIE", NEW)
    store = build_store("cookie", {"session.cookie.secret": "env:PSS_TEST_COOKIE"})
    assert CookieStore(secret=NEW).unseal(store.seal(b"y")) == (b"y", True)  # type: ignore[attr-defined]


def test_in_code_a_store_without_secret_takes_the_factory_secrets() -> None:
    store = CookieStore()
    assert store.unseal(CookieStore(secret=NEW).seal(b"x")) is None  # no key: nothing opens
    with pytest.raises(ConfigurationError, match="no secret"):
        store.seal(b"x")
    store.use_secrets([NEW, OLD])
    assert CookieStore(secret=NEW).unseal(store.seal(b"x")) == (b"x", True)
    assert store.unseal(CookieStore(secret=OLD).seal(b"o")) == (b"o", False)
    store.use_secrets([APP_SECRET])  # a second factory does not change the keys
    assert CookieStore(secret=NEW).unseal(store.seal(b"x")) == (b"x", True)
    own = CookieStore(secret=NEW)
    own.use_secrets([APP_SECRET])  # its own secret wins
    assert CookieStore(secret=NEW).unseal(own.seal(b"x")) == (b"x", True)
    with pytest.raises(ValueError, match="refused"):
        CookieStore().use_secrets(["s" * 64])


def test_in_code_the_factory_gives_its_secret_and_cookie_name_to_the_store() -> None:
    store = CookieStore(max_size=1000)
    app = make_app(SessionFactory(secret=APP_SECRET, store=store, cookie_name="app_session"))
    response = app.get("/set/k/v")
    value = set_cookie_value(response, "app_session")
    assert value is not None and store.cookie_name == "app_session"
    assert CookieStore(secret=APP_SECRET).unseal(value) is not None


def test_use_cookie_name_counts_the_new_name_in_the_size_limit() -> None:
    store = CookieStore(secret=NEW, max_size=1000)
    fits_short = max(n for n in range(900) if _size(store, n) <= 1000)
    longer = "a_much_longer_cookie_name"
    store.use_cookie_name(longer)
    assert store.cookie_name == longer
    fits = max(n for n in range(900) if _size(store, n) <= 1000)
    assert fits < fits_short
    assert len(longer) + 1 + len(store.seal(b"x" * fits)) <= 1000
    with pytest.raises(SessionTooLargeError) as info:
        store.seal(b"x" * fits_short)  # fitted beside "session", not beside the longer name
    assert info.value.size > 1000


S = {"session.cookie.secret": NEW}
P = {**S, "session.cookie.accept_pyramid_signed": "true"}


@pytest.mark.parametrize(
    ("settings", "named"),
    [
        ({**S, "session.cookie.max_size": "big"}, "session.cookie.max_size"),
        ({**S, "session.cookie.max_size": "10"}, "session.cookie.max_size: must be at least 64"),
        ({**S, "session.cookie.compress": "maybe"}, "session.cookie.compress"),
        ({**S, "session.cookie.accept_pyramid_signed": "2"}, "accept_pyramid_signed"),
        ({"session.cookie.secert": NEW}, "session.cookie.secert"),
        ({"session.cookie.secrets": " "}, "session.cookie.secrets: at least one secret"),
        ({**S, "session.cookie.secrets": OLD}, "session.cookie.secret: give secret or secrets"),
        ({"session.cookie.secret": "c" * 64}, "session.cookie.secret: refused: it has only 1"),
        ({"session.cookie.secrets": f"{NEW}\nshort"}, "session.cookie.secrets: secret 2 of 2"),
        ({"session.cookie.secret": "env:PSS_TEST_UNSET"}, "variable PSS_TEST_UNSET"),
        (P, "session.cookie.pyramid_secret"),
        ({**P, "session.cookie.pyramid_secret": "x", "session.cookie.pyramid_hashalg": "no"}, "no"),
    ],
)
def test_bad_settings_raise_configuration_error_naming_them(
    settings: dict[str, str], named: str
) -> None:
    with pytest.raises(ConfigurationError) as info:
        build_store("cookie", settings)
    assert named in str(info.value)


@pytest.mark.parametrize(
    ("kwargs", "reason"),
    [
        ({"secret": "short"}, "secret: refused: it is 5 characters long"),
        ({"secret": "k" * 64}, "secret: refused: it has only 1 distinct"),
        ({"secrets": [NEW, "(64 random characters: token_urlsafe(48))"]}, "2 of 2"),
        ({"secrets": []}, "secrets: at least one secret"),
        ({"secrets": NEW}, "secrets: expected a list of secrets"),
    ],
)
def test_weak_secret_in_code_is_refused_without_showing_it(
    kwargs: dict[str, object], reason: str
) -> None:
    with pytest.raises(ValueError, match=reason) as info:
        CookieStore(**kwargs)  # type: ignore[arg-type]
    given = kwargs.get("secrets", kwargs.get("secret"))
    for secret in [given] if isinstance(given, str) else given or []:  # type: ignore[attr-defined]
        assert secret not in str(info.value)


def test_missing_cryptography_raises_missing_dependency(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cookie_module, "AESGCM", None)
    with pytest.raises(MissingDependencyError, match=r"pyramid_sessionstore\[cookie\]"):
        CookieStore(secret=NEW)


# -- through a real Pyramid app ------------------------------------------------


def test_app_round_trip_keeps_the_session_in_the_cookie(store: CookieStore) -> None:
    app = our_app(store)
    response = app.get("/set/colour/blue")
    value = set_cookie_value(response)
    assert value is not None and value.startswith("1.") and "blue" not in value
    assert app.get("/get/colour").json == "blue"
    assert app.get("/dump").json["new"] is False
    assert store._jar.count() == 0  # the jar is for the contract suite only


@pytest.mark.parametrize(
    "bad",
    ["tampered", "truncated", "not-base64", "wrong-key", "garbage"],
)
def test_bad_cookie_is_a_fresh_session_and_a_warning(
    store: CookieStore, caplog: pytest.LogCaptureFixture, bad: str
) -> None:
    app = our_app(store)
    good = set_cookie_value(app.get("/set/k/v"))
    assert good is not None
    value = {
        "tampered": _tamper(good),
        "truncated": good[: len(good) // 2],
        "not-base64": "1.%%%%$$$",
        "wrong-key": CookieStore(secret=OLD).seal(encode(Header(1, time.time()), b'{"k":"x"}')),
        "garbage": "x" * 5000,
    }[bad]
    app.cookiejar.clear()
    with caplog.at_level(logging.WARNING, SECURITY):
        response = app.get("/dump", headers={"Cookie": f"session={value}"})
    assert response.status_int == 200 and response.json["data"] == {}
    assert any(r.name == SECURITY and r.levelno == logging.WARNING for r in caplog.records)


def test_non_ascii_cookie_is_a_fresh_session(
    store: CookieStore, caplog: pytest.LogCaptureFixture
) -> None:
    app = our_app(store)
    for raw in ("1.\xc3\xa9t\xc3\xa9", "1.\xe9t\xe9", "\xff\xfe"):
        with caplog.at_level(logging.WARNING, SECURITY):
            response = app.get("/dump", headers={"Cookie": f"session={raw}"})
        assert response.status_int == 200 and response.json["data"] == {}
    assert [r for r in caplog.records if r.name == SECURITY]


def test_idle_timeout_is_enforced_from_the_payload(
    store: CookieStore, clock: list[float], caplog: pytest.LogCaptureFixture
) -> None:
    app = our_app(store, timeout=60, reissue_time=0)
    app.get("/set/k/v")
    clock[0] += 59
    assert app.get("/get/k").json == "v"  # re-sealed: idle time starts again
    clock[0] += 59
    assert app.get("/get/k").json == "v"
    clock[0] += 61
    with caplog.at_level(logging.INFO, SECURITY):
        assert app.get("/get/k").json is None
    assert "expired" in caplog.text


def test_max_lifetime_is_enforced_from_the_payload(store: CookieStore, clock: list[float]) -> None:
    app = our_app(store, timeout=60, max_lifetime=100, reissue_time=0)
    app.get("/set/k/v")
    for _ in range(3):
        clock[0] += 40
        assert app.get("/get/k").json == ("v" if clock[0] < 1_800_000_100 else None)


def test_invalidate_expires_the_cookie(store: CookieStore) -> None:
    app = our_app(store)
    app.get("/set/k/v")
    response = app.get("/invalidate")
    header = [h for h in response.headers.getall("Set-Cookie") if h.startswith("session=")]
    assert len(header) == 1 and "Max-Age=0" in header[0]
    assert app.get("/get/k").json is None


def test_read_only_request_within_reissue_time_sets_no_cookie(
    store: CookieStore, clock: list[float]
) -> None:
    app = our_app(store, reissue_time=120)
    first = set_cookie_value(app.get("/set/k/v"))
    clock[0] += 60
    assert set_cookie_value(app.get("/get/k")) is None
    clock[0] += 61
    again = set_cookie_value(app.get("/get/k"))
    assert again is not None and again != first
    assert store.unseal(again) is not None


def test_rotation_reads_old_cookies_and_reseals_with_the_new_key() -> None:
    old_app = our_app(CookieStore(secret=OLD))
    old_value = set_cookie_value(old_app.get("/set/k/v"))
    new_app = our_app(CookieStore(secrets=[NEW, OLD]))
    response = new_app.get("/get/k", headers={"Cookie": f"session={old_value}"})
    assert response.json == "v"
    resealed = set_cookie_value(response)
    assert resealed is not None
    assert CookieStore(secret=NEW).unseal(resealed) is not None
    assert CookieStore(secret=OLD).unseal(resealed) is None


def test_rotation_reseals_even_within_reissue_time() -> None:
    old_value = set_cookie_value(our_app(CookieStore(secret=OLD)).get("/set/k/v"))
    new_app = our_app(CookieStore(secrets=[NEW, OLD]), reissue_time=300)
    response = new_app.get("/get/k", headers={"Cookie": f"session={old_value}"})
    assert response.json == "v"
    assert set_cookie_value(response) is not None


def test_session_too_large_raises_and_is_logged(
    store: CookieStore, caplog: pytest.LogCaptureFixture
) -> None:
    app = our_app(store)
    app.get("/fill/2500")  # fits
    with caplog.at_level(logging.ERROR, "pyramid_sessionstore.stores.cookie"):
        with pytest.raises(SessionTooLargeError) as info:
            app.get("/fill/5000")
    assert info.value.limit == 4093 and info.value.size > 4093
    assert "4093" in caplog.text


def test_compression_lets_a_repetitive_session_fit() -> None:
    app = our_app(CookieStore(secret=NEW, compress=True))
    value = set_cookie_value(app.get("/fill/20000"))
    assert value is not None and len(value) < 1000
    assert len(app.get("/dump").json["data"]["blob"]) == 20000


def test_logout_everywhere_is_refused_on_the_cookie_store() -> None:
    config = Configurator(
        settings={"session.secret": NEW, "session.store": "cookie", "session.cookie.secret": NEW}
    )
    config.include("pyramid_sessionstore")
    config.commit()
    request = Request.blank("/")
    request.registry = config.registry
    with pytest.raises(ConfigurationError, match="browser cookies"):
        invalidate_user_sessions(request, "alice")
