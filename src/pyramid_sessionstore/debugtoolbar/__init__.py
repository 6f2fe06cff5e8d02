"""A pyramid_debugtoolbar panel that shows what each request did with its session.

Include it in the toolbar, not in the application: the toolbar is a Pyramid
application of its own, which includes the modules its
``debugtoolbar.includes`` setting names::

    pyramid.includes = pyramid_debugtoolbar
    debugtoolbar.includes = pyramid_sessionstore.debugtoolbar

The panel ("Session store") shows, for each request: the store and the
factory's options and ``session.*`` settings (secrets masked), whether the
session was touched and loaded, the store's round trips and the time spent
in them, the data before and after the view with the changed keys marked,
what was decided at the end (written, unchanged, deleted, merged after a
conflict; the cookie set, expired or not, and why) and the bound user.

To count round trips, it puts a timing proxy in front of the factory's store
(:mod:`.timing`) when the application is made. It is a development tool:
the toolbar itself must never run in production. Nothing in the library
imports this package, so pyramid_debugtoolbar is needed only to use it
(``pip install 'pyramid_sessionstore[debugtoolbar]'``).
"""

from __future__ import annotations

from typing import Any

from pyramid.exceptions import ConfigurationError
from pyramid.interfaces import ISessionFactory

from . import timing
from .panel import SessionStorePanel

__all__ = ["SessionStorePanel", "includeme"]


def includeme(config: Any) -> None:
    """Add the panel to the debug toolbar (``debugtoolbar.includes``).

    Uses the toolbar's directives ``add_debugtoolbar_panel`` and
    ``inject_parent_action`` (pyramid_debugtoolbar's "Adding custom
    panels"); the second installs the store's timing proxy in the
    application once it is made.

    :raises ConfigurationError: when included in the application instead of
        the toolbar.
    """
    if not hasattr(config, "add_debugtoolbar_panel"):
        raise ConfigurationError(
            "pyramid_sessionstore.debugtoolbar is a panel of the debug toolbar: name it in the"
            " setting debugtoolbar.includes (with pyramid_debugtoolbar in pyramid.includes),"
            " not in config.include()"
        )
    config.add_debugtoolbar_panel(SessionStorePanel)
    config.inject_parent_action(_time_store_calls)


def _time_store_calls(config: Any) -> None:
    """Put the timing proxy in front of the application's session store (toolbar enabled)."""
    if not config.registry.settings.get("debugtoolbar.enabled", True):
        return
    factory = config.registry.queryUtility(ISessionFactory)
    if factory is not None:
        timing.instrument(factory)
