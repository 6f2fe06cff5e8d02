"""``session.*`` settings: every option converts, every mistake names its setting."""

from __future__ import annotations

from typing import Any

import pytest
from pyramid.config import Configurator
from webtest import TestApp

from pyramid_sessionstore import ConfigurationError
from pyramid_sessionstore import SessionFactory
from pyramid_sessionstore import session_factory_from_settings
from pyramid_sessionstore.serializers import MsgpackSerializer
from pyramid_sessionstore.serializers import PickleSerializer
from pyramid_sessionstore.settings import FACTORY_OPTIONS
from pyramid_sessionstore.stores import MemoryStore

SECRET = "s" * 64


def build(**settings: Any) -> SessionFactory:
    return session_factory_from_settings(
        {"session.secret": SECRET, **{f"session.{k}": v for k, v in settings.items()}}
    )


def test_defaults_from_minimal_settings() -> None:
    factory = build()
    assert isinstance(factory.store, MemoryStore)
    assert factory.timeout == 1200 and factory.httponly is True and factory.samesite == "Lax"
    assert factory.cookie_name == "session" and factory.max_age is None


def test_every_factory_option_converts_from_a_string() -> None:
    factory = build(
        cookie_name="sid",
        max_age="3600",
        path="/app",
        domain="example.com",
        secure="true",
        httponly="false",
        samesite="strict",
        timeout="none",
        max_lifetime="86400",
        reissue_time="60",
        serializer="msgpack",
        set_on_exception="no",
        on_store_error="fresh",
        conflict_retries="2",
    )
    assert (factory.cookie_name, factory.max_age, factory.path) == ("sid", 3600, "/app")
    assert (factory.domain, factory.secure, factory.httponly) == ("example.com", True, False)
    assert (factory.samesite, factory.timeout, factory.max_lifetime) == ("Strict", None, 86400)
    assert (factory.reissue_time, factory.set_on_exception) == (60, False)
    assert (factory.on_store_error, factory.conflict_retries) == ("fresh", 2)
    assert isinstance(factory.serializer, MsgpackSerializer)


def test_settings_table_covers_every_factory_keyword() -> None:
    import inspect

    params = set(inspect.signature(SessionFactory.__init__).parameters) - {"self"}
    assert params - set(FACTORY_OPTIONS) == {"store", "import_from"}  # read by the registry
    assert set(FACTORY_OPTIONS) <= params


def test_secrets_one_per_line_newest_first() -> None:
    factory = session_factory_from_settings({"session.secrets": f"\n{'n' * 64}\n{'o' * 64}\n"})
    value = factory.signer.sign("A" * 43)
    from pyramid_sessionstore.cookies import Signer

    assert Signer(["n" * 64]).verify(value) is not None


def test_pickle_only_by_name() -> None:
    assert isinstance(build(serializer="pickle").serializer, PickleSerializer)


def test_serializer_by_dotted_name() -> None:
    factory = build(serializer="pyramid_sessionstore.serializers:JSONSerializer")
    assert type(factory.serializer).__name__ == "JSONSerializer"


BAD_SETTINGS = [
    ("session.timout", "5"),
    ("session.timeout", "soon"),
    ("session.timeout", "-1"),
    ("session.secure", "maybe"),
    ("session.samesite", "loose"),
    ("session.serializer", "yaml"),
    ("session.on_store_error", "ignore"),
    ("session.store", "rediss"),
    ("session.memory.max_entrys", "5"),
    ("session.memory.max_entries", "x"),
    ("session.mem.max_entries", "5"),
    ("session.secrets", SECRET),
]


@pytest.mark.parametrize(("setting", "value"), BAD_SETTINGS)
def test_bad_settings_fail_naming_the_setting(setting: str, value: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        session_factory_from_settings({"session.secret": SECRET, setting: value})
    assert setting in str(info.value)


def test_missing_secret_fails_naming_it() -> None:
    with pytest.raises(ConfigurationError) as info:
        session_factory_from_settings({"session.store": "memory"})
    assert info.value.setting == "session.secret"


def test_unknown_store_suggests_the_closest_name() -> None:
    with pytest.raises(ConfigurationError, match="did you mean 'redis'"):
        session_factory_from_settings({"session.secret": SECRET, "session.store": "rediss"})


def test_unknown_setting_suggests_the_closest_name() -> None:
    with pytest.raises(ConfigurationError, match="did you mean session.timeout"):
        session_factory_from_settings({"session.secret": SECRET, "session.timout": "5"})


def test_samesite_none_requires_secure() -> None:
    with pytest.raises(ConfigurationError, match="secure"):
        build(samesite="none")
    assert build(samesite="none", secure="true").samesite == "None"


def test_other_prefixes_are_ignored() -> None:
    factory = session_factory_from_settings(
        {"session.secret": SECRET, "sessions.whatever": "1", "pyramid.reload_templates": "t"}
    )
    assert factory.cookie_name == "session"


def test_dotted_store_takes_options_from_session_store_section() -> None:
    factory = session_factory_from_settings(
        {
            "session.secret": SECRET,
            "session.store": "pyramid_sessionstore.stores.memory:MemoryStore",
            "session.store.max_entries": "7",
        }
    )
    assert isinstance(factory.store, MemoryStore) and factory.store.max_entries == 7


def test_includeme_installs_the_factory() -> None:
    with Configurator(settings={"session.secret": SECRET, "session.store": "memory"}) as config:
        config.include("pyramid_sessionstore")

        def view(request: Any) -> Any:
            request.session["a"] = 1
            request.response.text = "ok"
            return request.response

        config.add_route("v", "/")
        config.add_view(view, route_name="v")
        app = TestApp(config.make_wsgi_app())
    assert "session=" in app.get("/").headers["Set-Cookie"]


def test_includeme_fails_at_startup_not_first_request() -> None:
    with pytest.raises(ConfigurationError, match="session.secret"):
        with Configurator(settings={}) as config:
            config.include("pyramid_sessionstore")
