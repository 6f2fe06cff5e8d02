"""Server-side sessions for Pyramid, kept in a store chosen by configuration.

``config.include("pyramid_sessionstore")`` reads the ``session.*`` settings
and installs the session factory; or build a :class:`SessionFactory` in code.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .active import SessionInfo
from .active import end_session
from .active import list_user_sessions
from .exceptions import ConfigurationError
from .exceptions import ConflictError
from .exceptions import MissingDependencyError
from .exceptions import SessionBusyError
from .exceptions import SessionStoreError
from .exceptions import SessionTooLargeError
from .exceptions import StoreError
from .exceptions import StoreUnavailableError
from .factory import SessionFactory
from .session import Session
from .settings import session_factory_from_settings
from .users import invalidate_user_sessions

if TYPE_CHECKING:
    from pyramid.config import Configurator

__all__ = [
    "ConfigurationError",
    "ConflictError",
    "MissingDependencyError",
    "Session",
    "SessionBusyError",
    "SessionFactory",
    "SessionInfo",
    "SessionStoreError",
    "SessionTooLargeError",
    "StoreError",
    "StoreUnavailableError",
    "end_session",
    "includeme",
    "invalidate_user_sessions",
    "list_user_sessions",
    "session_factory_from_settings",
]


def includeme(config: Configurator) -> None:
    """Install the session factory built from the ``session.*`` settings."""
    factory = session_factory_from_settings(config.get_settings())
    config.set_session_factory(factory)
