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
