"""The benchmark harness runs end to end in a tiny mode (no servers, no timing asserted)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_bench_run_quick_writes_table_and_checks_factories(tmp_path: Path) -> None:
    subjects = "bare,ours-memory,signedcookie"
    done = subprocess.run(
        [sys.executable, "-m", "bench.run", "--quick", "--only", subjects, "--out", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    data = json.loads((tmp_path / "benchmarks.json").read_text())["run"]
    statuses = {s["key"]: s for s in data["subjects"]}
    assert set(statuses) == set(subjects.split(","))
    # Every factory passed the /write-then-/read check and was timed.
    for key, status in statuses.items():
        assert status["status"] == "ok", (key, status["reason"])
        assert set(status["results"]) == {"nosession", "read", "read-hot", "write", "new"}
    page = (tmp_path / "benchmarks.md").read_text()
    assert "<!-- bench:run -->" in page and "<!-- /bench:load -->" in page
    assert "| **ours: memory** | memory |" in page
    assert "Pyramid SignedCookieSessionFactory (JSON)" in page
    assert "### Targets" in page


def test_bench_profile_steps_still_name_real_code() -> None:
    """``--steps`` calls our internals by name: it must follow them when they move."""
    done = subprocess.run(
        [sys.executable, "-m", "bench.profile", "ours-memory", "--steps"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "| factory(request): the whole load |" in done.stdout
