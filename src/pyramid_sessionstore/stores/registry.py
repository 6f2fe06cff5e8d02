"""Find a store class by name and build it from ``session.<store>.*`` settings.

``session.store = NAME`` is resolved, in order, as a built-in name (a lazy map,
so importing this package imports no driver), an entry point named NAME in the
group ``pyramid_sessionstore.stores`` (only that one is loaded, and its load
errors are reported), or a dotted name (``package.module:Class``).

A store declares its settings in a class attribute ``OPTIONS``, a mapping of
keyword-argument name to converter; arguments that only make sense in code
(a ready client, an engine) are listed in ``CODE_ONLY``. A composite store
(chain) defines ``from_settings(options, *, build)`` to build its children.
"""

from __future__ import annotations

import difflib
import importlib
import inspect
import re
from collections.abc import Callable
from collections.abc import Mapping
from importlib.metadata import entry_points
from typing import Any

from ..exceptions import ConfigurationError
from .base import Store
from .base import shown_value

__all__ = [
    "BUILTIN_STORES",
    "ENTRY_POINT_GROUP",
    "build_store",
    "convert_options",
    "resolve_store",
    "store_from_settings",
]

ENTRY_POINT_GROUP = "pyramid_sessionstore.stores"

#: Built-in store names and where their classes live. A store's module name
#: equals its setting value equals its class stem.
BUILTIN_STORES: dict[str, str] = {
    "memory": "pyramid_sessionstore.stores.memory:MemoryStore",
    "file": "pyramid_sessionstore.stores.file:FileStore",
    "sqlite": "pyramid_sessionstore.stores.sqlite:SQLiteStore",
    "redis": "pyramid_sessionstore.stores.redis:RedisStore",
    "sql": "pyramid_sessionstore.stores.sql:SQLStore",
    "memcached": "pyramid_sessionstore.stores.memcached:MemcachedStore",
    "cookie": "pyramid_sessionstore.stores.cookie:CookieStore",
    "chain": "pyramid_sessionstore.stores.chain:ChainStore",
}

#: Settings key, under ``session.``, holding options of a store given by dotted name.
DOTTED_OPTIONS_SECTION = "store"
# "name: ..." or "name must ...": the option a store's ValueError is about.
_OPTION_AT_START = re.compile(r"\A([a-z_][a-z0-9_]*)(:| |,)")


def _import_dotted(spec: str) -> Any:
    module_name, _, attr = spec.partition(":")
    if not attr:
        module_name, _, attr = spec.rpartition(".")
    if not module_name or not attr:
        raise ImportError(f"{spec!r} is not a dotted name like 'package.module:Class'")
    obj: Any = importlib.import_module(module_name)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj


def _entry_point(name: str) -> Any | None:
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name == name:
            return ep
    return None


def _entry_point_names() -> list[str]:
    return sorted(ep.name for ep in entry_points(group=ENTRY_POINT_GROUP))


def resolve_store(name: str, setting: str = "session.store") -> type[Any]:
    """Return the store class that *name* designates.

    :param name: a built-in name, an entry point name or a dotted name.
    :param setting: the setting it came from, named in errors.
    """
    if name in BUILTIN_STORES:
        return _import_dotted(BUILTIN_STORES[name])  # type: ignore[no-any-return]
    ep = _entry_point(name)
    if ep is not None:
        try:
            return ep.load()  # type: ignore[no-any-return]
        except Exception as err:  # report any plugin load failure with its cause
            raise ConfigurationError(
                f"{setting}: the store entry point {name!r} ({ep.value}) failed to load: {err}",
                setting,
            ) from err
    if "." in name or ":" in name:
        try:
            return _import_dotted(name)  # type: ignore[no-any-return]
        except (ImportError, AttributeError) as err:
            raise ConfigurationError(
                f"{setting}: cannot import store {name!r}: {err}", setting
            ) from err
    known = sorted(BUILTIN_STORES) + _entry_point_names()
    close = difflib.get_close_matches(name, known, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    builtins = ", ".join(sorted(BUILTIN_STORES))
    raise ConfigurationError(
        f"{setting}: unknown store {name!r}; built-in stores are {builtins}"
        f" (or give a dotted name, or install a store registering the entry point"
        f" group {ENTRY_POINT_GROUP!r}){hint}",
        setting,
    )


def store_options_table(cls: type[Any]) -> Mapping[str, Callable[[Any], Any]]:
    """Return the ``OPTIONS`` table a store class declares (empty when none)."""
    return getattr(cls, "OPTIONS", {})


def convert_options(cls: type[Any], options: Mapping[str, Any], section: str) -> dict[str, Any]:
    """Convert raw *options* to keyword arguments for *cls*.

    :param section: the settings prefix of these options, e.g. ``session.redis.``,
        used to name the full setting in errors.
    """
    table = store_options_table(cls)
    kwargs: dict[str, Any] = {}
    for key, raw in sorted(options.items()):
        setting = f"{section}{key}"
        if key not in table:
            close = difflib.get_close_matches(key, list(table), n=1)
            hint = f"; did you mean {section}{close[0]}?" if close else ""
            known = ", ".join(sorted(table)) or "none"
            raise ConfigurationError(
                f"{setting}: unknown setting for {cls.__name__} (its settings are: {known}){hint}",
                setting,
            )
        try:
            kwargs[key] = table[key](raw)
        except (TypeError, ValueError) as err:
            raise ConfigurationError(bad_value_message(setting, key, raw, err), setting) from err
    return kwargs


def bad_value_message(setting: str, name: str, raw: Any, err: Exception) -> str:
    """Return the message for a value of *setting* its converter refused with *err*.

    A secret's value is never shown: its converter's message says what is wrong
    with it (too short, a variable that is not set) without quoting it.
    """
    if "secret" in name.lower():
        return f"{setting}: {err}"
    return f"{setting}: bad value {shown_value(name, raw, err)}"


def _required(cls: type[Any], kwargs: Mapping[str, Any], section: str) -> None:
    """Refuse a missing required keyword of ``cls.__init__``, naming its setting."""
    try:
        params = inspect.signature(cls).parameters.values()
    except (TypeError, ValueError):  # no signature to read (a C type, a mock)
        return
    for p in params:
        named = p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)
        if named and p.default is p.empty and p.name not in kwargs:
            setting = f"{section}{p.name}"
            if p.name not in store_options_table(cls):  # code-only: no setting can give it
                message = f"{cls.__name__} needs {p.name}=, which only code can give"
                raise ConfigurationError(f"{section}*: {message}; build the store in code")
            raise ConfigurationError(f"{setting} is required by {cls.__name__}", setting)


def _option_error(cls: type[Any], err: Exception, section: str) -> ConfigurationError:
    """Return *err*, raised by building *cls*, as an error naming the setting at fault.

    Stores start their messages with the option's name (``url: ...`` or
    ``max_entries must be ...``); other messages name the section.
    """
    message = str(err)
    match = _OPTION_AT_START.match(message)
    if match and match.group(1) in store_options_table(cls):
        setting = f"{section}{match.group(1)}"
        rest = message[match.end(1) :].lstrip(":").strip()
        if match.group(2) == ":":
            return ConfigurationError(f"{setting}: {rest}", setting)
        return ConfigurationError(f"{setting}: {message}", setting)
    return ConfigurationError(f"{section}*: cannot build {cls.__name__}: {message}")


def build_store(
    name: str,
    settings: Mapping[str, Any],
    prefix: str = "session.",
    *,
    _building: tuple[str, ...] = (),
) -> Store:
    """Build the store *name* from its ``<prefix><name>.*`` settings.

    :param name: the store name, as ``session.store`` gives it.
    :param settings: the application settings (all keys, prefixed).
    :param prefix: the settings prefix of pyramid_sessionstore.
    """
    if name in _building:
        cycle = " -> ".join((*_building, name))
        raise ConfigurationError(f"{prefix}store: stores refer to each other: {cycle}")
    cls = resolve_store(name, f"{prefix}store")
    named = name in BUILTIN_STORES or _entry_point(name) is not None
    section_name = name if named else DOTTED_OPTIONS_SECTION
    section = f"{prefix}{section_name}."
    options = {k[len(section) :]: v for k, v in settings.items() if k.startswith(section)}

    def build(child: str) -> Store:
        return build_store(child, settings, prefix, _building=(*_building, name))

    try:
        from_settings = getattr(cls, "from_settings", None)
        if from_settings is not None:
            store = from_settings(options, build=build, section=section)
        else:
            kwargs = convert_options(cls, options, section)
            _required(cls, kwargs, section)
            store = cls(**kwargs)
    except ConfigurationError:
        raise
    except (TypeError, ValueError) as err:
        raise _option_error(cls, err, section) from err
    if not isinstance(store, Store):
        raise ConfigurationError(
            f"{prefix}store: {cls.__module__}.{cls.__qualname__} does not implement the Store"
            " protocol (load, save, touch, delete, close)",
            f"{prefix}store",
        )
    return store


def store_from_settings(settings: Mapping[str, Any], prefix: str = "session.") -> Store:
    """Build the store named by ``<prefix>store`` (default ``memory``)."""
    name = str(settings.get(f"{prefix}store", "memory")).strip()
    own_name, factory_name = f"{prefix}cookie.cookie_name", f"{prefix}cookie_name"
    if name == "cookie" and own_name not in settings and factory_name in settings:
        # The cookie store counts the name in its size limit: the factory's, unless told.
        settings = {**settings, own_name: settings[factory_name]}
    return build_store(name, settings, prefix)


def keyword_parameters(cls: type[Any]) -> set[str]:
    """Return the keyword parameter names of ``cls.__init__`` (for the options test)."""
    sig = inspect.signature(cls.__init__)
    return {
        p.name
        for p in sig.parameters.values()
        if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD) and p.name != "self"
    }
