"""The demo's views: log in, count, look inside the session, list and end sessions, log out.

``main`` maps routes to these functions. Every view that changes something
answers a POST (checked for the CSRF token by Pyramid, see ``main``) with a
redirect, so reloading a page never repeats an action; what happened is told
on the next page by a flash message, which is shown once because reading it
removes it from the session.
"""

from __future__ import annotations

from pyramid.csrf import new_csrf_token
from pyramid.exceptions import BadCSRFToken
from pyramid.httpexceptions import HTTPSeeOther
from pyramid.request import Request
from pyramid.response import Response

from pyramid_sessionstore import end_session
from pyramid_sessionstore import invalidate_user_sessions
from pyramid_sessionstore import list_user_sessions

from . import pages

#: The idle timeout of a session whose user ticked "remember me": 30 days.
REMEMBER_ME = 30 * 24 * 60 * 60


def _home(request: Request) -> HTTPSeeOther:
    return HTTPSeeOther(request.route_url("home"))


def home(request: Request) -> Response:
    messages = request.session.pop_flash()  # popped: each message is shown once
    return pages.home(request, messages, counter=request.session.get("counter", 0))


def login_form(request: Request) -> Response:
    return pages.login(request)


def login(request: Request) -> Response:
    username = request.POST.get("username", "").strip()
    if not 1 <= len(username) <= 64:
        return pages.login(request, username, error="Please give a username of 1 to 64 characters.")
    session = request.session
    # A new id on login: an id someone planted in this browser before the
    # login (session fixation) now names nothing. The data is kept.
    session.regenerate_id()
    # Record the owner, so invalidate_user_sessions can find this session.
    session.bind_user(username)
    # "Remember me": this session's own idle timeout; None means the default
    # (session.timeout). It is stored with the session.
    session.set_timeout(REMEMBER_ME if request.POST.get("remember") else None)
    # A fresh CSRF token for the logged-in session.
    new_csrf_token(request)
    session.flash(f"Welcome, {username}.")
    return _home(request)


def count(request: Request) -> Response:
    request.session["counter"] = request.session.get("counter", 0) + 1
    return _home(request)


def session_contents(request: Request) -> Response:
    return pages.session_contents(request)


def logout(request: Request) -> Response:
    # The record is deleted and the cookie expired. The flash below starts a
    # new, anonymous session under a new id.
    request.session.invalidate()
    request.session.flash("You are logged out.")
    return _home(request)


def logout_everywhere(request: Request) -> Response:
    userid = request.session.userid
    if userid is None:
        request.session.flash("You are not logged in.")
        return _home(request)
    # Ends every session bound to this user, in every browser, this one
    # included, and returns how many there were.
    ended = invalidate_user_sessions(request, userid)
    plural = "" if ended == 1 else "s"
    request.session.flash(f"Logged out everywhere: {ended} session{plural} ended.")
    return _home(request)


def active_sessions(request: Request) -> Response:
    messages = request.session.pop_flash()
    userid = request.session.userid
    # One read of the user's index, then one read per session (none of them
    # refreshed); sessions found ended are dropped from the index on the way.
    sessions = None if userid is None else list_user_sessions(request, userid)
    return pages.active_sessions(request, messages, sessions)


def _sessions(request: Request) -> HTTPSeeOther:
    return HTTPSeeOther(request.route_url("sessions"))


def end_one(request: Request) -> Response:
    userid = request.session.userid
    if userid is None:
        request.session.flash("You are not logged in.")
        return _home(request)
    # The handle comes from the listing. One of another user's sessions, a
    # made-up one or one that already ended gives False and ends nothing.
    ended = end_session(request, userid, request.POST.get("handle", ""))
    if request.session.userid is None:
        # It was this browser's own session: ended as by "Log out".
        request.session.flash("You are logged out.")
        return _home(request)
    if ended:
        request.session.flash("Session ended: that browser is logged out on its next page.")
    else:
        request.session.flash("That session had already ended.")
    return _sessions(request)


def end_others(request: Request) -> Response:
    userid = request.session.userid
    if userid is None:
        request.session.flash("You are not logged in.")
        return _home(request)
    # Every session of the user but this one ends.
    ended = invalidate_user_sessions(request, userid, except_current=True)
    plural = "" if ended == 1 else "s"
    request.session.flash(f"Ended {ended} other session{plural}.")
    return _sessions(request)


def bad_csrf(exc: BadCSRFToken, request: Request) -> Response:
    return pages.bad_csrf(request)
