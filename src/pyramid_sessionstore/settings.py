"""``session.*`` settings → a ready SessionFactory; every error names its setting.

Each factory option has a ``session.<name>`` setting and each store option a
``session.<store>.<name>`` setting (see :mod:`.stores.registry`). Values are
converted by an explicit table, never guessed. A missing or weak secret, an
unknown key, a bad value or an unknown store raises
:class:`~pyramid_sessionstore.exceptions.ConfigurationError` at start-up.
A secret may be read from the environment: ``session.secret = env:NAME``.
The cookie store without a secret of its own uses ``session.secret(s)``.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable
from collections.abc import Mapping
from typing import Any

from pyramid.path import DottedNameResolver

from .cookie_header import as_attribute
from .cookie_header import as_cookie_name
from .cookies import SECRET_ADVICE
from .cookies import secret_setting
from .cookies import secrets_setting
from .exceptions import ConfigurationError
from .exceptions import MissingDependencyError
from .factory import SessionFactory
from .serializers import serializer_by_name
from .stores.base import SealsCookies
from .stores.base import as_bool
from .stores.base import as_list
from .stores.base import as_positive_float
from .stores.base import as_positive_int
from .stores.base import as_seconds
from .stores.registry import BUILTIN_STORES
from .stores.registry import DOTTED_OPTIONS_SECTION
from .stores.registry import bad_value_message
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


def _at_least_one_second(value: Any) -> int | None:
    seconds = as_seconds(value)
    if seconds == 0:
        raise ValueError("expected seconds >= 1 or none (0 would end every session at once)")
    return seconds


def _count_or_none(value: Any) -> int | None:
    if value is None or str(value).strip().lower() in {"", "none", "null"}:
        return None
    return as_positive_int(value)


def _record_client(value: Any) -> list[str]:
    words = [word.lower() for word in as_list(value)]
    if not set(words) <= {"user_agent", "ip"}:
        raise ValueError("expected user_agent and/or ip (or nothing)")
    return words


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
    serializer = resolved() if isinstance(resolved, type) else resolved
    if not all(callable(getattr(serializer, name, None)) for name in ("dumps", "loads")):
        raise ValueError(f"{value.strip()} has no dumps() and loads() methods")
    return serializer


#: ``session.<name>`` → converter, for every SessionFactory option.
FACTORY_OPTIONS: dict[str, Callable[[Any], Any]] = {
    "secret": secret_setting,
    "secrets": secrets_setting,
    "cookie_name": as_cookie_name,
    "max_age": as_seconds,
    "path": as_attribute,
    "domain": _domain,
    "secure": as_bool,
    "httponly": as_bool,
    "samesite": _samesite,
    "timeout": _at_least_one_second,
    "max_lifetime": _at_least_one_second,
    "reissue_time": as_seconds,
    "serializer": _serializer,
    "set_on_exception": as_bool,
    "on_store_error": _choice("raise", "fresh"),
    "conflict_timeout": as_positive_float,
    "max_sessions_per_user": _count_or_none,
    "record_client": _record_client,
    "encrypt": as_bool,
}

# Settings that are not factory options but are read here.
_OTHER_KEYS = {"store", "import_from"}
# "name: ..." or "name must ...": the option a SessionFactory error is about.
_OPTION_AT_START = re.compile(r"\A([a-z_]+)(?=[:= ])")


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
        except MissingDependencyError:
            raise  # names the extra to install, like a store's missing driver
        except (TypeError, ValueError, ImportError) as err:
            message = bad_value_message(full, name, settings[full], err)
            raise ConfigurationError(message, full) from err
    if not kwargs.get("secret") and not kwargs.get("secrets"):
        raise ConfigurationError(
            f"{prefix}secret is required: {SECRET_ADVICE}, or env:NAME to read it from the"
            " environment variable NAME",
            f"{prefix}secret",
        )
    if kwargs.get("secret") and kwargs.get("secrets"):
        raise ConfigurationError(
            f"{prefix}secrets: {prefix}secret is set too; use one of them", f"{prefix}secrets"
        )
    if kwargs.get("samesite") == "None" and not kwargs.get("secure"):
        raise ConfigurationError(
            f"{prefix}samesite: none needs {prefix}secure = true (browsers reject it otherwise)",
            f"{prefix}samesite",
        )
    return kwargs


def _with_cookie_secrets(
    settings: Mapping[str, Any], prefix: str, kwargs: Mapping[str, Any]
) -> Mapping[str, Any]:
    """Give the cookie store the factory's secrets when it has none of its own.

    Its keys are derived from them for its own purpose (HKDF with the cookie
    store's salt), so they never equal the factory's signing keys.
    """
    if f"{prefix}cookie.secret" in settings or f"{prefix}cookie.secrets" in settings:
        return settings
    secrets = [kwargs["secret"]] if kwargs.get("secret") else list(kwargs["secrets"])
    return {**settings, f"{prefix}cookie.secrets": secrets}


def _factory_error(err: Exception, prefix: str) -> ConfigurationError:
    """Return a ValueError or TypeError of SessionFactory as an error naming its setting.

    Its messages start with the option's name (``samesite must be ...``).
    """
    message = str(err)
    match = _OPTION_AT_START.match(message)
    if match and match.group(1) in FACTORY_OPTIONS:
        setting = f"{prefix}{match.group(1)}"
        rest = message.removeprefix(f"{match.group(1)}:").strip()
        return ConfigurationError(f"{setting}: {rest}", setting)
    return ConfigurationError(f"{prefix}*: {message}")


def session_factory_from_settings(
    settings: Mapping[str, Any], prefix: str = "session."
) -> SessionFactory:
    """Return a SessionFactory configured by the ``<prefix>*`` keys of *settings*."""
    kwargs = parse_factory_options(settings, prefix)
    settings = _with_cookie_secrets(settings, prefix, kwargs)
    import_from = str(settings.get(f"{prefix}import_from", "")).strip()
    if import_from:
        source = build_store(import_from, settings, prefix)
        if not isinstance(source, SealsCookies):
            source.close()
            raise ConfigurationError(
                f"{prefix}import_from: {import_from!r} is not a cookie store (one that seals"
                " sessions into cookies, such as cookie); name the store to import from",
                f"{prefix}import_from",
            )
        kwargs["import_from"] = source
    store = store_from_settings(settings, prefix)
    try:
        return SessionFactory(store=store, **kwargs)
    except (TypeError, ValueError) as err:
        store.close()
        raise _factory_error(err, prefix) from err
