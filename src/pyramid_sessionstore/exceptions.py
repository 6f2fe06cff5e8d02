"""Every exception pyramid_sessionstore raises, on one screen.

Bad input from a client (a tampered cookie, a corrupt record) is never an
exception: it becomes a fresh session and a warning on the
``pyramid_sessionstore.security`` logger. What is here is for operators and
developers: wrong settings, a store that cannot be reached, a lost
compare-and-set, a session too large for its cookie, a missing driver.
"""

from __future__ import annotations

from pyramid.exceptions import ConfigurationError as _PyramidConfigurationError

__all__ = [
    "ConfigurationError",
    "ConflictError",
    "MissingDependencyError",
    "SessionBusyError",
    "SessionStoreError",
    "SessionTooLargeError",
    "StoreError",
    "StoreUnavailableError",
]


class SessionStoreError(Exception):
    """Base of everything pyramid_sessionstore raises."""


class ConfigurationError(SessionStoreError, _PyramidConfigurationError):  # type: ignore[misc]
    """A setting is missing, unknown or has a bad value.

    Raised at start-up, never at the first request.
    """

    def __init__(self, message: str, setting: str | None = None) -> None:
        super().__init__(message)
        #: The full name of the setting at fault, e.g. ``session.redis.url``.
        self.setting = setting


class StoreError(SessionStoreError):
    """A store could not do what was asked; the driver's error is chained."""

    def __init__(self, message: str, store: object = None) -> None:
        super().__init__(message)
        #: The store that raised, when known.
        self.store = store


class StoreUnavailableError(StoreError):
    """The store's server, file or database cannot be reached or written."""


class ConflictError(StoreError):
    """A compare-and-set lost: the record changed, vanished or already exists.

    The factory catches it, reloads and re-applies the request's own changes.
    """


class SessionBusyError(ConflictError):
    """This request's session changes lost every race within ``conflict_timeout``.

    Raised at the end of a request when other requests of the same session
    kept writing it (or a user's index) for longer than the conflict budget.
    Nothing already saved is lost: this request's own changes were not
    saved, and the response says so (a ``503 Service Unavailable`` with
    ``Retry-After``, unless an exception view for this class makes another).
    """

    def __init__(self, message: str, store: object = None, *, attempts: int, retry_after: float):
        super().__init__(message, store)
        #: How many compare-and-set attempts were made.
        self.attempts = attempts
        #: Seconds after which a retry of the request is likely to succeed.
        self.retry_after = retry_after


class SessionTooLargeError(SessionStoreError, ValueError):
    """The encoded session is larger than the store accepts."""

    def __init__(self, message: str, size: int, limit: int) -> None:
        super().__init__(message)
        #: Size of the encoded session, in bytes.
        self.size = size
        #: The limit it passed, in bytes.
        self.limit = limit


class MissingDependencyError(SessionStoreError, ImportError):
    """A store's driver is not installed."""


def missing_dependency(store: str, package: str, extra: str) -> MissingDependencyError:
    """Return the error for *store* needing *package*, naming the extra to install."""
    return MissingDependencyError(
        f"{store} needs the {package!r} package: pip install 'pyramid_sessionstore[{extra}]'"
    )
