"""Faults a fresh reviewer found by attacking the issue-10 fixes (input, records, psessions, demo).

Each test was a confirmed bug, found by trying to break the library, and now
checks its fix; one known limit stays marked ``xfail`` with its reason.
Stores are real; the few timing checks use margins of ten times or more.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from pyramid.config import Configurator
from pyramid.request import Request
from pyramid.response import Response
from webtest import TestApp

import stores
from pyramid_sessionstore import SessionFactory
from pyramid_sessionstore import invalidate_user_sessions
from pyramid_sessionstore import list_user_sessions
from pyramid_sessionstore import users
from pyramid_sessionstore.serializers import CorruptDataError
from pyramid_sessionstore.serializers import JSONSerializer
from pyramid_sessionstore.stores import CookieStore
from pyramid_sessionstore.stores import MemoryStore
from test_browser import artifacts  # noqa: F401 - a fixture demo_url uses
from test_browser import browser  # noqa: F401 - the system Chromium, as test_browser uses
from test_browser import demo_url  # noqa: F401 - the demo as make demo serves it

SECRET = "breakit-" + "Zq3x9Lk2Vb7Nw4Rt8Yp1Hs6Jd5Gf0Ae3Cm9Xu2Ko7Iw4Ql8Ez1"
TESTS_DIR = Path(__file__).parent
PSESSIONS = shutil.which("psessions", path=os.path.dirname(sys.executable))
View = Callable[[Request], Any]


def _app(views: dict[str, View], **options: Any) -> tuple[TestApp, SessionFactory]:
    """Return a client of an app whose route ``/<name>`` runs ``views[name]``, and its factory."""
    factory = SessionFactory(secret=SECRET, **{"store": MemoryStore(), **options})

    def view(request: Request) -> Response:
        request.response.text = repr(views[request.matchdict["name"]](request))
        return request.response

    with Configurator() as config:
        config.set_session_factory(factory)
        config.add_route("any", "/{name}")
        config.add_view(view, route_name="any")
    return TestApp(config.make_wsgi_app()), factory


def _refused(call: Callable[[], object]) -> str:
    """Run *call*; return "refused" if it raised TypeError or ValueError, else "accepted"."""
    try:
        call()
    except (TypeError, ValueError):
        return "refused"
    return "accepted"


# -- item 2: what the session accepts must be saved -----------------------------


@pytest.mark.parametrize("serializer", ["json", "msgpack"])
@pytest.mark.parametrize("how", ["setitem", "flash queue"])
def test_a_key_utf8_cannot_encode_is_refused_at_assignment(serializer: str, how: str) -> None:
    def assign(request: Request) -> str:
        if how == "setitem":
            return _refused(lambda: request.session.__setitem__("\ud800", 1))
        return _refused(lambda: request.session.flash("hi", queue="\udc00"))

    client, _ = _app({"assign": assign}, serializer=serializer)
    # Today the assignment is accepted and dumps fails after the view returned.
    assert client.get("/assign").text == "'refused'"


@pytest.mark.parametrize(
    "userid", ["\ud800", "x" * 70_000, 10**5000], ids=["surrogate", "70k chars", "5000 digits"]
)
def test_a_userid_that_cannot_be_stored_is_refused_by_bind_user(userid: Any) -> None:
    def login(request: Request) -> str:
        request.session["x"] = 1
        return _refused(lambda: request.session.bind_user(userid))

    client, _ = _app({"login": login})
    # Today: UnicodeEncodeError, struct.error or ValueError after the view returned.
    assert client.get("/login").text == "'refused'"


@pytest.mark.parametrize("seconds", [2**31, 10**10])
def test_a_timeout_the_record_cannot_hold_is_refused_by_set_timeout(seconds: int) -> None:
    def remember(request: Request) -> str:
        request.session["x"] = 1
        return _refused(lambda: request.session.set_timeout(seconds))

    client, _ = _app({"remember": remember})
    # Today: struct.error ('i' format) after the view returned.
    assert client.get("/remember").text == "'refused'"


@pytest.mark.parametrize("inner", [b'{ " t": [1]}', b'{"\\u0020t": [1]}', b'{"\\u0020t": 1}'])
def test_what_json_loads_returns_dumps_again_at_the_depth_limit(inner: bytes) -> None:
    serializer = JSONSerializer()
    for depth in range(194, 199):
        data = b'{"a": ' + b"[" * depth + inner + b"]" * depth + b"}"
        try:
            value = serializer.loads(data)
        except CorruptDataError:
            continue
        serializer.dumps(value)  # today: SerializationError (nests deeper than 200)


def test_a_signaling_nan_decimal_does_not_break_a_merge() -> None:
    app: list[TestApp] = []

    def setup(request: Request) -> str:
        request.session["x"] = 1
        return _refused(lambda: request.session.__setitem__("d", Decimal("sNaN")))

    def other(request: Request) -> None:
        request.session["y"] = 2

    def racer(request: Request) -> None:
        request.session.get("x")  # loaded; another request of the session writes now
        app[0].get("/other", headers={"Cookie": request.headers["Cookie"]})
        request.session["x"] = 3

    client, _ = _app(
        {"setup": setup, "other": other, "racer": racer, "read": lambda r: dict(r.session)}
    )
    app.append(client)
    if client.get("/setup").text == "'refused'":
        return  # refusing sNaN at assignment is a fix too
    client.get("/racer")  # today: decimal.InvalidOperation after the view returned
    data = client.get("/read").text
    assert "'x': 3" in data and "'y': 2" in data


# -- item 3: corrupt records (the user index is one) ----------------------------

DEEP = b"[" * 100_000
BAD_KEY = json.dumps({"../../a b\n" + "k" * 300: {"b": 1}}).encode()


@pytest.mark.parametrize(
    ("kind", "blob"),
    [
        pytest.param("memory", DEEP, id="memory-deep"),
        pytest.param("file", DEEP, id="file-deep"),
        pytest.param("file", BAD_KEY, id="file-bad-key"),
        pytest.param("memcached", DEEP, id="memcached-deep", marks=pytest.mark.memcached),
        pytest.param("memcached", BAD_KEY, id="memcached-bad-key", marks=pytest.mark.memcached),
    ],
)
def test_a_corrupt_user_index_is_rebuilt_never_a_500(
    kind: str, blob: bytes, tmp_path: Path
) -> None:
    store = stores.build(kind, tmp_path)
    user = uuid.uuid4().hex

    def login(request: Request) -> None:
        request.session["x"] = 1
        request.session.bind_user(user)

    views: dict[str, View] = {
        "login": login,
        "read": lambda r: r.session.get("x"),
        "list": lambda r: len(list_user_sessions(r, user)),
        "logout_all": lambda r: invalidate_user_sessions(r, user),
    }
    try:
        client, factory = _app(views, store=store)
        client.get("/login")
        key = users.index_keys(factory.policy, user)[0]
        record = store.load(key, None)
        store.save(key, blob, None, record.version)
        for path in ("/read", "/list", "/logout_all", "/login", "/list"):
            assert client.get(path).status_int == 200, path
    finally:
        stores.drop(kind, store)


# -- item 7: a wrong value fails at start-up, not at every request ---------------


def test_a_max_age_whose_expires_cannot_be_written_is_refused_at_start_up() -> None:
    try:
        client, _ = _app({"set": lambda r: r.session.__setitem__("x", 1)}, max_age=10**12)
    except ValueError:
        return
    assert client.get("/set").status_int == 200  # today: ValueError (year out of range)


@pytest.mark.memcached
def test_memcached_keeps_a_record_with_a_20_year_ttl(tmp_path: Path) -> None:
    store = stores.build("memcached", tmp_path)
    key = uuid.uuid4().hex
    try:
        store.save(key, b"x", 20 * 365 * 86400, None)
        assert store.load(key, 20 * 365 * 86400) is not None  # today: None at once
    finally:
        stores.drop("memcached", store)


# -- item 8: the cookie store reads back what it writes ---------------------------


def test_a_cookie_store_cookie_is_read_back_whatever_max_size_allows() -> None:
    try:
        store = CookieStore(max_size=6000)
    except ValueError:
        return  # refusing what browsers cannot keep is a fix too
    blob = os.urandom(1800).hex()
    client, _ = _app(
        {"set": lambda r: r.session.__setitem__("b", blob), "read": lambda r: r.session.get("b")},
        store=store,
    )
    client.get("/set")
    assert blob in client.get("/read").text  # today: None (the 4.9 KB value is skipped)


# -- user index: the plain key mixes None, 42 and "42" ---------------------------


@pytest.mark.parametrize(("victim", "asked"), [("None", None), ("42", 42)])
def test_logout_everywhere_ends_only_that_users_sessions(victim: str, asked: Any) -> None:
    def login(request: Request) -> None:
        request.session["x"] = 1
        request.session.bind_user(victim)

    views: dict[str, View] = {
        "login": login,
        "read": lambda r: r.session.userid,
        # The README's logout_everywhere, run by anyone (None: not logged in).
        "logout_all": lambda r: invalidate_user_sessions(r, asked),
    }
    client, _ = _app(views)
    other = TestApp(client.app)
    client.get("/login")
    other.get("/logout_all")
    assert client.get("/read").text == repr(victim)  # today: None (logged out)


# -- item 6: psessions never prints a traceback -----------------------------------

INTERRUPT_ON_IMPORT = """
import os, signal, sys
class _CtrlC:
    def find_spec(self, name, path=None, target=None):
        if name == "pyramid.exceptions":  # Ctrl-C while psessions imports Pyramid
            sys.meta_path.remove(self)
            os.kill(os.getpid(), signal.SIGINT)
        return None
sys.meta_path.insert(0, _CtrlC())
"""


def _psessions(tmp_path: Path, *args: str, **run: Any) -> subprocess.CompletedProcess[str]:
    assert PSESSIONS is not None
    ini = tmp_path / "app.ini"
    ini.write_text(f"[app:main]\nuse = call:psessions_app:main\nsession.secret = {SECRET}\n")
    path = os.pathsep.join([str(tmp_path), str(TESTS_DIR)])
    return subprocess.run(
        [PSESSIONS, str(ini), *args],
        text=True,
        env={**os.environ, "PYTHONPATH": path},
        stdin=subprocess.DEVNULL,
        timeout=60,
        check=False,
        **run,
    )


@pytest.mark.xfail(
    strict=True,
    reason="known limit: Ctrl-C in the first ~0.4 s, while Python imports psessions for its"
    " console-script wrapper, is reported by the interpreter before psessions' code runs",
)
def test_psessions_interrupted_while_starting_prints_no_traceback(tmp_path: Path) -> None:
    (tmp_path / "sitecustomize.py").write_text(INTERRUPT_ON_IMPORT)
    result = _psessions(tmp_path, "stats", capture_output=True)
    assert "Traceback" not in result.stderr
    assert result.returncode == 128 + signal.SIGINT


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
def test_psessions_output_error_is_one_line(tmp_path: Path) -> None:
    with open("/dev/full", "w") as full:
        result = _psessions(tmp_path, "stats", stdout=full, stderr=subprocess.PIPE)
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()  # after the memory store's warning, one line
    assert lines[-1].startswith("psessions: cannot write the output") and len(lines) <= 2
    assert result.returncode == 1


# -- item 9 and item 1: the demo --------------------------------------------------


def _demo(tmp_path: Path) -> TestApp:
    from pyramid_sessionstore_demo import main

    settings = {"session.secret": SECRET, "session.store": "sqlite"}
    settings["session.sqlite.path"] = str(tmp_path / "demo.sqlite")
    return TestApp(main({}, **settings))


def test_the_demo_answers_a_hostile_cookie_header_in_linear_time(tmp_path: Path) -> None:
    demo = _demo(tmp_path)
    demo.get("/")
    started = time.perf_counter()
    demo.get("/", headers={"Cookie": "a" * 12 * 1024})  # today: about 2 s (32 KB: 15 s)
    assert time.perf_counter() - started < 0.5


def test_the_demo_does_not_scroll_sideways_at_375_px_with_a_long_username(
    browser: Any,  # noqa: F811 - the fixture imported from test_browser
    demo_url: str,  # noqa: F811
) -> None:
    context = browser.new_context(viewport={"width": 375, "height": 800})
    page = context.new_page()
    page.set_default_timeout(15_000)
    page.goto(f"{demo_url}/login")
    page.fill("input[name=username]", "W" * 64)  # the demo allows 64 characters
    page.click("#login button[type=submit]")
    page.wait_for_url(f"{demo_url}/")
    widths = {}
    for path in ("/", "/session", "/sessions"):
        page.goto(f"{demo_url}{path}")
        widths[path] = page.evaluate("document.documentElement.scrollWidth")
    context.close()
    assert max(widths.values()) <= 375, widths  # today: about 1150
