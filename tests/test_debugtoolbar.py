"""The debug-toolbar panel, rendered through the real pyramid_debugtoolbar.

Each test makes requests to an application that includes the toolbar and
the panel (``debugtoolbar.includes``), then opens the toolbar's page for
that request, as a developer's browser does, and reads the panel's section
of it.
"""

from __future__ import annotations

import contextlib
import html
import re
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pyramid.config import Configurator
from pyramid.exceptions import ConfigurationError
from pyramid.request import Request
from pyramid.response import Response
from webtest import TestApp
from webtest import TestResponse

from pyramid_sessionstore import SessionFactory
from pyramid_sessionstore.debugtoolbar import timing
from pyramid_sessionstore.debugtoolbar.report import masked_settings
from pyramid_sessionstore.stores import CookieStore
from pyramid_sessionstore.stores import MemoryStore
from pyramid_sessionstore.stores import SQLiteStore
from pyramid_sessionstore.stores.base import Store
from pyramid_sessionstore.stores.base import SupportsExpiry
from pyramid_sessionstore.stores.base import SupportsPeek
from pyramid_sessionstore.stores.base import SupportsScan
from servers import free_port

SECRET = "toolbar-tests-" + "Qm4vT9xZ" * 6
DEMO = Path(__file__).parent.parent / "demo"
LOCAL = {"REMOTE_ADDR": "127.0.0.1"}  # the toolbar watches only its hosts


def _page(text: str) -> Response:
    # The toolbar puts its button (and the link to this request's page)
    # before </body> of HTML responses.
    return Response(f"<html><body>{html.escape(text)}</body></html>")


def _views(app_holder: dict[str, Any]) -> Iterator[tuple[str, str, Any]]:
    def nosession(request: Request) -> Response:
        return _page("no session")

    def write(request: Request) -> Response:
        request.session[request.matchdict["key"]] = request.matchdict["value"]
        return _page("written")

    def read(request: Request) -> Response:
        return _page(repr(request.session.get("a")))

    def regenerate(request: Request) -> Response:
        request.session.regenerate_id()
        request.session["regenerated"] = True
        return _page("regenerated")

    def login(request: Request) -> Response:
        request.session.bind_user(request.matchdict["user"])
        return _page("logged in")

    def invalidate(request: Request) -> Response:
        request.session.invalidate()
        return _page("invalidated")

    def race(request: Request) -> Response:
        # Read the session, then let another request of the same session
        # write first: this request's save loses its compare-and-set and
        # merges its change on top of the other's.
        request.session.get("a")
        other = Request.blank("/write/other/first", headers={"Cookie": request.headers["Cookie"]})
        assert other.get_response(app_holder["app"]).status_int == 200
        request.session["b"] = "mine"
        return _page("raced")

    yield "nosession", "/nosession", nosession
    yield "write", "/write/{key}/{value}", write
    yield "read", "/read", read
    yield "regenerate", "/regenerate", regenerate
    yield "login", "/login/{user}", login
    yield "invalidate", "/invalidate", invalidate
    yield "race", "/race", race


def make_app(settings: dict[str, str]) -> Any:
    holder: dict[str, Any] = {}
    with Configurator(
        settings={
            "debugtoolbar.includes": "pyramid_sessionstore.debugtoolbar",
            "session.secret": SECRET,
            **settings,
        }
    ) as config:
        config.include("pyramid_debugtoolbar")
        config.include("pyramid_sessionstore")
        for name, pattern, view in _views(holder):
            config.add_route(name, pattern)
            config.add_view(view, route_name=name)
        holder["app"] = config.make_wsgi_app()
    return holder["app"]


def app_in_code(factory: SessionFactory, pattern: str, view: Any) -> TestApp:
    """Return a browser on an app whose factory is made in code, with one view."""
    with Configurator(
        settings={"debugtoolbar.includes": "pyramid_sessionstore.debugtoolbar"}
    ) as config:
        config.include("pyramid_debugtoolbar")
        config.set_session_factory(factory)
        config.add_route("view", pattern)
        config.add_view(view, route_name="view")
        return TestApp(config.make_wsgi_app(), extra_environ=LOCAL)


@pytest.fixture(params=["memory", "sqlite"])
def store_settings(request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, str]:
    if request.param == "memory":
        return {"session.store": "memory"}
    return {"session.store": "sqlite", "session.sqlite.path": str(tmp_path / "s.sqlite")}


@pytest.fixture
def browser(store_settings: dict[str, str]) -> TestApp:
    return TestApp(make_app(store_settings), extra_environ=LOCAL)


def panel(browser: TestApp, response: TestResponse) -> str:
    """Open the toolbar's page of the request that made *response*; return the panel's HTML."""
    return panel_of(browser.get(toolbar_url(response.text), status=200).text)


def toolbar_url(page: str) -> str:
    """Return the link to the toolbar's page that the toolbar put in *page*."""
    match = re.search(r'href="([^"]+)"\s+target="pDebugToolbar"', page)
    assert match is not None, "the toolbar did not watch this request"
    return match.group(1)


def panel_of(page: str) -> str:
    """Return the panel's section of a toolbar *page*, after its tab's badge."""
    section = page[page.index('<div id="sessionstore-panel">') :]
    section = section[: section.index("<!-- /sessionstore-panel -->")]
    tab = re.search(r'id="pDebugPanel-sessionstore">.*?</li>', page, re.S)
    assert tab is not None, "the panel has no tab"
    badge = re.search(r'class="badge[^"]*">([^<]*)<', tab.group(0))
    return f"<p>tab: {badge.group(1) if badge else ''}</p>{section}"


def text(fragment: str) -> str:
    """Return *fragment* without tags and with single spaces, for readable assertions."""
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", fragment)).split())


def row(section: str, key: str) -> str:
    """Return the text of the data table's row of *key*."""
    for found in re.findall(r"<tr class=\"sessionstore-[a-z]+\">.*?</tr>", section, re.S):
        if f"<code>{key}</code>" in found:
            return text(found)
    raise AssertionError(f"no row for {key!r} in {text(section)}")


def session_cookie(browser: TestApp) -> str:
    return str(browser.cookies["session"])


def test_request_that_never_touches_the_session_shows_not_touched(browser: TestApp) -> None:
    shown = text(panel(browser, browser.get("/nosession")))
    assert "tab: not touched" in shown
    assert "Not touched: the view never read request.session" in shown
    assert "0 round trips" in shown


def test_first_write_creates_the_session_and_sets_the_cookie(
    browser: TestApp, store_settings: dict[str, str]
) -> None:
    section = panel(browser, browser.get("/write/a/1"))
    shown = text(section)
    store_class = {"memory": "MemoryStore", "sqlite": "SQLiteStore"}[
        store_settings["session.store"]
    ]
    assert f"Store {store_class}(" in shown
    assert "touched yes" in shown
    assert "loaded no: a new session" in shown
    assert row(section, "a") == "added a '1'"
    assert "written : created" in shown
    assert "cookie set : a new session was stored" in shown
    assert "Set-Cookie: session=*** (value hidden); Path=/; HttpOnly; SameSite=Lax" in shown
    # Creation is one conditional write, made when the response goes out.
    assert "1 round trip," in shown
    assert "view: 0," in shown and "response: 1," in shown
    assert re.search(r"response save [0-9a-f]{12} ", shown)
    assert "session.secret ***" in shown
    assert "secret *** (1 secret; the newest signs)" in shown
    assert SECRET not in section
    cookie = session_cookie(browser)
    assert cookie not in section and cookie.split(".")[0] not in section


def test_update_shows_data_before_and_after_with_the_changed_key_marked(
    browser: TestApp,
) -> None:
    browser.get("/write/a/1")
    browser.get("/write/keep/same")
    section = panel(browser, browser.get("/write/a/2"))
    shown = text(section)
    assert "loaded yes: the cookie named a stored session" in shown
    assert row(section, "a") == "changed a '1' '2'"
    assert row(section, "keep") == "keep 'same' 'same'"
    assert "written : updated" in shown
    assert "tab: updated" in shown
    assert "cookie not set : same id" in shown
    # One load while the view ran, one compare-and-set at the response.
    assert "2 round trips," in shown
    assert "view: 1," in shown and "response: 1," in shown
    assert re.search(r"view load [0-9a-f]{12} .*response save [0-9a-f]{12} ", shown)
    assert session_cookie(browser) not in section


def test_read_only_request_is_one_round_trip_and_unchanged(browser: TestApp) -> None:
    browser.get("/write/a/1")
    section = panel(browser, browser.get("/read"))
    shown = text(section)
    assert row(section, "a") == "a '1' '1'"
    assert "unchanged : unchanged" in shown
    assert "cookie not set : nothing changed" in shown
    assert "1 round trip," in shown and "view: 1," in shown and "response: 0," in shown
    assert "tab: unchanged" in shown  # the badge on the toolbar's tab


def test_regenerate_shows_the_new_id_and_the_cookie_set(browser: TestApp) -> None:
    browser.get("/write/a/1")
    old_cookie = session_cookie(browser)
    section = panel(browser, browser.get("/regenerate"))
    shown = text(section)
    assert "id regenerated" in shown
    assert row(section, "regenerated") == "added regenerated True"
    assert "written : moved to a new id" in shown
    assert "cookie set : the session has a new id" in shown
    assert "tab: new id" in shown
    assert old_cookie not in section and session_cookie(browser) not in section


def test_binding_a_user_shows_the_user(browser: TestApp) -> None:
    browser.get("/write/a/1")
    shown = text(panel(browser, browser.get("/login/alice")))
    assert "user 'alice' bound during this request" in shown
    assert "id regenerated" in shown
    # The user's index is kept in the same store: its calls are counted too.
    assert "written : moved to a new id" in shown
    shown = text(panel(browser, browser.get("/read")))
    assert "user 'alice' own timeout" in shown  # bound earlier, not in this request


def test_invalidate_shows_the_data_removed_and_the_cookie_expired(browser: TestApp) -> None:
    browser.get("/write/a/1")
    section = panel(browser, browser.get("/invalidate"))
    shown = text(section)
    assert "invalidated yes (1 record ended)" in shown
    assert row(section, "a") == "removed a '1'"
    assert "deleted : deleted" in shown
    assert "cookie expired : the session ended" in shown
    assert "Set-Cookie: session=(empty); Max-Age=0" in shown
    assert re.search(r"response delete [0-9a-f]{12} ", shown)


def test_lost_race_shows_conflict_merged(browser: TestApp) -> None:
    browser.get("/write/a/1")
    section = panel(browser, browser.get("/race"))
    shown = text(section)
    assert "conflict-merged : updated" in shown
    assert "after 2 compare-and-set attempts" in shown
    assert row(section, "b") == "added b 'mine'"
    assert row(section, "other") == "added other 'first'"  # the other request's key, kept
    assert "tab: merged" in shown
    # load; (the other request: load, save); save lost, reload, save won.
    assert re.search(r"response save .* response load .* response save ", shown)


def test_panel_renders_for_a_factory_made_in_code(tmp_path: Path) -> None:
    def write(request: Request) -> Response:
        request.session["a"] = 1
        return _page("ok")

    store = SQLiteStore(path=tmp_path / "s.sqlite")
    app = app_in_code(SessionFactory(SECRET, store=store), "/write/{key}/{value}", write)
    shown = text(panel(app, app.get("/write/a/1")))
    assert "written : created" in shown and "1 round trip," in shown
    assert "Settings" not in shown  # no session.* settings to show


def test_demo_served_with_toolbar_ini_shows_the_panel(tmp_path: Path) -> None:
    # As docs/debugtoolbar.md says to run it: pserve demo/toolbar.ini (here
    # on a free port, its store file in tmp_path/var).
    port = free_port()
    (tmp_path / "development.ini").write_text(
        (DEMO / "development.ini").read_text().replace("127.0.0.1:6543", f"127.0.0.1:{port}")
    )
    (tmp_path / "toolbar.ini").write_text((DEMO / "toolbar.ini").read_text())
    pserve = Path(sys.executable).with_name("pserve")
    server = subprocess.Popen(
        [str(pserve), str(tmp_path / "toolbar.ini")], stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
                break
            assert time.monotonic() < deadline and server.poll() is None, "pserve did not start"
            time.sleep(0.1)
        browser = urllib.request.build_opener(urllib.request.HTTPCookieProcessor())
        page = browser.open(f"http://127.0.0.1:{port}/login").read().decode()
        section = panel_of(browser.open(toolbar_url(page)).read().decode())
    finally:
        server.terminate()
        server.wait(10)
    shown = text(section)
    assert "Store SQLiteStore(path=" in shown and "var/sessions.sqlite" in shown
    # The login form's CSRF token makes a new session.
    assert row(section, "_csrft_") == "added _csrft_ *** (CSRF token)"
    assert "written : created" in shown and "cookie set" in shown
    assert "session.store sqlite" in shown and "session.secret ***" in shown


def test_cookie_store_and_a_failing_view_are_shown() -> None:
    def boom(request: Request) -> Response:
        request.session["x"] = 1
        raise RuntimeError("the view failed")

    app = app_in_code(SessionFactory(SECRET, store=CookieStore()), "/boom", boom)
    app.get("/boom", status=500)  # the toolbar's traceback page
    section = panel_of(app.get("/_debug_toolbar/").text)  # the last request's page
    shown = text(section)
    assert "Store CookieStore(" in shown
    assert "Not recorded: the cookie store keeps the session in the cookie" in shown
    assert row(section, "x") == "added x 1"
    assert "written : created" in shown  # set_on_exception=True
    assert "cookie set : the cookie store keeps the session in the cookie itself" in shown
    assert session_cookie(app) not in section


def test_including_the_panel_in_the_application_says_where_it_belongs() -> None:
    with Configurator() as config, pytest.raises(ConfigurationError, match="debugtoolbar.includes"):
        config.include("pyramid_sessionstore.debugtoolbar")


# -- the timing proxy and the masking, without the toolbar ----------------------


@pytest.mark.parametrize("kind", ["memory", "sqlite"])
def test_timed_store_has_exactly_the_abilities_of_the_store_it_wraps(
    kind: str, tmp_path: Path
) -> None:
    inner: Store = MemoryStore() if kind == "memory" else SQLiteStore(path=tmp_path / "s.sqlite")
    proxy = timing.timed(inner)
    assert isinstance(proxy, Store)
    for ability in (SupportsPeek, SupportsExpiry, SupportsScan):
        assert isinstance(proxy, ability) == isinstance(inner, ability), ability
    assert repr(proxy) == repr(inner)


def test_timed_store_records_only_inside_a_recording() -> None:
    proxy = timing.timed(MemoryStore())
    proxy.save("ab" * 16, b"x", 10, None)  # nobody recording: passes through
    recorder, token = timing.recording()
    try:
        assert proxy.load("ab" * 16, 10) is not None
        proxy.delete("cd" * 16)
    finally:
        timing.stop(token)
    proxy.load("ab" * 16, 10)
    assert [(c.method, c.key, c.phase) for c in recorder.calls] == [
        ("load", "ab" * 6, "view"),
        ("delete", "cd" * 6, "view"),
    ]
    assert all(call.seconds >= 0 for call in recorder.calls)


def test_masked_settings_hide_secrets_and_url_passwords() -> None:
    shown = dict(
        masked_settings(
            {
                "session.secret": "s3cr3t",
                "session.secrets": "a\nb",
                "session.redis.url": "redis://app:hunter2@127.0.0.1:6379/0",
                "session.redis.password": "hunter2",
                "session.timeout": "1200",
                "other.secret": "not ours",
            }
        )
    )
    assert shown == {
        "session.secret": "***",
        "session.secrets": "***",
        "session.redis.url": "redis://app:***@127.0.0.1:6379/0",
        "session.redis.password": "***",
        "session.timeout": "1200",
    }
