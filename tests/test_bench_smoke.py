"""The benchmark harness runs end to end in a tiny mode (no servers, no timing asserted)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from servers import REDIS_URL
from servers import ensure_server
from sqlstores import server_url

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
        assert set(status["results"]) == {
            "nosession",
            "read",
            "read-cold",
            "read-hot",
            "write",
            "new",
        }
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


def test_wire_parser_names_commands_of_each_protocol() -> None:
    """The counting proxy's parser: what the server receives, command by command."""
    sys.path.insert(0, str(ROOT))
    try:
        from bench.wire import _Parser
    finally:
        sys.path.remove(str(ROOT))
    memcached = _Parser("memcached")
    assert memcached.feed(b"set k 0 0 3\r\nab") == []  # the data block is not whole yet
    assert memcached.feed(b"c\r\ngets k\r\n") == ["set", "gets"]
    redis = _Parser("redis")
    assert redis.feed(b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n*1\r\n$4\r\nPI") == ["GET"]
    assert redis.feed(b"NG\r\n") == ["PING"]
    mysql = _Parser("mysql")
    query = b"\x03SELECT 1"
    packet = len(query).to_bytes(3, "little") + b"\x00" + query
    assert mysql.feed(packet + b"\x01\x00\x00\x00\x0e") == ["SELECT", "COM_0e"]
    pg = _Parser("postgresql")
    startup = (8).to_bytes(4, "big") + (196608).to_bytes(4, "big")

    def message(kind: bytes, body: bytes) -> bytes:
        return kind + (4 + len(body)).to_bytes(4, "big") + body

    stream = startup + message(b"Q", b"BEGIN\0") + message(b"P", b"s1\0UPDATE t\0\0\0")
    stream += message(b"B", b"\0s1\0") + message(b"E", b"\0\0\0\0\0") + message(b"S", b"")
    assert pg.feed(stream) == ["BEGIN", "UPDATE"]


def test_bench_run_quick_times_the_encryption_and_events_twins(tmp_path: Path) -> None:
    """Issues 13 and 15: the sealed and the subscribed twins run, and their section is written."""
    subjects = "bare,bare-aa,ours-memory,ours-memory-encrypt,ours-memory-events"
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
    assert {s["key"]: s["status"] for s in data["subjects"]} == dict.fromkeys(
        subjects.split(","), "ok"
    )
    targets = {t["id"]: t for t in data["targets"]}
    assert targets["encrypt-read"]["measured"].startswith("µs: memory ")
    assert targets["events-read"]["met"] is not None
    sealing = data["sealing"]  # the sealing alone: a sealed record costs more than a plain one
    assert sealing["sealed_open"] > sealing["plain_open"] > 0
    assert sealing["sealed_bytes"] > sealing["plain_bytes"]
    assert targets["encrypt-open"]["met"] is not None
    page = (tmp_path / "benchmarks.md").read_text()
    assert "### Encryption at rest and events: what they cost" in page
    assert "| memory | " in page and "| `/nosession` | " in page


def test_feature_twins_seal_records_and_subscribe(tmp_path: Path) -> None:
    """The sealed twin really writes sealed records; the other twin's app has a subscriber."""
    sys.path.insert(0, str(ROOT))
    try:
        from bench.app import make_app
        from bench.subjects import Context
        from bench.subjects import all_subjects
        from bench.wsgi import WSGIDriver
    finally:
        sys.path.remove(str(ROOT))
    from pyramid_sessionstore.sealing import SEALED_MAGIC

    subjects = {s.key: s for s in all_subjects()}
    ctx = Context(str(tmp_path))
    for key, sealed in (("ours-memory-encrypt", True), ("ours-memory", False)):
        made = subjects[key].build(ctx)
        driver = WSGIDriver(make_app(made.factory, made.subscribers), made.cookie_name)
        assert driver.call("/new").status.startswith("200")
        store = made.factory.store
        records = [store.load(k, None) for k in store.keys()]
        assert records and all(r.data.startswith(SEALED_MAGIC) == sealed for r in records), key
        made.close()
    events = subjects["ours-memory-events"].build(ctx)
    assert make_app(events.factory, events.subscribers).registry.has_listeners
    assert not make_app(events.factory).registry.has_listeners


def test_bench_hot_quick_counts_the_keys_peers_lose(tmp_path: Path) -> None:
    """Issue 11's scenario end to end: two worker processes, ours loses nothing, Beaker does."""
    done = subprocess.run(
        [sys.executable, "-m", "bench.hot", "--quick", "--rows", "ours-sqlite,beaker-file"]
        + ["--out", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    results = {
        r["row"]: r
        for r in json.loads((tmp_path / "benchmarks.json").read_text())["hot"]["results"]
    }
    for row in ("ours-sqlite", "beaker-file"):
        for phase in results[row]["phases"]:
            # Every writer held a connection to each of the two worker processes.
            assert phase["writers_on_both"] == phase["writers"], (row, phase)
            assert len(phase["workers"]) == 2 and phase["errors"] == 0, (row, phase)
    for phase in results["ours-sqlite"]["phases"]:
        assert phase["lost"] == 0 and phase["saved"] == phase["writes_sent"], phase
    # Whole-session writes with no version check: 32 writers lose keys, and the count shows it.
    assert results["beaker-file"]["phases"][1]["lost"] > 0
    page = (tmp_path / "benchmarks.md").read_text()
    assert "<!-- bench:hot -->" in page and "| **ours: sqlite** | 30 / 30 |" in page


@pytest.mark.parametrize("kind", ["postgresql", "mysql"])
def test_store_level_compares_load_save_and_refresh_with_the_driver(kind: str) -> None:
    sys.path.insert(0, str(ROOT))
    from bench import storelevel

    engine = "postgresql" if kind == "postgresql" else "mariadb"
    results = storelevel.measure({engine: server_url(kind)}, [engine], rounds=1, quick=True)
    measured = results[engine]
    assert "error" not in measured, measured
    assert set(measured) >= {"load", "save", "touch"}
    paths = {"load": {"lean"}, "save": {"lean"}, "touch": {"lean"}}
    if engine == "postgresql":  # the cursor path, and the refresh without the WAL flush
        paths = {"load": {"lean", "cursor"}, "save": {"lean", "cursor"}}
        paths["touch"] = {"lean", "unflushed"}
    for op, expected in paths.items():
        assert set(measured[op]["versus"]) == expected
        for versus in measured[op]["versus"].values():
            assert versus["raw_us"] > 0 and versus["ratio"] > 0
    page = storelevel.render(results)
    assert "`SQLStore.touch` vs the driver's UPDATE of expires_at" in page
    assert ("synchronous_commit = off" in page) == (engine == "postgresql")


def test_store_level_compares_the_redis_store_with_bare_commands() -> None:
    sys.path.insert(0, str(ROOT))
    from bench import storelevel

    ensure_server("redis", REDIS_URL, 6379)
    results = storelevel.measure({"redis": REDIS_URL}, ["redis"], rounds=1, quick=True)
    measured = results["redis"]
    assert "error" not in measured, measured
    for op in ("load", "save"):
        assert set(measured[op]["versus"]) == {"lean"}
        assert measured[op]["versus"]["lean"]["raw_us"] > 0
    page = storelevel.render(results)
    assert "`RedisStore.load` vs the driver's `GET`" in page
    assert "`RedisStore.save` vs the driver's `SET … EX`" in page
