"""The load test (``python -m bench.load``) sees a lost update when one happens.

Two short runs on gunicorn (two worker processes) with the SQLite store,
same load: one with the store's saves made blind (last writer wins, the
test-only ``--blind-writes``), which must report lost updates and
read-your-writes misses, and one with the real compare-and-set, which must
report none. Both must have every session served by both worker processes.
Nothing is written to docs/ (``--out`` is a temporary directory).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("gunicorn")

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
#: 4 sessions of 4 clients each; half the requests write, so writes of a session overlap.
LOAD = ["--stores", "sqlite", "--seconds", "3", "--clients", "16", "--per-session", "4"]
LOAD += ["--write-share", "0.5", "--threads", "4"]


def run_load(out: Path, *extra: str) -> tuple[int, dict[str, Any], str]:
    """Run the load test; return its exit status, its one result and its stderr."""
    done = subprocess.run(
        [sys.executable, "-m", "bench.load", *LOAD, "--out", str(out), *extra],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    data = json.loads((out / "benchmarks.json").read_text())["load"]
    (result,) = data["results"]
    assert "skipped" not in result, result
    return done.returncode, result, done.stderr


def test_load_reports_lost_updates_when_saves_are_blind(tmp_path: Path) -> None:
    status, result, stderr = run_load(tmp_path, "--blind-writes")
    assert status == 1, stderr
    assert result["acknowledged"] > 0
    assert result["lost_updates"] > 0, stderr
    assert result["read_misses"] > 0, stderr
    assert result["errors"] == 0, result["error_samples"]
    assert result["sessions_on_every_worker"] == result["sessions"] == 4
    assert "lost_updates" in stderr
    assert "Blind writes" in (tmp_path / "benchmarks.md").read_text()


def test_load_reports_no_lost_update_with_compare_and_set(tmp_path: Path) -> None:
    status, result, stderr = run_load(tmp_path)
    assert result["errors"] == 0, result["error_samples"]
    assert result["lost_updates"] == 0, result["lost_samples"]
    assert result["read_misses"] == 0, result["miss_samples"]
    assert result["acknowledged"] > 0
    assert result["sessions_checked"] == result["sessions"] == 4
    assert result["sessions_on_every_worker"] == result["sessions"]
    assert status == 0, stderr


def _result(**changes: Any) -> dict[str, Any]:
    """A clean result of one store, as run_store returns it, with *changes*."""
    result = {
        "store": "sqlite",
        "clients": 16,
        "sessions": 4,
        "writes": 100,
        "acknowledged": 100,
        "retried": 12,
        "errors": 0,
        "lost_updates": 0,
        "read_misses": 0,
        "sessions_checked": 4,
        "sessions_on_every_worker": 4,
        "clients_on_every_worker": 16,
    }
    return result | changes


@pytest.mark.parametrize(
    ("changes", "blind", "said"),
    [
        ({}, False, None),
        ({"acknowledged": 0, "retried": 0}, False, "writes acknowledged"),
        ({"acknowledged": 40}, False, "writes acknowledged"),
        ({"retried": 0}, False, "never overlapped"),
        ({"retried": 0}, True, None),  # blind saves never conflict
        ({"clients_on_every_worker": 15}, False, "15/16 clients"),
        ({"sessions_on_every_worker": 3}, False, "3/4 sessions"),
        ({"sessions_checked": 3}, False, "not checked"),
    ],
)
def test_a_run_that_checked_too_little_fails(
    changes: dict[str, Any], blind: bool, said: str | None
) -> None:
    """A second review found runs that passed having checked nothing (all writes busy,
    clients pinned to one worker, a server down): each now fails, saying why."""
    sys.path.insert(0, str(ROOT))
    from argparse import Namespace

    from bench.load import failures

    args = Namespace(workers=2, per_session=4, blind_writes=blind)
    problems = failures(_result(**changes), args)
    if said is None:
        assert problems == []
    else:
        assert any(said in p for p in problems), problems
    assert failures({"store": "memcached", "skipped": "memcached unreachable"}, args) == [
        "not run: memcached unreachable"
    ]
