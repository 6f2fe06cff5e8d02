"""``psessions``, end to end: sessions made by a real app, inspected by the console script.

The app (``psessions_app.main``) and the script read the same ``.ini`` file,
whose ``[app:main]`` says ``use = call:psessions_app:main``: PasteDeploy
imports that module to read the settings, so the subprocesses get ``tests/``
on their ``PYTHONPATH``. Stores shared between processes (file, sqlite, redis)
run through the installed console script; the few cases that need a fake clock
or a terminal call ``main()`` in this process with a shared MemoryStore.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import datetime
from datetime import timezone
from pathlib import Path

import pytest
from webtest import TestApp

import psessions_app
from pyramid_sessionstore.active import handle_of
from pyramid_sessionstore.cookies import store_key
from pyramid_sessionstore.scripts.psessions import main
from pyramid_sessionstore.settings import session_factory_from_settings
from pyramid_sessionstore.stores.memory import MemoryStore
from pyramid_sessionstore.testing.contract import eventually
from servers import REDIS_URL
from servers import closed_port
from servers import ensure_server

SECRET = "nwd-531UQMGFPQjW0sCuEAkfqZvn-7lbCLIbWfPQ6CFALY6T9K-1t9-jdw348QvV"
PSESSIONS = shutil.which("psessions", path=os.path.dirname(sys.executable))
TESTS_DIR = str(Path(__file__).parent)


def _store_settings(kind: str, tmp_path: Path) -> str:
    if kind == "file":
        return f"session.store = file\nsession.file.path = {tmp_path}/sessions"
    if kind == "sqlite":
        return f"session.store = sqlite\nsession.sqlite.path = {tmp_path}/sessions.sqlite"
    assert kind == "redis"
    ensure_server("redis", REDIS_URL, 6379)
    prefix = f"psessions-{uuid.uuid4().hex}:"
    return (
        f"session.store = redis\nsession.redis.url = {REDIS_URL}\nsession.redis.prefix = {prefix}"
    )


class Deployment:
    """An ``.ini`` file, the app it configures and the ``psessions`` that reads it."""

    def __init__(self, tmp_path: Path, settings: str, secret: str = SECRET) -> None:
        self.ini = tmp_path / "app.ini"
        self.ini.write_text(
            f"[app:main]\nuse = call:psessions_app:main\nsession.secret = {secret}\n{settings}\n"
        )
        self.settings = {"session.secret": secret}
        for line in settings.splitlines():
            name, _, value = line.partition("=")
            self.settings[name.strip()] = value.strip()
        self._app: object = None

    def browser(self, agent: str | None = None, ip: str | None = None) -> TestApp:
        """Return a new client of the app (its own cookie jar, so its own session)."""
        if self._app is None:
            self._app = psessions_app.main({}, **self.settings)
        environ = {"HTTP_USER_AGENT": agent, "REMOTE_ADDR": ip}
        return TestApp(self._app, extra_environ={k: v for k, v in environ.items() if v})

    def session(self, path: str) -> str:
        """Make a session in a new browser by visiting *path*; return its cookie value."""
        browser = self.browser()
        browser.get(path)
        return str(browser.cookies["session"])

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        """Run the installed ``psessions`` on this deployment's ``.ini`` (stdin: nothing)."""
        assert PSESSIONS is not None, "the psessions console script is not installed"
        path = os.pathsep.join(filter(None, [TESTS_DIR, os.environ.get("PYTHONPATH")]))
        return subprocess.run(
            [PSESSIONS, str(self.ini), *args],
            capture_output=True,
            text=True,
            env={**os.environ, "PYTHONPATH": path},
            stdin=subprocess.DEVNULL,
            timeout=60,
            check=False,
        )

    def call(self, *args: str) -> subprocess.CompletedProcess[str]:
        """Run ``psessions`` on this deployment's ``.ini`` in this process (faster)."""
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(["psessions", str(self.ini), *args])
        return subprocess.CompletedProcess(args, code, out.getvalue(), err.getvalue())


def one_line_error(result: subprocess.CompletedProcess[str], *fragments: str) -> None:
    """Assert *result* failed with one line on stderr containing every fragment."""
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in lines[0]


def field(output: str, name: str) -> str:
    """Return the value printed after ``name:`` in *output*."""
    for line in output.splitlines():
        if line.startswith(f"{name}:"):
            return line.partition(":")[2].strip()
    raise AssertionError(f"no {name!r} line in {output!r}")


@pytest.fixture(params=["file", "sqlite", pytest.param("redis", marks=pytest.mark.redis)])
def kind(request: pytest.FixtureRequest) -> str:
    """The store the deployments of a test use (all shared between processes)."""
    return str(request.param)


def _deploy(kind: str, tmp_path: Path, extra: str = "") -> Iterator[Deployment]:
    deployment = Deployment(tmp_path, f"{_store_settings(kind, tmp_path)}\n{extra}".strip())
    yield deployment
    if kind == "redis":  # the other stores live in tmp_path
        deployment.call("purge", "--all", "--yes")


@pytest.fixture
def deployment(kind: str, tmp_path: Path) -> Iterator[Deployment]:
    yield from _deploy(kind, tmp_path)


@pytest.fixture
def sealed(kind: str, tmp_path: Path) -> Iterator[Deployment]:
    """A deployment whose records are encrypted (``session.encrypt = true``)."""
    yield from _deploy(kind, tmp_path, "session.encrypt = true")


@pytest.fixture(params=[False, True], ids=["plain", "encrypted"])
def devices(kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Deployment]:
    """A deployment that records each session's user agent and IP, records sealed or not."""
    extra = "session.record_client = user_agent ip"
    yield from _deploy(kind, tmp_path, extra + ("\nsession.encrypt = true" * request.param))


@pytest.fixture
def file_deployment(tmp_path: Path) -> Deployment:
    return Deployment(tmp_path, _store_settings("file", tmp_path))


# -- end to end, through the console script ----------------------------------------


def test_help_lists_every_subcommand() -> None:
    assert PSESSIONS is not None
    result = subprocess.run([PSESSIONS, "--help"], capture_output=True, text=True, check=False)
    assert result.returncode == 0
    for command in ("stats", "gc", "show", "purge", "CONFIG_URI"):
        assert command in result.stdout


def test_stats_counts_sessions_and_user_indexes(deployment: Deployment) -> None:
    deployment.session("/set?a=1")
    deployment.session("/login?user=alice")
    deployment.session("/login?user=alice")
    result = deployment.run("stats")
    assert result.returncode == 0, result.stderr
    assert field(result.stdout, "sessions") == "3"
    assert field(result.stdout, "user indexes") == "1"
    assert field(result.stdout, "store").endswith(")")
    native = "RedisStore" in field(result.stdout, "store")
    assert field(result.stdout, "expired").startswith("none" if native else "unknown until gc")
    gc = deployment.call("gc")
    assert gc.returncode == 0
    assert gc.stdout.startswith("nothing to do" if native else "deleted 0 expired record(s)")


def test_show_prints_times_user_timeout_and_data(deployment: Deployment) -> None:
    cookie = deployment.session("/login?user=alice&timeout=99")
    browser = deployment.browser()
    browser.set_cookie("session", cookie)
    browser.get("/set?n=7&blob=xyz&when=2024-05-01T12:00:00")
    session_id = cookie.partition(".")[0]
    for given in (cookie, session_id, store_key(session_id)):
        result = (deployment.run if given is cookie else deployment.call)("show", given)
        assert result.returncode == 0, result.stderr
        out = result.stdout
        assert field(out, "key") == store_key(session_id)
        created = datetime.fromisoformat(field(out, "created"))
        assert abs(created - datetime.now(timezone.utc)).total_seconds() < 60
        assert field(out, "userid") == '"alice"'
        assert field(out, "timeout").startswith("99 s")
        data = out.partition("data:\n")[2]
        assert '"n": 7' in data and '"who": "alice"' in data
        assert "\"b'xyz'\"" in data and "datetime.datetime(2024, 5, 1, 12, 0)" in data
    browser.get("/read")  # the session is still alive after being shown
    assert browser.get("/read").json["who"] == "alice"


def _stored(deployment: Deployment, key: str) -> bytes:
    """Return the bytes the deployment's store keeps under *key* (refreshed as the app would)."""
    factory = session_factory_from_settings(deployment.settings)
    try:
        record = factory.store.load(key, 99)
    finally:
        factory.store.close()
    assert record is not None
    return record.data


def test_show_opens_an_encrypted_record_given_its_cookie_or_id(sealed: Deployment) -> None:
    cookie = sealed.session("/login?user=alice&timeout=99")
    browser = sealed.browser()
    browser.set_cookie("session", cookie)
    browser.get("/set?n=7&blob=xyz")
    session_id = cookie.partition(".")[0]
    stored = _stored(sealed, store_key(session_id))
    assert stored.startswith(b"PSS\x02") and b"alice" not in stored  # sealed indeed
    for given in (cookie, session_id):
        result = (sealed.run if given is cookie else sealed.call)("show", given)
        assert result.returncode == 0, result.stderr
        out = result.stdout
        assert field(out, "key") == store_key(session_id)
        assert field(out, "sealed") == "yes (session.encrypt), opened with the session id"
        assert field(out, "userid") == '"alice"' and field(out, "timeout").startswith("99 s")
        data = out.partition("data:\n")[2]
        assert '"n": 7' in data and '"who": "alice"' in data and "\"b'xyz'\"" in data
    assert browser.get("/read").json["who"] == "alice"


def test_show_of_an_encrypted_record_by_store_key_shows_its_clear_header(
    sealed: Deployment,
) -> None:
    bound = store_key(sealed.session("/login?user=alice&timeout=99").partition(".")[0])
    anonymous = store_key(sealed.session("/set?n=7").partition(".")[0])
    result = sealed.run("show", bound)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert field(out, "key") == bound
    assert field(out, "sealed").startswith("yes (session.encrypt), not opened")
    created = datetime.fromisoformat(field(out, "created"))
    assert abs(created - datetime.now(timezone.utc)).total_seconds() < 60
    assert datetime.fromisoformat(field(out, "written")) >= created
    assert field(out, "timeout").startswith("99 s")
    assert field(out, "userid") == "(encrypted) a user is bound"
    assert field(out, "data").startswith("(encrypted: give the session cookie value or the")
    assert "alice" not in out
    unbound = sealed.call("show", anonymous)
    assert unbound.returncode == 0, unbound.stderr
    assert field(unbound.stdout, "userid") == "null" and '"n"' not in unbound.stdout


def test_an_encrypted_record_under_a_rotated_away_secret_is_one_line_and_exit_1(
    tmp_path: Path,
) -> None:
    settings = _store_settings("file", tmp_path) + "\nsession.encrypt = true"
    cookie = Deployment(tmp_path, settings).session("/set?n=7")
    rotated = Deployment(tmp_path, settings, secret=SECRET[::-1])
    result = rotated.call("show", cookie.partition(".")[0])
    assert result.returncode == 1
    one_line_error(result, "encrypted and does not open", "secrets")
    assert result.stdout == ""


def test_stats_and_gc_read_no_encrypted_data(sealed: Deployment) -> None:
    sealed.session("/set?a=1")
    sealed.session("/login?user=alice")
    sealed.session("/login?user=alice")
    stats = sealed.run("stats")
    assert stats.returncode == 0, stats.stderr
    assert field(stats.stdout, "sessions") == "3" and field(stats.stdout, "user indexes") == "1"
    gc = sealed.call("gc")
    assert gc.returncode == 0, gc.stderr
    assert field(sealed.call("stats").stdout, "sessions") == "3"


def test_show_unknown_session_exits_1(deployment: Deployment) -> None:
    result = deployment.call("show", "0" * 64)
    assert result.returncode == 1
    one_line_error(result, "no session", "0" * 64)


@pytest.mark.parametrize("given", ["-" + "A" * 42, "--" + "A" * 41])
def test_show_takes_an_id_that_starts_with_a_dash(file_deployment: Deployment, given: str) -> None:
    result = file_deployment.call("show", given)  # 1 id in 64 starts with "-": not an option
    assert result.returncode == 1
    one_line_error(result, "no session")


def _forge(cookie: str) -> str:
    """Return *cookie* with one character of its signature changed (always a change)."""
    at = cookie.rindex(".") + 10
    return cookie[:at] + ("A" if cookie[at] != "A" else "B") + cookie[at + 1 :]


def test_show_rejects_forged_and_malformed_values(file_deployment: Deployment) -> None:
    cookie = file_deployment.session("/set?a=1")
    assert _forge(cookie) != cookie and _forge("x" * 44 + ".A" + "A" * 42).count("B") == 1
    forged = file_deployment.run("show", _forge(cookie))
    assert forged.returncode == 1
    one_line_error(forged, "signed")
    garbage = file_deployment.call("show", "not-a-session")
    assert garbage.returncode == 2
    one_line_error(garbage, "not-a-session")


@pytest.mark.parametrize("encrypt", [False, True], ids=["plain", "encrypted"])
def test_gc_deletes_expired_records(tmp_path: Path, encrypt: bool) -> None:
    settings = (
        _store_settings("file", tmp_path) + f"\nsession.timeout = 1\nsession.encrypt = {encrypt}"
    )
    deployment = Deployment(tmp_path, settings)
    deployment.session("/set?a=1")
    from pyramid_sessionstore.stores.file import FileStore

    store = FileStore(path=tmp_path / "sessions")
    eventually(lambda: store.count() == 0)  # expired, still on disk
    result = deployment.run("gc")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("deleted 1 expired record(s) from FileStore(")
    assert deployment.call("gc").stdout.startswith("deleted 0 ")


def test_purge_user_ends_only_that_users_sessions(deployment: Deployment) -> None:
    alice = [deployment.session("/login?user=alice") for _ in range(2)]
    bob = deployment.session("/login?user=bob")
    deployment.session("/set?a=1")
    result = deployment.run("purge", "--user", "alice")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ended 2 session(s) of user 'alice'"
    browser = deployment.browser()
    for cookie, alive in ((alice[0], False), (alice[1], False), (bob, True)):
        browser.set_cookie("session", cookie)
        assert ("who" in browser.get("/read").json) is alive
    assert field(deployment.call("stats").stdout, "sessions") == "2"
    again = deployment.call("purge", "--user", "alice")
    assert again.returncode == 0 and "ended 0 session(s)" in again.stdout


def test_purge_a_user_id_that_starts_with_a_dash(file_deployment: Deployment) -> None:
    file_deployment.session("/login?user=-bob")
    result = file_deployment.call("purge", "--user=-bob")  # as docs/psessions.md says
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ended 1 session(s) of user '-bob'"


def test_purge_all_without_yes_and_without_a_terminal_is_refused(
    file_deployment: Deployment,
) -> None:
    file_deployment.session("/set?a=1")
    result = file_deployment.run("purge", "--all")
    assert result.returncode == 2
    one_line_error(result, "--yes")
    assert field(file_deployment.call("stats").stdout, "sessions") == "1"


def test_purge_all_with_yes_deletes_every_record(deployment: Deployment) -> None:
    deployment.session("/set?a=1")
    deployment.session("/login?user=alice")
    result = deployment.run("purge", "--all", "--yes")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("deleted 3 record(s) from ")
    stats = deployment.call("stats").stdout
    assert field(stats, "sessions") == "0" and field(stats, "user indexes") == "0"
    assert deployment.call("purge", "--all").stdout.startswith("nothing to purge")


# -- active sessions: list, purge --session ----------------------------------------

LAPTOP = ("Mozilla/5.0 (X11; Linux x86_64; rv:132.0) Gecko/20100101 Firefox/132.0", "203.0.113.7")
PHONE = ("Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) Mobile/15E148", "2001:db8::1")


def listed(deployment: Deployment, user: str) -> list[list[str]]:
    """Return the rows ``list --user USER`` prints as [handle, created, last, ip, agent]."""
    result = deployment.call("list", "--user", user)
    assert result.returncode == 0, result.stderr
    return [row.split(None, 4) for row in result.stdout.splitlines()[1:]]


def test_list_then_purge_session_ends_that_one_only(devices: Deployment) -> None:
    laptop = devices.browser(*LAPTOP)
    laptop.get("/login?user=alice")
    time.sleep(1.1)  # activity is told to the second (bind time, on stores that cannot peek)
    phone = devices.browser(*PHONE)
    phone.get("/login?user=alice")
    bob = devices.browser("Bob/1.0", "10.0.0.9")
    bob.get("/login?user=bob")

    result = devices.run("list", "--user", "alice")
    assert result.returncode == 0, result.stderr
    header, *lines = result.stdout.splitlines()
    assert header.split() == ["handle", "created", "last", "active", "ip", "user", "agent"]
    rows = [line.split(None, 4) for line in lines]
    assert [(ip, agent) for _, _, _, ip, agent in rows] == [PHONE[::-1], LAPTOP[::-1]]
    now = datetime.now(timezone.utc)
    for line, (handle, created, last, ip, _) in zip(lines, rows, strict=True):
        assert len(handle) == 22 and line.index(ip) == header.index("ip")  # aligned columns
        assert abs(datetime.fromisoformat(created) - now).total_seconds() < 60
        assert datetime.fromisoformat(created) <= datetime.fromisoformat(last)
    phone_handle, laptop_handle = rows[0][0], rows[1][0]
    [[bob_handle, *_]] = listed(devices, "bob")

    ended = devices.run("purge", "--session", phone_handle, "--user", "alice")
    assert ended.returncode == 0, ended.stderr
    assert ended.stdout.strip() == f"ended session {phone_handle} of user 'alice'"
    assert "who" not in phone.get("/read").json
    assert laptop.get("/read").json["who"] == "alice"
    assert [row[0] for row in listed(devices, "alice")] == [laptop_handle]

    # Already ended, another user's (either way round), made up: nothing changes.
    for handle, user in [
        (phone_handle, "alice"),
        (bob_handle, "alice"),
        (laptop_handle, "bob"),
        ("A" * 22, "alice"),
    ]:
        refused = devices.call("purge", "--session", handle, "--user", user)
        assert refused.returncode == 1 and refused.stdout == ""
        one_line_error(refused, f"no active session {handle!r} of user {user!r}", "nothing ended")
    assert laptop.get("/read").json["who"] == "alice" and bob.get("/read").json["who"] == "bob"
    assert field(devices.call("stats").stdout, "sessions") == "2"


def test_purge_session_of_an_expired_session_ends_nothing(tmp_path: Path) -> None:
    deployment = Deployment(tmp_path, _store_settings("file", tmp_path) + "\nsession.timeout = 1")
    policy = session_factory_from_settings(deployment.settings).policy
    cookie = deployment.session("/login?user=alice")
    key = store_key(cookie.partition(".")[0])
    handle = handle_of(policy, "alice", key)
    from pyramid_sessionstore.stores.file import FileStore

    store = FileStore(path=tmp_path / "sessions")
    eventually(lambda: key not in set(store.keys()))  # expired; its user's index still lists it
    result = deployment.call("purge", "--session", handle, "--user", "alice")
    assert result.returncode == 1
    one_line_error(result, f"no active session {handle!r}", "nothing ended")


def test_list_a_user_without_sessions_says_so(file_deployment: Deployment) -> None:
    file_deployment.session("/login?user=alice")
    result = file_deployment.run("list", "--user", "bob")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "no active sessions of user 'bob'\n"


def test_list_escapes_what_a_terminal_would_obey(tmp_path: Path) -> None:
    extra = "\nsession.record_client = user_agent ip"
    deployment = Deployment(tmp_path, _store_settings("file", tmp_path) + extra)
    deployment.browser("Evil/1.0\x1b[2J\x9b31m", "10.0.0.1").get("/login?user=alice")
    result = deployment.call("list", "--user", "alice")
    assert result.returncode == 0, result.stderr
    assert "\x1b" not in result.stdout and "\x9b" not in result.stdout
    assert result.stdout.splitlines()[1].endswith("10.0.0.1  Evil/1.0\\x1b[2J\\x9b31m")


def test_a_user_id_that_spells_an_int_finds_int_and_text_bindings(
    file_deployment: Deployment,
) -> None:
    as_int = file_deployment.browser()
    as_int.get("/login?user=42&int=1")
    as_text = file_deployment.browser()
    as_text.get("/login?user=42")
    rows = listed(file_deployment, "42")
    assert len(rows) == 2
    one = file_deployment.call("purge", "--session", rows[0][0], "--user", "42")
    assert one.returncode == 0, one.stderr
    assert len(listed(file_deployment, "42")) == 1
    rest = file_deployment.call("purge", "--user", "42")
    assert rest.stdout.strip() == "ended 1 session(s) of user '42'"
    assert "who" not in as_int.get("/read").json and "who" not in as_text.get("/read").json


def test_purge_session_takes_a_handle_that_starts_with_a_dash(shared: Deployment) -> None:
    policy = session_factory_from_settings(shared.settings).policy
    for _ in range(1000):  # 1 handle in 64 starts with "-": this misses with p < 1e-6
        cookie = shared.session("/login?user=alice")
        handle = handle_of(policy, "alice", store_key(cookie.partition(".")[0]))
        if handle.startswith("-"):
            break
    assert handle.startswith("-")
    assert handle in [row[0] for row in listed(shared, "alice")]
    result = shared.call("purge", "--session", handle, "--user", "alice")
    assert result.returncode == 0, result.stderr
    assert handle not in [row[0] for row in listed(shared, "alice")]


def test_missing_config_file_is_one_line_and_exit_2(tmp_path: Path) -> None:
    deployment = Deployment(tmp_path, "session.store = memory")
    deployment.ini = tmp_path / "missing.ini"
    result = deployment.run("stats")
    assert result.returncode == 2
    one_line_error(result, "missing.ini")


def test_missing_app_section_is_one_line_and_exit_2(file_deployment: Deployment) -> None:
    file_deployment.ini = Path(f"{file_deployment.ini}#other")
    result = file_deployment.call("stats")
    assert result.returncode == 2
    one_line_error(result, "other")


@pytest.mark.parametrize(
    ("settings", "named"),
    [
        ("session.store = rediss", "session.store"),
        ("session.store = file\nsession.file.pathh = /tmp/x", "session.file.pathh"),
        ("session.store = memory\nsession.timeout = soon", "session.timeout"),
        ("session.store = memory\nsession.timeout = 0", "session.timeout:"),
        ("session.store = sqlite", "session.sqlite.path is required"),
        ("session.store = redis\nsession.secrets = changeme", "session.secrets:"),
    ],
)
def test_bad_setting_is_named_in_one_line_and_exit_2(
    tmp_path: Path, settings: str, named: str
) -> None:
    result = Deployment(tmp_path, settings).call("stats")
    assert result.returncode == 2
    one_line_error(result, named)


def test_unreachable_store_is_one_line_and_exit_1(tmp_path: Path) -> None:
    _store_settings("file", tmp_path)
    result = Deployment(tmp_path, "session.store = file\nsession.file.path = /dev/null/x").run(
        "stats"
    )
    assert result.returncode == 1
    one_line_error(result, f"psessions: {deployment_ini(tmp_path)}: FileStore(", "/dev/null/x")


def deployment_ini(tmp_path: Path) -> Path:
    return tmp_path / "app.ini"


def test_server_down_while_working_is_one_line_and_exit_1(tmp_path: Path) -> None:
    url = f"redis://:sekrit@127.0.0.1:{closed_port()}/15"
    deployment = Deployment(tmp_path, f"session.store = redis\nsession.redis.url = {url}")
    result = deployment.call("stats")
    assert result.returncode == 1
    one_line_error(result, f"psessions: {deployment.ini}: Redis at redis://", "unavailable")
    assert "sekrit" not in result.stderr
    assert result.stderr.count("Redis at") == 1 and "RedisStore(" not in result.stderr  # once


def test_store_without_scan_cannot_give_stats_or_purge_all(tmp_path: Path) -> None:
    deployment = Deployment(tmp_path, "session.store = psessions_app:NoScanStore")
    stats = deployment.run("stats")
    assert stats.returncode == 1
    one_line_error(stats, "NoScanStore()", "cannot list")
    purge = deployment.call("purge", "--all", "--yes")
    assert purge.returncode == 1
    one_line_error(purge, "NoScanStore()")
    gc = deployment.call("gc")
    assert gc.returncode == 0
    assert gc.stdout.strip() == "nothing to do: NoScanStore() expires records by itself"


# -- in this process: a fake clock, a terminal, a cookie store ---------------------


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Make ``psessions_app.shared_store`` a MemoryStore on a clock the test moves."""
    now = [1_700_000_000.0]
    monkeypatch.setattr(psessions_app, "SHARED", MemoryStore(clock=lambda: now[0]))
    return now


@pytest.fixture
def shared(tmp_path: Path, clock: list[float]) -> Deployment:
    return Deployment(tmp_path, "session.store = psessions_app:shared_store")


@pytest.mark.parametrize("own_timeout", [None, 99])
def test_show_keeps_the_expiry_the_app_gave(
    shared: Deployment, clock: list[float], own_timeout: int | None
) -> None:
    query = "" if own_timeout is None else f"&timeout={own_timeout}"
    cookie = shared.session(f"/login?user=alice{query}")
    key = store_key(cookie.partition(".")[0])
    result = shared.call("show", key)
    assert result.returncode == 0 and '"who": "alice"' in result.stdout
    timeout = own_timeout or 1200
    clock[0] += timeout - 1
    assert psessions_app.SHARED.touch(key, timeout)  # still there; restart the idle clock
    clock[0] += timeout + 1
    assert psessions_app.SHARED.load(key, timeout) is None


class Terminal(io.StringIO):
    """Standard input that says it is a terminal."""

    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize(("answer", "code", "left"), [("y\n", 0, 0), ("no\n", 1, 1), ("", 2, 1)])
def test_purge_all_asks_at_the_terminal(
    shared: Deployment, monkeypatch: pytest.MonkeyPatch, answer: str, code: int, left: int
) -> None:
    shared.session("/set?a=1")
    monkeypatch.setattr(sys, "stdin", Terminal(answer))
    result = shared.call("purge", "--all")
    assert result.returncode == code
    assert "Delete all 1 record(s) of MemoryStore(" in result.stderr
    assert psessions_app.SHARED.count() == left


def test_cookie_store_sessions_live_in_browsers(tmp_path: Path) -> None:
    deployment = Deployment(tmp_path, "session.store = psessions_app:SealingStore")
    cookie = deployment.session("/login?user=alice")
    shown = deployment.call("show", cookie)
    assert shown.returncode == 0
    assert field(shown.stdout, "userid") == '"alice"' and '"who": "alice"' in shown.stdout
    by_key = deployment.call("show", "0" * 64)
    assert by_key.returncode == 1
    one_line_error(by_key, "browser cookies")
    assert deployment.call("stats").returncode == 1
    gc = deployment.call("gc")
    assert gc.returncode == 0 and gc.stdout.startswith("nothing to do")
    purge = deployment.call("purge", "--user", "alice")
    assert purge.returncode == 1
    one_line_error(purge, "session.secret")
    one = deployment.call("purge", "--session", "A" * 22, "--user", "alice")
    assert one.returncode == 1
    one_line_error(one, "session.secret")
    listing = deployment.call("list", "--user", "alice")
    assert listing.returncode == 1
    one_line_error(listing, "browser cookies")


# -- no traceback: a closed pipe, Ctrl-C, bad arguments, an unreadable file -----


def _pipeline(deployment: Deployment, args: str, reader: str) -> subprocess.CompletedProcess[str]:
    """Run ``psessions INI ARGS | READER`` in a shell; stdout is the pipeline's statuses."""
    assert PSESSIONS is not None
    path = os.pathsep.join(filter(None, [TESTS_DIR, os.environ.get("PYTHONPATH")]))
    script = f'"{PSESSIONS}" "{deployment.ini}" {args} | {reader}; echo "${{PIPESTATUS[@]}}"'
    return subprocess.run(
        ["bash", "-c", script],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": path},
        timeout=60,
        check=False,
    )


def test_output_cut_short_by_head_is_quiet_and_exit_141(file_deployment: Deployment) -> None:
    # 300 kB of output: far more than a pipe holds, so head -1 leaves while it writes.
    cookie = file_deployment.session("/set?blob=" + "x" * 300_000)
    result = _pipeline(file_deployment, f"show '{cookie}'", "head -1 >/dev/null")
    assert result.stderr == ""
    assert result.stdout.split() == ["141", "0"]


def test_output_into_a_closed_pipe_is_quiet_and_exit_141(file_deployment: Deployment) -> None:
    file_deployment.session("/set?a=1")
    assert PSESSIONS is not None
    path = os.pathsep.join(filter(None, [TESTS_DIR, os.environ.get("PYTHONPATH")]))
    with subprocess.Popen(
        [PSESSIONS, str(file_deployment.ini), "stats"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": path},
    ) as proc:
        assert proc.stdout is not None and proc.stderr is not None
        proc.stdout.close()  # as `| true` does: nobody will read
        stderr = proc.stderr.read()
        assert proc.wait(timeout=60) == 141
    assert stderr == b""


def test_ctrl_c_at_the_question_is_one_line_and_exit_130(
    shared: Deployment, monkeypatch: pytest.MonkeyPatch
) -> None:
    shared.session("/set?a=1")

    class Interrupted(Terminal):
        def readline(self, size: int | None = -1) -> str:
            raise KeyboardInterrupt

    monkeypatch.setattr(sys, "stdin", Interrupted())
    result = shared.call("purge", "--all")
    assert result.returncode == 130
    assert result.stderr.endswith("? [y/N] \npsessions: interrupted\n")
    assert psessions_app.SHARED.count() == 1


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        ([], "the following arguments are required: CONFIG_URI, COMMAND"),
        (["app.ini", "stat"], "invalid choice: 'stat'"),
        (["app.ini", "show"], "SESSION_COOKIE_OR_ID; see psessions CONFIG_URI show --help"),
        (["app.ini", "purge"], "one of the arguments --user --all is required"),
        (["app.ini", "purge", "--all", "--session", "x"], "--session HANDLE needs --user USERID"),
        (["app.ini", "list"], "the following arguments are required: --user"),
    ],
)
def test_bad_arguments_are_one_line_and_exit_2(args: list[str], fragment: str) -> None:
    assert PSESSIONS is not None
    result = subprocess.run([PSESSIONS, *args], capture_output=True, text=True, check=False)
    assert result.returncode == 2
    one_line_error(result, "psessions: ", fragment)
    assert main(["psessions", *args]) == 2  # main() returns the code, as documented


LOGGING_WITH_A_TYPO = """
[loggers]
keys = root
[handlers]
keys = console
[formatters]
keys = generic
[logger_root]
handlers = console
[handler_console]
class = StreamHandler
args = (sys.stderr,
formatter = generic
[formatter_generic]
format = %%(message)s
"""


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        (b"\xff\xfe[app:main]\n", "codec can't decode"),
        (b"[app:main]\nuse = call:psessions_app:nothere\n", "nothere"),
        (b"[app:main]\nuse = call:no_such_module:main\n", "no_such_module"),
        (f"[app:main]\nuse = call:psessions_app:main\n{LOGGING_WITH_A_TYPO}".encode(), "app.ini"),
    ],
    ids=["not-utf-8", "no-such-app", "no-such-module", "broken-logging-section"],
)
def test_an_unreadable_config_file_is_one_line_and_exit_2(
    tmp_path: Path, content: bytes, fragment: str
) -> None:
    deployment = Deployment(tmp_path, "session.store = memory")
    deployment.ini.write_bytes(content)
    result = deployment.run("stats")
    assert result.returncode == 2
    one_line_error(result, f"cannot load {deployment.ini}", fragment)


def test_data_the_terminal_cannot_show_is_escaped_not_a_traceback(
    file_deployment: Deployment, monkeypatch: pytest.MonkeyPatch
) -> None:
    cookie = file_deployment.session("/set?who=Zo%C3%A9+%E2%9C%93")
    monkeypatch.setenv("PYTHONIOENCODING", "ascii")
    result = file_deployment.run("show", cookie)
    assert result.returncode == 0, result.stderr
    assert '"who": "Zo\\xe9 \\u2713"' in result.stdout
