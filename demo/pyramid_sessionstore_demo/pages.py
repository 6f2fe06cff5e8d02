"""The demo's HTML, written with the standard library: no template engine, no JavaScript.

Every value that comes from a user or from the session goes through
:func:`html.escape`. Every form posts the session's CSRF token.
"""

from __future__ import annotations

import datetime
import time
from collections.abc import Sequence
from html import escape
from typing import Any

from pyramid.csrf import get_csrf_token
from pyramid.interfaces import ISessionFactory
from pyramid.request import Request
from pyramid.response import Response

from pyramid_sessionstore import SessionInfo

from .ended import session_ended

__all__ = [
    "ENDED",
    "NAV",
    "THIS_DEVICE",
    "active_sessions",
    "ago",
    "bad_csrf",
    "browser_name",
    "home",
    "login",
    "session_contents",
]

#: The navigation bar: (route name, label), in order.
NAV = [
    ("home", "Home"),
    ("session", "What is in my session?"),
    ("sessions", "Active sessions"),
]

#: Shown once to a browser whose logged-in session is gone (see :mod:`.ended`).
ENDED = "Your session ended (logged out elsewhere or expired)."

STYLE = """
body { font: 16px/1.5 system-ui, sans-serif; max-width: 44rem; margin: 2rem auto;
       padding: 0 1rem; color: #222; overflow-wrap: anywhere }
nav { display: flex; flex-wrap: wrap; gap: .25rem 1rem; border-bottom: 1px solid #ddd;
      padding-bottom: .5rem }
nav .who { margin-left: auto; color: #555 }
h1 { line-height: 1.2 }
.flash { background: #e8f4e8; border: 1px solid #9c9; border-radius: 4px; padding: .5rem 1rem }
.error { background: #fbeaea; border-color: #d99 }
.ended { background: #fdf3dc; border-color: #dbb45c }
form.inline { display: inline }
table { border-collapse: collapse; width: 100%; table-layout: fixed }
th:first-child { width: 32% }
th, td { text-align: left; vertical-align: top; border-bottom: 1px solid #eee;
         padding: .25rem .5rem; overflow-wrap: anywhere }
code { background: #f4f4f4; padding: 0 .2rem }
button { font: inherit; padding: .1rem .8rem }
small { color: #666 }
.this-device { background: #e8f0fb; border-radius: 4px; padding: 0 .3rem; white-space: nowrap }
/* Under 36rem (a phone) each session is a block of labelled lines, not a
   row of five narrow columns. */
@media (max-width: 36rem) {
  table.sessions thead { display: none }
  table.sessions tr, table.sessions td { display: block; border: 0 }
  table.sessions tr { border-bottom: 1px solid #ddd; padding: .25rem 0 }
  table.sessions td[data-label]::before { content: attr(data-label) ": "; font-weight: 600 }
}
"""


def _page(request: Request, title: str, body: str, status: int = 200) -> Response:
    userid = request.session.userid
    who = "not logged in" if userid is None else f"logged in as <b>{escape(str(userid))}</b>"
    links = "\n  ".join(f'<a href="{request.route_url(route)}">{label}</a>' for route, label in NAV)
    ended = ""
    if session_ended(request):
        ended = f'<p class="flash ended" id="ended">{ENDED}</p>\n'
    html = f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{escape(title)} · pyramid_sessionstore demo</title>
<style>{STYLE}</style>
</head>
<body>
<nav>
  {links}
  <span class="who">{who}</span>
</nav>
<h1>{escape(title)}</h1>
{ended}{body}
</body>
</html>
"""
    return Response(html, status=status, content_type="text/html", charset="utf-8")


def _post_button(
    request: Request, route: str, label: str, form_id: str, fields: dict[str, str] | None = None
) -> str:
    """Return a one-button form that POSTs *fields* to *route* with the CSRF token."""
    hidden = "".join(
        f'\n  <input type="hidden" name="{escape(name)}" value="{escape(value)}">'
        for name, value in (fields or {}).items()
    )
    return f"""<form class="inline" id="{escape(form_id)}" method="post"
 action="{request.route_url(route)}">
  <input type="hidden" name="csrf_token" value="{escape(get_csrf_token(request))}">{hidden}
  <button type="submit">{escape(label)}</button>
</form>"""


def home(request: Request, messages: list[Any], counter: int) -> Response:
    """Render the home page: flash messages, who is logged in, the counter."""
    flashes = "".join(f'<p class="flash">{escape(str(m))}</p>' for m in messages)
    userid = request.session.userid
    if userid is None:
        account = f"""<p>You are not logged in. <a href="{request.route_url("login")}">Log in</a>
with any username: there is no password in this demo.</p>"""
    else:
        account = f"""<p>Hello, <b>{escape(str(userid))}</b>.
{_post_button(request, "logout", "Log out", "logout")}
{_post_button(request, "logout_everywhere", "Log out everywhere", "logout_everywhere")}</p>
<p><small>Log in as the same user in a second browser (or a private window), then
press <i>Log out everywhere</i> in one of them: the other one is logged out
too, on its next click.</small></p>"""
    body = f"""{flashes}
{account}
<h2>Counter</h2>
<p>You pressed the button <b id="counter">{counter}</b> {"time" if counter == 1 else "times"}
in this session.
{_post_button(request, "count", "+1", "count")}</p>
<p><small>The count is kept in the session, on the server; the cookie holds
only a signed, random session id.</small></p>"""
    return _page(request, "Home", body)


def login(request: Request, username: str = "", error: str | None = None) -> Response:
    """Render the login form (again, with *error*, when the last try was refused)."""
    problem = "" if error is None else f'<p class="flash error">{escape(error)}</p>'
    body = f"""{problem}
<form id="login" method="post" action="{request.route_url("login")}">
  <input type="hidden" name="csrf_token" value="{escape(get_csrf_token(request))}">
  <p><label>Username <input name="username" value="{escape(username)}" maxlength="64"
     autofocus required></label></p>
  <p><label><input type="checkbox" name="remember" value="1"> Remember me for 30 days</label></p>
  <p><button type="submit">Log in</button></p>
</form>
<p><small>Logging in gives the session a new id (so an id planted before login is
worth nothing) and binds it to the username (so <i>log out everywhere</i> can
find it). "Remember me" gives this session its own idle timeout of 30
days instead of the default.</small></p>"""
    return _page(request, "Log in", body, status=200 if error is None else 400)


def _when(timestamp: float) -> str:
    moment = datetime.datetime.fromtimestamp(timestamp, datetime.timezone.utc)
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC")


def session_contents(request: Request) -> Response:
    """Render what the session holds, and what the library keeps beside it."""
    session = request.session
    factory = request.registry.queryUtility(ISessionFactory)
    rows = "".join(
        f"<tr><td><code>{escape(key)}</code></td><td><code>{escape(repr(value))}</code></td></tr>"
        for key, value in sorted(session.items())
    )
    if not rows:
        rows = '<tr><td colspan="2"><i>empty</i></td></tr>'
    if session.timeout is not None:
        timeout = f"{session.timeout} s (its own, from set_timeout)"
    elif factory.timeout is not None:
        timeout = f"{factory.timeout} s (the default, session.timeout)"
    else:
        timeout = "none: the session never expires for idleness"
    body = f"""<table>
<tr><th>key</th><th>value</th></tr>
{rows}
</table>
<p><small><code>_csrft_</code> is the CSRF token that every form posts back;
keys starting with <code>_f_</code> are flash-message queues.</small></p>
<h2>Beside the data</h2>
<table>
<tr><th>created</th><td>{_when(session.created)}</td></tr>
<tr><th>new (created in this request)</th><td>{session.new}</td></tr>
<tr><th>userid (bind_user)</th><td>{escape(repr(session.userid))}</td></tr>
<tr><th>idle timeout</th><td>{escape(timeout)}</td></tr>
<tr><th>store</th><td><code>{escape(repr(factory.store))}</code></td></tr>
<tr><th>cookie</th><td><code>{escape(factory.cookie_name)}</code>
 (HttpOnly: the id never shows on a page)</td></tr>
</table>"""
    return _page(request, "What is in my session?", body)


#: How the listing marks the session of the browser looking at it.
THIS_DEVICE = "this device"

# (token in the User-Agent, name), first match wins: Edge and Opera also say
# "Chrome", Chrome also says "Safari", and Android also says "Linux".
_BROWSERS = [
    ("Edg/", "Edge"),
    ("OPR/", "Opera"),
    ("Firefox/", "Firefox"),
    ("Chrome/", "Chrome"),
    ("Safari/", "Safari"),
]
_SYSTEMS = [
    ("Android", "Android"),
    ("iPhone", "iOS"),
    ("iPad", "iOS"),
    ("Windows", "Windows"),
    ("Mac OS X", "macOS"),
    ("CrOS", "ChromeOS"),
    ("Linux", "Linux"),
]


def browser_name(user_agent: str | None) -> str:
    """Return a short name such as "Firefox on Linux" for a ``User-Agent`` string.

    A rough guess for people to recognise their devices, never for decisions:
    any client can send any user agent.
    """
    if not user_agent:
        return "Unknown browser"
    browser = next((name for token, name in _BROWSERS if token in user_agent), "Unknown browser")
    system = next((name for token, name in _SYSTEMS if token in user_agent), None)
    return browser if system is None else f"{browser} on {system}"


def ago(timestamp: float, now: float) -> str:
    """Return how long before *now* the Unix time *timestamp* was, in words."""
    seconds = int(now - timestamp)
    for unit, length in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= length:
            count = seconds // length
            return f"{count} {unit}{'' if count == 1 else 's'} ago"
    return "just now"


def _moment(timestamp: float, now: float) -> str:
    """Return *timestamp* as "5 minutes ago" with the exact UTC time beside it."""
    iso = datetime.datetime.fromtimestamp(timestamp, datetime.timezone.utc).isoformat()
    return (
        f'<time datetime="{iso}">{ago(timestamp, now)}</time> <small>({_when(timestamp)})</small>'
    )


def _session_row(request: Request, info: SessionInfo, now: float) -> str:
    if info.current:
        device = f' <span class="this-device">{THIS_DEVICE}</span>'
        end = _post_button(
            request, "end_session", "Log out", f"end-{info.handle}", {"handle": info.handle}
        )
    else:
        device = ""
        end = _post_button(
            request, "end_session", "End", f"end-{info.handle}", {"handle": info.handle}
        )
    agent = "not recorded" if info.user_agent is None else escape(info.user_agent)
    ip = "not recorded" if info.ip is None else escape(info.ip)
    return f"""<tr class="{"current" if info.current else "other"}">
  <td data-label="Browser"><b>{escape(browser_name(info.user_agent))}</b>{device}<br>
    <small class="user-agent">{agent}</small></td>
  <td data-label="IP address" class="ip">{ip}</td>
  <td data-label="Created">{_moment(info.created, now)}</td>
  <td data-label="Last active">{_moment(info.last_active, now)}</td>
  <td>{end}</td>
</tr>"""


def active_sessions(
    request: Request, messages: list[Any], sessions: Sequence[SessionInfo] | None
) -> Response:
    """Render the user's active sessions (*sessions* is None when nobody is logged in)."""
    flashes = "".join(f'<p class="flash">{escape(str(m))}</p>' for m in messages)
    if sessions is None:
        body = f"""{flashes}
<p>You are not logged in. <a href="{request.route_url("login")}">Log in</a> to see
the browsers and devices where you are logged in.</p>"""
        return _page(request, "Active sessions", body)
    now = time.time()
    rows = "\n".join(_session_row(request, info, now) for info in sessions)
    others = sum(not info.current for info in sessions)
    end_others = ""
    if others:
        end_others = f"<p>{_post_button(request, 'end_others', 'End all others', 'end_others')}</p>"
    plural = "" if len(sessions) == 1 else "s"
    body = f"""{flashes}
<p>You have <b id="session-count">{len(sessions)}</b> active session{plural}, most
recently active first. <i>End</i> logs that browser out; its next page says so.</p>
<table class="sessions">
<thead><tr><th>Browser</th><th>IP address</th><th>Created</th><th>Last active</th>
<th></th></tr></thead>
<tbody>
{rows}
</tbody>
</table>
{end_others}
<p><small>Each session is named on this page by an opaque handle, which is not its
id: it cannot be used as a cookie, and it means nothing for another user. The
browser is recorded when a session logs in; the address only when
<code>session.record_client</code> asks for it, as the demo's
<code>development.ini</code> does.</small></p>"""
    return _page(request, "Active sessions", body)


def bad_csrf(request: Request) -> Response:
    """Render the answer to a POST without a valid CSRF token (status 400)."""
    body = f"""<p class="flash error">This form was refused: it did not carry this
session's CSRF token. Perhaps the session ended (logged out elsewhere, or idle
too long) after the page was loaded.</p>
<p><a href="{request.route_url("home")}">Back to the home page</a></p>"""
    return _page(request, "Form refused", body, status=400)
