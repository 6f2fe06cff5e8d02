"""The store registry: names, entry points, dotted names, and each store's option table."""

from __future__ import annotations

import importlib
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
