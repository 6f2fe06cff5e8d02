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
import uuid
from collections.abc import Iterator
from datetime import datetime
from datetime import timezone
from pathlib import Path

import pytest
from webtest import TestApp

import psessions_app
from pyramid_sessionstore.cookies import store_key
from pyramid_sessionstore.scripts.psessions import main
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

    def __init__(self, tmp_path: Path, settings: str) -> None:
        self.ini = tmp_path / "app.ini"
        self.ini.write_text(
            f"[app:main]\nuse = call:psessions_app:main\nsession.secret = {SECRET}\n{settings}\n"
        )
        self.settings = {"session.secret": SECRET}
        for line in settings.splitlines():
            name, _, value = line.partition("=")
            self.settings[name.strip()] = value.strip()
        self._app: object = None

    def browser(self) -> TestApp:
        """Return a new client of the app (its own cookie jar, so its own session)."""
        if self._app is None:
            self._app = psessions_app.main({}, **self.settings)
        return TestApp(self._app)

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
def deployment(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Deployment]:
    deployment = Deployment(tmp_path, _store_settings(request.param, tmp_path))
    yield deployment
    if request.param == "redis":  # the other stores live in tmp_path
        deployment.call("purge", "--all", "--yes")


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


def test_gc_deletes_expired_records(tmp_path: Path) -> None:
    deployment = Deployment(tmp_path, _store_settings("file", tmp_path) + "\nsession.timeout = 1")
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
