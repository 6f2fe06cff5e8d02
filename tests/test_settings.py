"""``session.*`` settings: every option converts, every mistake names its setting."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pyramid.config import Configurator
from webtest import TestApp

from pyramid_sessionstore import ConfigurationError
from pyramid_sessionstore import SessionFactory
from pyramid_sessionstore import session_factory_from_settings
from pyramid_sessionstore import settings as settings_module
from pyramid_sessionstore.cookies import Signer
from pyramid_sessionstore.serializers import MsgpackSerializer
from pyramid_sessionstore.serializers import PickleSerializer
from pyramid_sessionstore.settings import FACTORY_OPTIONS
from pyramid_sessionstore.stores import MemoryStore

#: Random, as the docs ask: weak secrets are refused.
SECRET = "C-Kfu6M4hCC9ZvajQuP4CCdHiCzpZFznvFMs2nMYFCzu8qH1v4KymEAQTsjje2f-"
OLDER = "nwd-531UQMGFPQjW0sCuEAkfqZvn-7lbCLIbWfPQ6CFALY6T9K-1t9-jdw348QvV"


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
        conflict_timeout="0.5",
        max_sessions_per_user="3",
        record_client="user_agent ip",
        encrypt="true",
    )
    assert (factory.cookie_name, factory.max_age, factory.path) == ("sid", 3600, "/app")
    assert (factory.domain, factory.secure, factory.httponly) == ("example.com", True, False)
    assert (factory.samesite, factory.timeout, factory.max_lifetime) == ("Strict", None, 86400)
    assert (factory.reissue_time, factory.set_on_exception) == (60, False)
    assert (factory.on_store_error, factory.conflict_timeout) == ("fresh", 0.5)
    assert isinstance(factory.serializer, MsgpackSerializer)
    policy = factory.policy
    assert policy.max_sessions_per_user == 3
    assert policy.record_client == frozenset({"user_agent", "ip"})
    assert policy.encrypt is True and build().policy.encrypt is False
    assert build(max_sessions_per_user="none", record_client="").policy.record_client == frozenset()


def test_settings_table_covers_every_factory_keyword() -> None:
    import inspect

    params = set(inspect.signature(SessionFactory.__init__).parameters) - {"self"}
    assert params - set(FACTORY_OPTIONS) == {"store", "import_from"}  # read by the registry
    assert set(FACTORY_OPTIONS) <= params


def test_secrets_one_per_line_newest_first() -> None:
    factory = session_factory_from_settings({"session.secrets": f"\n{SECRET}\n{OLDER}\n"})
    value = factory.signer.sign("A" * 43)
    assert Signer([SECRET]).verify(value) is not None
    assert factory.signer.verify(Signer([OLDER]).sign("A" * 43)) is not None


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
    ("session.timeout", "0"),
    ("session.max_lifetime", "0"),
    ("session.conflict_timeout", "0"),
    ("session.serializer", "pyramid_sessionstore.stores.memory:MemoryStore"),
    ("session.import_from", "memory"),
    ("session.samesite", "none"),
    ("session.max_sessions_per_user", "0"),
    ("session.record_client", "cookies"),
    ("session.encrypt", "maybe"),
]


@pytest.mark.parametrize(("setting", "value"), BAD_SETTINGS)
def test_bad_settings_fail_naming_the_setting(setting: str, value: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        session_factory_from_settings({"session.secret": SECRET, setting: value})
    assert info.value.setting == setting
    assert str(info.value).startswith(f"{setting}: ")


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


# -- secrets: weak ones refused, env:NAME read at start-up ----------------------

README = Path(__file__).parent.parent / "README.md"

WEAK_SECRETS = [
    "s" * 64,
    "changeme" * 8,
    "too-short-Kfu6M4hCC9",
    '(64 random characters: python -c "import secrets; print(secrets.token_urlsafe(48))")',
    "a b c d e f g h i j k l m n o p q r s t u v w x y z",
    "${SESSION_SECRET_FOR_THE_PRODUCTION_SERVERS}",
    "%(session_secret_for_the_production_servers)s",
]


@pytest.mark.parametrize("weak", WEAK_SECRETS)
def test_weak_secret_is_refused_naming_the_setting_not_the_secret(weak: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        session_factory_from_settings({"session.secret": weak})
    assert info.value.setting == "session.secret"
    assert str(info.value).startswith("session.secret: refused: it ")
    assert "token_urlsafe(48)" in str(info.value)  # how to make a good one
    assert weak not in str(info.value)


def test_weak_secret_among_several_is_refused_with_its_place() -> None:
    with pytest.raises(ConfigurationError) as info:
        session_factory_from_settings({"session.secrets": f"{SECRET}\n{'o' * 64}"})
    assert info.value.setting == "session.secrets"
    assert "secret 2 of 2 is refused" in str(info.value) and "o" * 64 not in str(info.value)


def test_secret_from_an_environment_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PSS_TEST_SECRET", SECRET)
    factory = session_factory_from_settings({"session.secret": "env:PSS_TEST_SECRET"})
    assert Signer([SECRET]).verify(factory.signer.sign("A" * 43)) is not None
    monkeypatch.setenv("PSS_TEST_SECRETS", f"{SECRET} {OLDER}")  # rotation: newest first
    factory = session_factory_from_settings({"session.secrets": "env:PSS_TEST_SECRETS"})
    assert Signer([SECRET]).verify(factory.signer.sign("A" * 43)) is not None
    assert factory.signer.verify(Signer([OLDER]).sign("A" * 43)) is not None


@pytest.mark.parametrize("value", ["", "s" * 64])
def test_environment_variable_unset_or_weak_names_setting_and_variable(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("PSS_TEST_SECRET", value)
    with pytest.raises(ConfigurationError) as info:
        session_factory_from_settings({"session.secret": "env:PSS_TEST_SECRET"})
    assert info.value.setting == "session.secret"
    assert str(info.value).startswith("session.secret: ")
    assert ("PSS_TEST_SECRET" in str(info.value)) is (value == "")
    assert value == "" or value not in str(info.value)


def test_readme_quick_start_runs_only_with_its_secret_in_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    quick_start = README.read_text().partition("## Quick start")[2].partition("\n## ")[0]
    ini = quick_start.partition("```ini\n")[2].partition("```")[0]
    settings = dict(
        (k.strip(), v.strip()) for k, _, v in (line.partition("=") for line in ini.splitlines())
    )
    assert settings["session.secret"].startswith("env:")
    variable = settings["session.secret"].removeprefix("env:")
    monkeypatch.delenv(variable, raising=False)
    with pytest.raises(ConfigurationError, match=f"session.secret: .*{variable}"):
        session_factory_from_settings(settings)
    command = quick_start.partition(f"export {variable}=")[2].splitlines()[0]
    assert "token_urlsafe(48)" in command  # the README says how to make one
    monkeypatch.setenv(variable, SECRET)
    factory = session_factory_from_settings(settings)
    factory.store.close()


# -- each mistake names its own setting ----------------------------------------


def test_factory_error_names_the_option_it_starts_with(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(**kwargs: Any) -> SessionFactory:
        raise ValueError("reissue_time must be whole seconds >= 0 or None, not -1")

    monkeypatch.setattr(settings_module, "SessionFactory", refuse)
    with pytest.raises(ConfigurationError) as info:
        build()
    assert info.value.setting == "session.reissue_time"
    assert str(info.value).startswith("session.reissue_time: reissue_time must be")


@pytest.mark.parametrize(
    ("settings", "setting"),
    [
        ({"session.store": "sqlite"}, "session.sqlite.path"),
        ({"session.store": "file"}, "session.file.path"),
        ({"session.store": "sql"}, "session.sql.url"),
        (
            {"session.store": "memory", "session.memory.max_entries": "0"},
            "session.memory.max_entries",
        ),
        (
            {"session.store": "file", "session.file.path": "/tmp", "session.file.shard_depth": "9"},
            "session.file.shard_depth",
        ),
        (
            {"session.store": "redis", "session.redis.sentinels": "127.0.0.1:26379"},
            "session.redis.service_name",
        ),
        ({"session.store": "cookie", "session.cookie.max_size": "10"}, "session.cookie.max_size"),
    ],
)
def test_store_option_errors_name_the_setting(settings: dict[str, str], setting: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        session_factory_from_settings({"session.secret": SECRET, **settings})
    assert info.value.setting == setting
    assert str(info.value).startswith(f"{setting}: ") or str(info.value).startswith(
        f"{setting} is required"
    )
    assert "__init__" not in str(info.value)
