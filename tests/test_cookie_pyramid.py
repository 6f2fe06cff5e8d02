"""CookieStore reads cookies of Pyramid's real SignedCookieSessionFactory; import_from.

Every Pyramid cookie here is made by ``pyramid.session.SignedCookieSessionFactory``
in a real app, then sent to an app using our factory.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import time

import pytest

from cookieapp import FACTORY_SECRET
from cookieapp import make_app
from cookieapp import our_app
from cookieapp import pyramid_app
from cookieapp import set_cookie_value
from pyramid_sessionstore import SessionFactory
from pyramid_sessionstore.cookies import Signer
from pyramid_sessionstore.payload import decode
from pyramid_sessionstore.stores import CookieStore
from pyramid_sessionstore.stores import MemoryStore

OURS = "our-cookie-store-secret-" + "c" * 50
ROTATED = "7Eal9DQz4d4i8wQFDR1-LbvwB3KiwdiV5S7DM0g7OPb0doP-ls2u6qn6XX2Va-RV"
SECURITY = "pyramid_sessionstore.security"

# (secret, salt, hashalg): ASCII, latin-1 and non-latin-1 secrets, default and own salts.
PYRAMID_CONFIGS = [
    ("seekrit-" + "p" * 56, "pyramid.session.", "sha512"),
    ("another secret with spaces", "myapp.session.", "sha256"),
    ("sécret-latin-1", "", "sha1"),
    ("secret ✓ not latin-1", "salt.é.", "sha512"),
    ("s" * 200, "pyramid.session.", "sha256"),
]


def _pyramid_cookie(secret: str, salt: str, hashalg: str) -> tuple[str, dict[str, object]]:
    """Return a cookie Pyramid wrote with some data, flash and CSRF token, and that data."""
    app = pyramid_app(secret, salt=salt, hashalg=hashalg)
    app.get("/set/name/Zo%C3%AB")  # Zoë
    app.get("/set/n/42")
    csrf = app.get("/flash/hello").json
    value = app.cookies["session"]
    assert not value.startswith("1.")
    return value, {"name": "Zoë", "n": "42", "_f_": ["hello"], "_csrft_": csrf}


def _pyramid_body(value: str, hashalg: str) -> bytes:
    """Return the JSON inside a Pyramid cookie (after its signature)."""
    raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
    return raw[hashlib.new(hashalg).digest_size :]


def _compat_store(secret: str, salt: str, hashalg: str) -> CookieStore:
    return CookieStore(
        secret=OURS,
        accept_pyramid_signed=True,
        pyramid_secret=secret,
        pyramid_salt=salt,
        pyramid_hashalg=hashalg,
    )


@pytest.mark.parametrize(("secret", "salt", "hashalg"), PYRAMID_CONFIGS)
def test_pyramid_cookie_is_read_and_reissued_in_our_format(
    secret: str, salt: str, hashalg: str
) -> None:
    value, data = _pyramid_cookie(secret, salt, hashalg)
    store = _compat_store(secret, salt, hashalg)
    unsealed = store.unseal(value)
    assert unsealed is not None and unsealed[1] is False  # not current: re-issue it
    app = our_app(store)
    response = app.get("/dump", headers={"Cookie": f"session={value}"})
    assert response.json["data"] == data
    assert response.json["new"] is False
    assert abs(response.json["created"] - time.time()) < 60
    reissued = set_cookie_value(response)
    assert reissued is not None and reissued.startswith("1.")
    assert store.unseal(reissued) is not None
    again = app.get("/peek", headers={"Cookie": f"session={reissued}"}).json
    assert again == {"flash": ["hello"], "csrf": data["_csrft_"]}


def test_pyramid_created_time_is_kept() -> None:
    secret, salt, hashalg = PYRAMID_CONFIGS[0]
    value, _ = _pyramid_cookie(secret, salt, hashalg)
    unsealed = _compat_store(secret, salt, hashalg).unseal(value)
    assert unsealed is not None
    created = decode(unsealed[0])[0].created
    assert created == int(json.loads(_pyramid_body(value, hashalg))[1])
    app = our_app(_compat_store(secret, salt, hashalg))
    assert app.get("/dump", headers={"Cookie": f"session={value}"}).json["created"] == created


@pytest.mark.parametrize(
    "store",
    [
        CookieStore(secret=OURS),
        _compat_store("the wrong secret", "pyramid.session.", "sha512"),
        _compat_store(PYRAMID_CONFIGS[0][0], "other.salt.", "sha512"),
        _compat_store(PYRAMID_CONFIGS[0][0], "pyramid.session.", "sha256"),
    ],
    ids=["compat-off", "wrong-secret", "wrong-salt", "wrong-hashalg"],
)
def test_pyramid_cookie_not_accepted_is_a_fresh_session(
    store: CookieStore, caplog: pytest.LogCaptureFixture
) -> None:
    value, _ = _pyramid_cookie(*PYRAMID_CONFIGS[0])
    with caplog.at_level(logging.WARNING, SECURITY):
        response = our_app(store).get("/dump", headers={"Cookie": f"session={value}"})
    assert response.status_int == 200 and response.json["data"] == {}
    assert any(r.name == SECURITY for r in caplog.records)


def test_pyramid_cookie_with_a_bad_signature_is_a_fresh_session(
    caplog: pytest.LogCaptureFixture,
) -> None:
    value, _ = _pyramid_cookie(*PYRAMID_CONFIGS[0])
    store = _compat_store(*PYRAMID_CONFIGS[0])
    i = 10
    forged = value[:i] + ("A" if value[i] != "A" else "B") + value[i + 1 :]
    for bad in (forged, value[:-8], value + "AAAA", value[:40]):
        assert store.unseal(bad) is None
        with caplog.at_level(logging.WARNING, SECURITY):
            response = our_app(store).get("/dump", headers={"Cookie": f"session={bad}"})
        assert response.status_int == 200 and response.json["data"] == {}
    assert any(r.name == SECURITY for r in caplog.records)


def test_signed_pyramid_cookie_that_is_not_a_session_is_refused(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from webob.cookies import SignedSerializer

    secret, salt, hashalg = PYRAMID_CONFIGS[0]
    signer = SignedSerializer(secret, salt, hashalg)
    store = _compat_store(secret, salt, hashalg)
    for appstruct in (
        [1, 2],
        {"a": 1},
        [1, 2, [3]],
        ["x", 2, {}],
        [float("inf"), 1, {}],
        [1, float("nan"), {}],
        [1e300, 1e300, {}],
        [1, -5, {}],
    ):
        with caplog.at_level(logging.WARNING, SECURITY):
            assert store.unseal(signer.dumps(appstruct).decode()) is None
    assert "unreadable" in caplog.text
    assert store.unseal(signer.dumps([1.5, 2.5, {"k": [1]}]).decode()) is not None


def test_pyramid_cookie_past_our_timeout_is_a_fresh_session() -> None:
    secret, salt, hashalg = PYRAMID_CONFIGS[0]
    value, _ = _pyramid_cookie(secret, salt, hashalg)
    app = our_app(_compat_store(secret, salt, hashalg), timeout=1)
    time.sleep(1.1)
    assert app.get("/dump", headers={"Cookie": f"session={value}"}).json["data"] == {}


# -- import_from: from the cookie store (or Pyramid's cookies) to a server store --


def _assert_imported(memory: MemoryStore, app: object, value: str, data: dict[str, object]) -> None:
    response = app.get("/dump", headers={"Cookie": f"session={value}"})  # type: ignore[attr-defined]
    assert response.json["data"] == data
    new_cookie = set_cookie_value(response)
    assert new_cookie is not None and not new_cookie.startswith("1.")
    assert Signer([FACTORY_SECRET]).verify(new_cookie) is not None
    assert memory.count() == 1
    followed = app.get("/dump", headers={"Cookie": f"session={new_cookie}"})  # type: ignore[attr-defined]
    assert followed.json["data"] == data
    assert set_cookie_value(followed) is None  # an ordinary server-side session now
    assert memory.count() == 1


def test_import_from_cookie_store_moves_sessions_to_a_server_store() -> None:
    value = set_cookie_value(our_app(CookieStore(secret=OURS)).get("/set/k/v"))
    assert value is not None
    memory = MemoryStore()
    factory = SessionFactory(
        secret=FACTORY_SECRET, store=memory, import_from=CookieStore(secret=OURS)
    )
    _assert_imported(memory, make_app(factory), value, {"k": "v"})


def test_import_from_pyramid_cookie_through_compat_mode() -> None:
    value, data = _pyramid_cookie(*PYRAMID_CONFIGS[1])
    memory = MemoryStore()
    factory = SessionFactory(
        secret=FACTORY_SECRET, store=memory, import_from=_compat_store(*PYRAMID_CONFIGS[1])
    )
    _assert_imported(memory, make_app(factory), value, data)


def test_import_from_settings_as_in_an_ini_file(caplog: pytest.LogCaptureFixture) -> None:
    secret, salt, hashalg = PYRAMID_CONFIGS[1]
    pyramid_value, pyramid_data = _pyramid_cookie(secret, salt, hashalg)
    cookie_value = set_cookie_value(our_app(CookieStore(secret=OURS)).get("/set/k/v"))
    settings = {
        "session.secret": FACTORY_SECRET,
        "session.store": "memory",
        "session.import_from": "cookie",
        "session.cookie.secret": OURS,
        "session.cookie.accept_pyramid_signed": "true",
        "session.cookie.pyramid_secret": secret,
        "session.cookie.pyramid_salt": salt,
        "session.cookie.pyramid_hashalg": hashalg,
    }
    app = make_app(None, settings)
    for value, data in ((pyramid_value, pyramid_data), (cookie_value, {"k": "v"})):
        response = app.get("/dump", headers={"Cookie": f"session={value}"})
        assert response.json["data"] == data
        new_cookie = set_cookie_value(response)
        assert new_cookie is not None and Signer([FACTORY_SECRET]).verify(new_cookie)
        followed = app.get("/dump", headers={"Cookie": f"session={new_cookie}"})
        assert followed.json["data"] == data
    with caplog.at_level(logging.WARNING, SECURITY):
        bad = app.get("/dump", headers={"Cookie": f"session={pyramid_value[:-4]}"})
    assert bad.json["data"] == {} and set_cookie_value(bad) is None


def test_cookie_store_from_settings_with_rotated_secrets() -> None:
    old_value = set_cookie_value(our_app(CookieStore(secret=OURS)).get("/set/k/v"))
    settings = {
        "session.secret": FACTORY_SECRET,
        "session.store": "cookie",
        "session.cookie.secrets": f"\n{ROTATED}\n{OURS}\n",
        "session.cookie.compress": "true",
    }
    app = make_app(None, settings)
    response = app.get("/get/k", headers={"Cookie": f"session={old_value}"})
    assert response.json == "v"
    reissued = set_cookie_value(response)
    assert reissued is not None and CookieStore(secret=ROTATED).unseal(reissued)
