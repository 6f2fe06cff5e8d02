"""Check the sdist and the wheel as a user receives them (``make wheel-smoke``).

Usage: ``python .ci/wheel_smoke.py DIST_DIR`` after ``python -m build --outdir DIST_DIR``.

1. The sdist holds the sources and nothing of a work tree: no virtualenv,
   caches, build output or local databases.
2. The wheel holds exactly the files of ``src/pyramid_sessionstore`` (a module
   the build leaves out fails here, not on a user's machine), no demo, and only
   the ``psessions`` entry point.
3. A fresh virtualenv in a temporary directory gets the wheel without extras
   (the memory and SQLite stores need none). From outside the source tree, the
   package must import from that virtualenv, a factory built from settings must
   serve a request and read its session back on the next one, a store whose
   driver is missing must name the extra to install, and ``psessions --help``
   and ``psessions INI stats`` must work.

It is not a test of the library's behaviour (``make test`` is): it catches a
package that differs from the work tree it was built from.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
import tempfile
import textwrap
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "src" / "pyramid_sessionstore"

#: Path parts that belong to a work tree, never to a distribution.
FORBIDDEN_PARTS = {
    ".venv",
    "venv",
    ".git",
    "__pycache__",
    ".pytest_cache",
    ".mypy_cache",
    ".ruff_cache",
    ".hypothesis",
    "_build",
    "dist",
    "var",
}
FORBIDDEN_SUFFIXES = (".pyc", ".sqlite", ".sqlite-wal", ".sqlite-shm")
SDIST_REQUIRED = (
    "pyproject.toml",
    "README.md",
    "src/pyramid_sessionstore/py.typed",
    "tests/conftest.py",
    "docs/index.md",
    "demo/pyproject.toml",
)


PASSED: list[str] = []


def passed(message: str) -> None:
    PASSED.append(message)
    print(f"wheel-smoke: {message}")


def fail(message: str) -> None:
    print(f"wheel-smoke: FAILED: {message}", file=sys.stderr)
    print(f"wheel-smoke: {len(PASSED)} passed, 1 failed")
    raise SystemExit(1)


def source_files() -> set[str]:
    """Return the package's files in the work tree, as paths in the wheel."""
    return {
        path.relative_to(PACKAGE.parent).as_posix()
        for path in PACKAGE.rglob("*")
        if path.is_file()
        and "__pycache__" not in path.parts
        and not path.name.endswith(FORBIDDEN_SUFFIXES)
    }


def check_sdist(sdist: Path) -> None:
    with tarfile.open(sdist) as archive:
        # Members are "pyramid_sessionstore-0.1.0/<path>".
        names = {name.split("/", 1)[1] for name in archive.getnames() if "/" in name}
    junk = sorted(
        name
        for name in names
        if FORBIDDEN_PARTS.intersection(name.split("/")) or name.endswith(FORBIDDEN_SUFFIXES)
    )
    if junk:
        fail(f"{sdist.name} carries work-tree files: {junk[:10]}")
    missing = [name for name in SDIST_REQUIRED if name not in names]
    if missing:
        fail(f"{sdist.name} lacks {missing}")
    in_sdist = {name.removeprefix("src/") for name in names if name.startswith("src/")}
    if not source_files() <= in_sdist:
        fail(f"{sdist.name} lacks {sorted(source_files() - in_sdist)}")
    passed(f"{sdist.name}: {len(names)} files, every file of src/, no work-tree files")


def check_wheel(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        (entry_points,) = [n for n in names if n.endswith(".dist-info/entry_points.txt")]
        declared = archive.read(entry_points).decode()
    tops = {name.split("/", 1)[0] for name in names}
    others = sorted(t for t in tops if t != "pyramid_sessionstore" and ".dist-info" not in t)
    if others:
        fail(f"{wheel.name} installs more than the library: {others}")
    packaged = {name for name in names if name.startswith("pyramid_sessionstore/")}
    expected = source_files()
    if packaged != expected:
        fail(
            f"{wheel.name} differs from src/: missing {sorted(expected - packaged)}, "
            f"extra {sorted(packaged - expected)}"
        )
    sections = [line for line in declared.splitlines() if line.startswith("[")]
    if sections != ["[console_scripts]"] or "psessions = " not in declared:
        fail(f"{wheel.name} declares unexpected entry points:\n{declared}")
    passed(f"{wheel.name}: the {len(packaged)} files of src/, no demo, psessions only")


#: Run by the fresh virtualenv's Python in a temporary directory, and used by
#: psessions as the app of smoke.ini (``use = call:smoke_app:main``).
SMOKE_APP = """
import os
import sys
from pathlib import Path

from pyramid.config import Configurator
from webob import Request

import pyramid_sessionstore
from pyramid_sessionstore import MissingDependencyError
from pyramid_sessionstore import session_factory_from_settings

HERE = Path(__file__).resolve().parent
SECRET = "wheel-smoke-" + "0123456789abcdef" * 4


def count(request):
    request.session["n"] = request.session.get("n", 0) + 1
    return {"n": request.session["n"]}


def main(global_config, **settings):
    with Configurator(settings=settings) as config:
        config.include("pyramid_sessionstore")
        config.add_route("count", "/")
        config.add_view(count, route_name="count", renderer="json")
    return config.make_wsgi_app()


def two_requests(app):
    first = Request.blank("/").get_response(app)
    assert first.json == {"n": 1}, first.text
    cookie = first.headers["Set-Cookie"].split(";", 1)[0]
    second = Request.blank("/", headers={"Cookie": cookie}).get_response(app)
    assert second.json == {"n": 2}, second.text


if __name__ == "__main__":
    venv = Path(sys.prefix)
    assert Path(pyramid_sessionstore.__file__).is_relative_to(venv), pyramid_sessionstore.__file__
    base = {"session.secret": SECRET}
    two_requests(main({}, **base, **{"session.store": "memory"}))
    sqlite = {"session.store": "sqlite", "session.sqlite.path": str(HERE / "s.sqlite")}
    two_requests(main({}, **base, **sqlite))
    try:
        session_factory_from_settings({**base, "session.store": "redis"})
    except MissingDependencyError as err:
        assert "pyramid_sessionstore[redis]" in str(err), err
    else:
        raise AssertionError("the redis store built without redis-py installed")
    print("memory and sqlite stores from settings served requests; redis names its extra")
"""

SMOKE_INI = """\
[app:main]
use = call:smoke_app:main
session.secret = wheel-smoke-{secret}
session.store = sqlite
session.sqlite.path = %(here)s/s.sqlite
"""


def run(command: list[str], cwd: Path, **env: str) -> str:
    # Nothing of the calling virtualenv or source tree leaks into the command.
    inherited = {
        name: value
        for name, value in os.environ.items()
        if name not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")
    }
    result = subprocess.run(
        command,
        cwd=cwd,
        env={**inherited, **env},
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        fail(f"{' '.join(command)} exited {result.returncode}:\n{result.stdout}{result.stderr}")
    return result.stdout


def check_installed(wheel: Path) -> None:
    with tempfile.TemporaryDirectory(prefix="wheel-smoke-") as tmp:
        here = Path(tmp)
        venv = here / "venv"
        python, psessions = venv / "bin" / "python", venv / "bin" / "psessions"
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        run([str(python), "-m", "pip", "install", "-q", str(wheel)], cwd=here)
        (here / "smoke_app.py").write_text(textwrap.dedent(SMOKE_APP))
        (here / "smoke.ini").write_text(SMOKE_INI.format(secret="0123456789abcdef" * 4))
        passed(run([str(python), "smoke_app.py"], cwd=here).strip())
        usage = run([str(psessions), "--help"], cwd=here)
        if not all(word in usage for word in ("stats", "gc", "show", "purge")):
            fail(f"psessions --help does not list its commands:\n{usage}")
        stats = run([str(psessions), "smoke.ini", "stats"], cwd=here, PYTHONPATH=tmp)
        if "sessions:      1" not in stats:
            fail(f"psessions smoke.ini stats did not count the session:\n{stats}")
        passed("psessions --help and psessions smoke.ini stats work")


def main(argv: list[str]) -> int:
    dist = Path(argv[1]) if len(argv) > 1 else ROOT / "dist"
    (sdist,) = dist.glob("*.tar.gz")
    (wheel,) = dist.glob("*.whl")
    check_sdist(sdist)
    check_wheel(wheel)
    check_installed(wheel.resolve())
    print(f"wheel-smoke: {len(PASSED)} passed, 0 failed")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
