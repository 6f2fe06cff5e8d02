"""``session.*`` settings → a ready SessionFactory; every error names its setting.

Each factory option has a ``session.<name>`` setting and each store option a
``session.<store>.<name>`` setting (see :mod:`.stores.registry`). Values are
converted by an explicit table, never guessed. A missing secret, an unknown
key, a bad value or an unknown store raises
:class:`~pyramid_sessionstore.exceptions.ConfigurationError` at start-up.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from collections.abc import Mapping
from typing import Any

from pyramid.path import DottedNameResolver

from .cookie_header import as_attribute
from .cookie_header import as_cookie_name
from .exceptions import ConfigurationError
from .factory import SessionFactory
from .serializers import serializer_by_name
from .stores.base import as_bool
from .stores.base import as_int
from .stores.base import as_seconds
from .stores.base import shown_value
from .stores.registry import BUILTIN_STORES
from .stores.registry import DOTTED_OPTIONS_SECTION
from .stores.registry import build_store
from .stores.registry import convert_options
from .stores.registry import resolve_store
from .stores.registry import store_from_settings

__all__ = ["parse_factory_options", "session_factory_from_settings"]


def _optional_str(value: Any) -> str | None:
    text = str(value).strip()
    return text or None


def _domain(value: Any) -> str | None:
    text = _optional_str(value)
    return None if text is None else as_attribute(text)


def _secrets(value: Any) -> list[str]:
    if isinstance(value, (list, tuple)):
        return [str(v) for v in value]
    return [line.strip() for line in str(value).splitlines() if line.strip()]


def _samesite(value: Any) -> str | None:
    text = str(value).strip().lower()
    if text in {"", "omit"}:
        return None
    if text not in {"strict", "lax", "none"}:
        raise ValueError("expected strict, lax, none (the attribute SameSite=None) or omit")
    return text.capitalize()


def _choice(*choices: str) -> Callable[[Any], str]:
    def convert(value: Any) -> str:
        text = str(value).strip().lower()
        if text not in choices:
            raise ValueError(f"expected one of {', '.join(choices)}")
        return text

    return convert


def _serializer(value: Any) -> Any:
    if not isinstance(value, str):
        return value
    named = serializer_by_name(value)
    if named is not None:
        return named
    if "." not in value and ":" not in value:
        raise ValueError("expected json, msgpack, pickle or a dotted name")
    resolved = DottedNameResolver().resolve(value.strip())
    return resolved() if isinstance(resolved, type) else resolved


#: ``session.<name>`` → converter, for every SessionFactory option.
FACTORY_OPTIONS: dict[str, Callable[[Any], Any]] = {
    "secret": str,
    "secrets": _secrets,
    "cookie_name": as_cookie_name,
    "max_age": as_seconds,
    "path": as_attribute,
    "domain": _domain,
    "secure": as_bool,
    "httponly": as_bool,
    "samesite": _samesite,
    "timeout": as_seconds,
    "max_lifetime": as_seconds,
    "reissue_time": as_seconds,
    "serializer": _serializer,
    "set_on_exception": as_bool,
    "on_store_error": _choice("raise", "fresh"),
    "conflict_retries": as_int,
}

# Settings that are not factory options but are read here.
_OTHER_KEYS = {"store", "import_from"}


def _check_keys(settings: Mapping[str, Any], prefix: str) -> None:
    """Reject any ``<prefix>*`` key that is neither an option nor a store section."""
    top_level = set(FACTORY_OPTIONS) | _OTHER_KEYS
    for full in sorted(k for k in settings if k.startswith(prefix)):
        name = full[len(prefix) :]
        section, dot, option = name.partition(".")
        if not dot:
            if name not in top_level:
                close = difflib.get_close_matches(name, sorted(top_level), n=1)
                hint = f"; did you mean {prefix}{close[0]}?" if close else ""
                raise ConfigurationError(f"{full}: unknown setting{hint}", full)
            continue
        if section in BUILTIN_STORES:
            cls = resolve_store(section, full)
            if not hasattr(cls, "from_settings"):
                convert_options(cls, {option: settings[full]}, f"{prefix}{section}.")
        elif section != DOTTED_OPTIONS_SECTION:
            from .stores.registry import _entry_point  # plugin sections are checked on build

            if _entry_point(section) is None:
                close = difflib.get_close_matches(section, sorted(BUILTIN_STORES), n=1)
                hint = f"; did you mean {prefix}{close[0]}.{option}?" if close else ""
                raise ConfigurationError(f"{full}: unknown setting{hint}", full)


def parse_factory_options(settings: Mapping[str, Any], prefix: str = "session.") -> dict[str, Any]:
    """Return SessionFactory keyword arguments from *settings* (without the store)."""
    _check_keys(settings, prefix)
    kwargs: dict[str, Any] = {}
    for name, convert in FACTORY_OPTIONS.items():
        full = f"{prefix}{name}"
        if full not in settings:
            continue
        try:
            kwargs[name] = convert(settings[full])
        except (TypeError, ValueError, ImportError) as err:
            shown = shown_value(name, settings[full], err)
            raise ConfigurationError(f"{full}: bad value {shown}", full) from err
    if not kwargs.get("secret") and not kwargs.get("secrets"):
        raise ConfigurationError(
            f"{prefix}secret is required: set it to 64 random characters, e.g. the output of"
            " python -c 'import secrets; print(secrets.token_urlsafe(48))'",
            f"{prefix}secret",
        )
    if kwargs.get("secret") and kwargs.get("secrets"):
        raise ConfigurationError(
            f"{prefix}secret and {prefix}secrets are both set: use one", f"{prefix}secrets"
        )
    return kwargs


def session_factory_from_settings(
    settings: Mapping[str, Any], prefix: str = "session."
) -> SessionFactory:
    """Return a SessionFactory configured by the ``<prefix>*`` keys of *settings*."""
    kwargs = parse_factory_options(settings, prefix)
    import_from = str(settings.get(f"{prefix}import_from", "")).strip()
    if import_from:
        kwargs["import_from"] = build_store(import_from, settings, prefix)
    store = store_from_settings(settings, prefix)
    try:
        return SessionFactory(store=store, **kwargs)
    except (TypeError, ValueError) as err:
        store.close()
        raise ConfigurationError(f"{prefix}*: {err}") from err
