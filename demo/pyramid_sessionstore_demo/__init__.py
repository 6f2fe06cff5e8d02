"""A small Pyramid app that shows pyramid_sessionstore at work.

Log in (the session gets a new id and is bound to the user), tick "remember
me" (the session gets its own 30-day idle timeout), count, look inside the
session, see where you are logged in (browser, address, created, last active)
and end any one of those sessions or all the others, log out, or log out
everywhere (every session of the user ends, in every browser, and each is
told so on its next page). Everything is
server-rendered HTML; there is no JavaScript.

Where things are: routes and views are wired here, ``views.py`` does what each
page does, ``pages.py`` writes the HTML (its ``NAV`` list is the navigation
bar), and ``ended.py`` keeps the small cookie that tells "your session ended"
from "you never logged in".

The whole session set-up is ``config.include("pyramid_sessionstore")``: the
``session.*`` settings of ``development.ini`` choose the store (SQLite there)
and the cookie. The demo is documentation, not a template for an
authentication system: it asks for a username and no password.
"""

from __future__ import annotations

from typing import Any

from pyramid.config import Configurator
from pyramid.csrf import SessionCSRFStoragePolicy
from pyramid.events import NewResponse
from pyramid.exceptions import BadCSRFToken

from . import ended
from . import views

__all__ = ["main"]


def main(global_config: dict[str, Any], **settings: Any) -> Any:
    """Return the demo's WSGI app; ``use = egg:pyramid_sessionstore_demo`` calls this.

    :param global_config: the ``[DEFAULT]`` section of the ``.ini`` file (unused).
    :param settings: the app's settings; the ``session.*`` ones configure the sessions.
    """
    with Configurator(settings=settings) as config:
        # Reads session.store, session.secret, session.timeout, ... and installs
        # the session factory. A wrong setting fails here, at start-up.
        config.include("pyramid_sessionstore")

        # Every POST must carry the session's CSRF token (a form field named
        # csrf_token, or an X-CSRF-Token header); a missing or wrong token is a
        # 400. The token lives in the session, under the key "_csrft_".
        config.set_csrf_storage_policy(SessionCSRFStoragePolicy())
        config.set_default_csrf_options(require_csrf=True)

        config.add_route("home", "/")
        config.add_view(views.home, route_name="home", request_method="GET")
        config.add_route("login", "/login")
        config.add_view(views.login_form, route_name="login", request_method="GET")
        config.add_view(views.login, route_name="login", request_method="POST")
        config.add_route("count", "/count")
        config.add_view(views.count, route_name="count", request_method="POST")
        config.add_route("session", "/session")
        config.add_view(views.session_contents, route_name="session", request_method="GET")
        config.add_route("logout", "/logout")
        config.add_view(views.logout, route_name="logout", request_method="POST")
        config.add_route("logout_everywhere", "/logout-everywhere")
        config.add_view(
            views.logout_everywhere, route_name="logout_everywhere", request_method="POST"
        )
        config.add_route("sessions", "/sessions")
        config.add_view(views.active_sessions, route_name="sessions", request_method="GET")
        config.add_route("end_session", "/sessions/end")
        config.add_view(views.end_one, route_name="end_session", request_method="POST")
        config.add_route("end_others", "/sessions/end-others")
        config.add_view(views.end_others, route_name="end_others", request_method="POST")
        # A POST without the right token: a friendly page instead of a bare 400.
        config.add_view(views.bad_csrf, context=BadCSRFToken)
        # A small cookie of the demo's own, so a browser whose session ended
        # elsewhere (or expired) is told so.
        config.add_subscriber(ended.track_login, NewResponse)
    return config.make_wsgi_app()
