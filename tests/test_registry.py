"""The store registry: names, entry points, dotted names, and each store's option table."""

from __future__ import annotations

import importlib
import inspect
import json
import subprocess
import sys
from typing import Any

import pytest

from pyramid_sessionstore import ConfigurationError
from pyramid_sessionstore.stores import registry
from pyramid_sessionstore.stores.base import Store


def _store_class(name: str) -> Any:
    return registry.resolve_store(name)


@pytest.mark.parametrize("name", sorted(registry.BUILTIN_STORES))
def test_builtin_module_name_equals_setting_equals_class_stem(name: str) -> None:
    cls = _store_class(name)
    assert cls.__module__ == f"pyramid_sessionstore.stores.{name}"
    assert cls.__name__.lower() == f"{name}store"


@pytest.mark.parametrize("name", sorted(registry.BUILTIN_STORES))
def test_options_table_matches_constructor(name: str) -> None:
    cls = _store_class(name)
    params = registry.keyword_parameters(cls)
    options = set(registry.store_options_table(cls))
    code_only = set(getattr(cls, "CODE_ONLY", ()))
    assert options <= params, f"OPTIONS not accepted by __init__: {options - params}"
    assert params <= options | code_only, (
        f"__init__ keywords without a setting: {params - options - code_only}"
    )


def test_importing_the_stores_package_loads_no_driver() -> None:
    import subprocess
    import sys

    code = (
        "import sys, pyramid_sessionstore, pyramid_sessionstore.stores;"
        "bad = [m for m in ('redis', 'sqlalchemy', 'pymemcache', 'cryptography', 'msgspec')"
        " if m in sys.modules]; print(bad)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_entry_point_store_is_found(monkeypatch: pytest.MonkeyPatch) -> None:
    from importlib.metadata import EntryPoint

    ep = EntryPoint(
        name="mine",
        value="pyramid_sessionstore.stores.memory:MemoryStore",
        group=registry.ENTRY_POINT_GROUP,
    )
    monkeypatch.setattr(registry, "entry_points", lambda group: [ep])
    store = registry.build_store("mine", {"session.mine.max_entries": "3"})
    assert isinstance(store, Store) and store.max_entries == 3  # type: ignore[attr-defined]


def test_entry_point_load_error_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    from importlib.metadata import EntryPoint

    ep = EntryPoint(name="broken", value="no_such_module:Store", group=registry.ENTRY_POINT_GROUP)
    monkeypatch.setattr(registry, "entry_points", lambda group: [ep])
    with pytest.raises(ConfigurationError, match="failed to load"):
        registry.build_store("broken", {})


def test_dotted_name_that_is_not_a_store_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="does not implement the Store protocol"):
        registry.build_store("collections:OrderedDict", {})


def test_dotted_name_that_does_not_import_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="cannot import"):
        registry.build_store("no.such.module:Store", {})


def test_stores_package_exports_every_builtin_lazily() -> None:
    stores = importlib.import_module("pyramid_sessionstore.stores")
    for spec in registry.BUILTIN_STORES.values():
        class_name = spec.split(":")[1]
        assert getattr(stores, class_name).__name__ == class_name


def test_bad_value_error_never_prints_a_password() -> None:
    class Picky:
        OPTIONS = {"url": lambda v: int(v), "password": lambda v: int(v)}

    with pytest.raises(ConfigurationError) as info:
        registry.convert_options(Picky, {"url": "redis://u:hunter2@h/0"}, "session.x.")
    assert "hunter2" not in str(info.value) and "***" in str(info.value)
    with pytest.raises(ConfigurationError) as info:
        registry.convert_options(Picky, {"password": "hunter2"}, "session.x.")
    assert "hunter2" not in str(info.value)


# -- errors name the setting, never Python internals ---------------------------


def _required_options(cls: Any) -> list[str]:
    params = inspect.signature(cls).parameters.values()
    return [p.name for p in params if p.default is p.empty and p.kind is not p.VAR_KEYWORD]


@pytest.mark.parametrize("name", sorted(registry.BUILTIN_STORES))
def test_every_required_option_is_named_when_missing(name: str) -> None:
    cls = _store_class(name)
    for option in _required_options(cls):
        with pytest.raises(ConfigurationError) as info:
            registry.build_store(name, {})
        assert info.value.setting == f"session.{name}.{option}"
        assert str(info.value) == f"session.{name}.{option} is required by {cls.__name__}"


def test_required_options_are_found_on_the_stores_that_have_them() -> None:
    found = {n: _required_options(_store_class(n)) for n in registry.BUILTIN_STORES}
    assert found["sqlite"] == ["path"] and found["file"] == ["path"]


class NeedsClient:
    """A store class whose required argument has no setting."""

    OPTIONS: dict[str, Any] = {}

    def __init__(self, *, client: object) -> None:
        self.client = client


def test_a_required_code_only_argument_says_to_build_the_store_in_code() -> None:
    with pytest.raises(ConfigurationError, match="needs client=, which only code can give"):
        registry.build_store(f"{__name__}:NeedsClient", {})


class Picky:
    """A store class whose errors start with the option they are about."""

    OPTIONS: dict[str, Any] = {"size": int, "mode": str}

    def __init__(self, *, size: int = 1, mode: str = "a") -> None:
        if size < 1:
            raise ValueError(f"size must be at least 1, got {size}")
        if mode != "a":
            raise ValueError("mode: expected a")


def test_a_store_error_starting_with_an_option_names_its_setting() -> None:
    for options, message in [
        ({"session.store.size": "0"}, "session.store.size: size must be at least 1, got 0"),
        ({"session.store.mode": "b"}, "session.store.mode: expected a"),
    ]:
        with pytest.raises(ConfigurationError) as info:
            registry.build_store(f"{__name__}:Picky", options)
        assert str(info.value) == message


#: Store settings, the module a missing driver would be, and the extra that installs it.
DRIVERS = [
    ({"session.store": "redis"}, "redis", "redis"),
    ({"session.store": "memcached"}, "pymemcache", "memcached"),
    ({"session.store": "cookie"}, "cryptography", "cookie"),
    ({"session.store": "memory", "session.import_from": "cookie"}, "cryptography", "cookie"),
    ({"session.serializer": "msgpack"}, "msgspec", "msgpack"),
    (
        {"session.store": "sql", "session.sql.url": "postgresql+psycopg://u@h/d"},
        "psycopg",
        "postgresql",
    ),
    ({"session.store": "sql", "session.sql.url": "mysql+pymysql://u@h/d"}, "pymysql", "mysql"),
]


@pytest.mark.parametrize(("settings", "module", "extra"), DRIVERS)
def test_a_missing_driver_names_the_extra_that_installs_it(
    settings: dict[str, str], module: str, extra: str
) -> None:
    code = (
        "import sys, json\n"
        f"sys.modules[{module!r}] = None  # as if not installed\n"
        "from pyramid_sessionstore import session_factory_from_settings\n"
        "from pyramid_sessionstore import MissingDependencyError\n"
        "try:\n"
        "    session_factory_from_settings(json.loads(sys.argv[1]))\n"
        "except MissingDependencyError as err:\n"
        "    print(err)\n"
    )
    secret = {"session.secret": "nwd-531UQMGFPQjW0sCuEAkfqZvn-7lbCLIbWfPQ6CFALY6T9K-1t9-jdw348QvV"}
    argument = json.dumps({**secret, **settings})
    result = subprocess.run(
        [sys.executable, "-c", code, argument], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    assert f"pip install 'pyramid_sessionstore[{extra}]'" in result.stdout
