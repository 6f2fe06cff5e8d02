"""FileStore: settings, on-disk layout, corrupt files, crashes, several processes."""

from __future__ import annotations

import logging
import math
import os
import random
import socket
import stat
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from clocks import FakeClock
from embedded_workers import Zygote
from embedded_workers import is_intact
from embedded_workers import payload
from pyramid_sessionstore.exceptions import ConfigurationError
from pyramid_sessionstore.exceptions import ConflictError
from pyramid_sessionstore.exceptions import StoreUnavailableError
from pyramid_sessionstore.stores import FileStore
from pyramid_sessionstore.stores import Store
from pyramid_sessionstore.stores.registry import build_store
from pyramid_sessionstore.testing import new_key

WORKERS = str(Path(__file__).parent / "embedded_workers.py")


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def store(tmp_path: Path, clock: FakeClock) -> Iterator[FileStore]:
    store = FileStore(path=tmp_path / "sessions", clock=clock)
    yield store
    store.close()


def record_file(store: FileStore, key: str) -> Path:
    return Path(store.path, key[:2], key[2:4], key)


# -- settings -------------------------------------------------------------------


def test_settings_round_trip_every_option(tmp_path: Path) -> None:
    settings = {
        "session.file.path": str(tmp_path / "s"),
        "session.file.mode": "0640",
        "session.file.shard_depth": "1",
        "session.file.fsync": "false",
    }
    store = build_store("file", settings)
    assert isinstance(store, FileStore)
    assert (store.path, store.mode, store.shard_depth, store.fsync) == (
        str(tmp_path / "s"),
        0o640,
        1,
        False,
    )
    assert set(FileStore.OPTIONS) == {k.rsplit(".", 1)[1] for k in settings}
    key = new_key()
    store.save(key, b"x", 60, None)
    mode = stat.S_IMODE(os.stat(Path(store.path, key[:2], key)).st_mode)
    assert mode == 0o640 & ~current_umask()


def current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@pytest.mark.parametrize(
    ("option", "value"),
    [("mode", "rw-r--r--"), ("shard_depth", "two"), ("fsync", "maybe")],
)
def test_bad_setting_value_names_the_setting(tmp_path: Path, option: str, value: str) -> None:
    settings = {"session.file.path": str(tmp_path), f"session.file.{option}": value}
    with pytest.raises(ConfigurationError) as info:
        build_store("file", settings)
    assert info.value.setting == f"session.file.{option}"


def test_missing_path_setting_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="path"):
        build_store("file", {})


def test_shard_depth_out_of_range_is_a_configuration_error(tmp_path: Path) -> None:
    settings = {"session.file.path": str(tmp_path), "session.file.shard_depth": "5"}
    with pytest.raises(ConfigurationError, match="shard_depth"):
        build_store("file", settings)


def test_directory_is_created(tmp_path: Path) -> None:
    FileStore(path=tmp_path / "a" / "b" / "c")
    assert (tmp_path / "a" / "b" / "c").is_dir()


def test_uncreatable_directory_raises_unavailable_naming_it(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a directory")
    with pytest.raises(StoreUnavailableError, match=str(tmp_path / "file")) as info:
        FileStore(path=tmp_path / "file" / "sessions")
    assert isinstance(info.value.__cause__, OSError)


def test_directory_replaced_by_a_file_raises_unavailable_on_use(tmp_path: Path) -> None:
    store = FileStore(path=tmp_path / "s")
    key = new_key()
    store.save(key, b"x", 60, None)
    os.rename(tmp_path / "s", tmp_path / "moved")
    (tmp_path / "s").write_text("not a directory")
    for call in (store.delete_expired, store.count):
        with pytest.raises(StoreUnavailableError, match=str(tmp_path / "s")):
            call()


@pytest.mark.parametrize("shard_depth", [0, 1, 2])
def test_directory_replaced_by_a_file_is_unavailable_not_a_miss(
    tmp_path: Path, shard_depth: int
) -> None:
    store = FileStore(path=tmp_path / "s", shard_depth=shard_depth)
    key = new_key()
    store.save(key, b"x", 60, None)
    os.rename(tmp_path / "s", tmp_path / "moved")
    (tmp_path / "s").write_text("not a directory")
    for call in (
        lambda: store.load(key, 60),
        lambda: store.touch(key, 60),
        lambda: store.save(key, b"y", 60, None),
        lambda: store.delete(key),
    ):
        with pytest.raises(StoreUnavailableError, match=str(tmp_path / "s")):
            call()


def test_key_that_is_not_a_file_name_is_refused(store: FileStore) -> None:
    with pytest.raises(ValueError):
        store.load("../../etc/passwd", 60)


# -- layout and expiry ------------------------------------------------------------


def test_record_is_one_file_in_sharded_directories(store: FileStore) -> None:
    key = new_key()
    store.save(key, b"data", 60, None)
    assert record_file(store, key).read_bytes().endswith(b"data")
    assert not Path(f"{record_file(store, key)}.lock").exists()  # only there while held
    store.delete(key)
    assert list(Path(store.path).rglob(f"{key}*")) == []


def test_shard_depth_zero_keeps_a_flat_directory(tmp_path: Path) -> None:
    store = FileStore(path=tmp_path, shard_depth=0)
    keys = {new_key() for _ in range(3)}
    for key in keys:
        store.save(key, b"x", 60, None)
    assert {p.name for p in tmp_path.iterdir() if "." not in p.name} == keys
    assert set(store.keys()) == keys


def test_load_refreshes_expiry_in_place(store: FileStore, clock: FakeClock) -> None:
    key = new_key()
    version = store.save(key, b"data", 10, None)
    inode = record_file(store, key).stat().st_ino
    clock.now += 8
    assert store.load(key, 10) == (b"data", version)
    clock.now += 8  # 16s after the save, 8s after the load
    assert store.load(key, 10) == (b"data", version)
    assert record_file(store, key).stat().st_ino == inode  # not rewritten
    clock.now += 11
    assert store.load(key, 10) is None
    assert store.touch(key, 10) is False


def test_load_with_ttl_none_makes_the_record_permanent(store: FileStore, clock: FakeClock) -> None:
    key = new_key()
    store.save(key, b"data", 10, None)
    assert store.load(key, None) is not None
    clock.now += 10**9
    assert store.load(key, None) is not None
    assert store.delete_expired() == 0


def test_create_over_expired_record_succeeds(store: FileStore, clock: FakeClock) -> None:
    key = new_key()
    store.save(key, b"old", 10, None)
    clock.now += 11
    version = store.save(key, b"new", 10, None)
    assert store.load(key, 10) == (b"new", version)


# -- corrupt files -----------------------------------------------------------------


def corrupt_truncated(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:-1])


def corrupt_flipped_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))


def corrupt_foreign(path: Path) -> None:
    path.write_bytes(b"not a record at all")


def corrupt_empty(path: Path) -> None:
    path.write_bytes(b"")


@pytest.mark.parametrize(
    "corrupt", [corrupt_truncated, corrupt_flipped_byte, corrupt_foreign, corrupt_empty]
)
def test_corrupt_record_is_logged_removed_and_a_miss(
    store: FileStore, caplog: pytest.LogCaptureFixture, corrupt: object
) -> None:
    key = new_key()
    store.save(key, b"some session data", 60, None)
    assert callable(corrupt)
    corrupt(record_file(store, key))
    with caplog.at_level(logging.WARNING, logger="pyramid_sessionstore.security"):
        assert store.load(key, 60) is None
    assert [r.name for r in caplog.records] == ["pyramid_sessionstore.security"]
    assert str(record_file(store, key)) in caplog.records[0].getMessage()
    assert not record_file(store, key).exists()
    assert store.save(key, b"fresh", 60, None)


def test_corrupt_record_counts_as_absent_on_create(store: FileStore) -> None:
    key = new_key()
    store.save(key, b"x", 60, None)
    corrupt_foreign(record_file(store, key))
    version = store.save(key, b"fresh", 60, None)
    assert store.load(key, 60) == (b"fresh", version)


def corrupt_nan_expiry(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[8:16] = struct.pack("<d", math.nan)  # the expiry is outside the checksum
    path.write_bytes(bytes(data))


def test_a_nan_expiry_is_corrupt_not_immortal(store: FileStore, clock: FakeClock) -> None:
    key, other = new_key(), new_key()
    for k in (key, other):
        store.save(k, b"x", 60, None)
        corrupt_nan_expiry(record_file(store, k))
    assert store.count() == 0
    assert store.load(key, 60) is None and not record_file(store, key).exists()
    clock.now += 10**6
    assert store.delete_expired() == 1 and not record_file(store, other).exists()


# -- things that are not record files (issue 10, item 9) ---------------------------


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A directory beside the store, with a file, that the store must never touch."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "precious").write_bytes(b"not the store's")
    return outside


def untouched(outside: Path) -> bool:
    return [p.name for p in outside.iterdir()] == ["precious"] and (
        outside / "precious"
    ).read_bytes() == b"not the store's"


def make_empty_directory(path: Path, outside: Path) -> None:
    path.mkdir()


def make_full_directory(path: Path, outside: Path) -> None:
    (path / "sub").mkdir(parents=True)
    (path / "sub" / "file").write_bytes(b"x")
    (path / "link").symlink_to(outside)  # rmtree removes the link, not what it points to


def make_fifo(path: Path, outside: Path) -> None:
    os.mkfifo(path)


def make_socket(path: Path, outside: Path) -> None:
    cwd = os.getcwd()
    os.chdir(path.parent)  # a socket's path is limited to about 100 bytes
    try:
        with socket.socket(socket.AF_UNIX) as sock:
            sock.bind(path.name)
    finally:
        os.chdir(cwd)


def make_dangling_symlink(path: Path, outside: Path) -> None:
    path.symlink_to(outside / "nothing")


def make_symlink_to_a_file(path: Path, outside: Path) -> None:
    path.symlink_to(outside / "precious")


def make_symlink_to_a_record(path: Path, outside: Path) -> None:
    """A symlink to a valid record file outside the store: still never followed."""
    key = new_key()
    FileStore(path=outside / "other").save(key, b"elsewhere", 60, None)
    path.symlink_to(next((outside / "other").rglob(key)))


def make_symlink_to_a_directory(path: Path, outside: Path) -> None:
    path.symlink_to(outside)


NOT_FILES = [
    make_empty_directory,
    make_full_directory,
    make_fifo,
    make_socket,
    make_dangling_symlink,
    make_symlink_to_a_file,
    make_symlink_to_a_record,
    make_symlink_to_a_directory,
]


@pytest.fixture(params=NOT_FILES, ids=lambda f: f.__name__[5:])
def not_a_file(request: pytest.FixtureRequest, store: FileStore, outside: Path) -> Iterator[str]:
    """Return a key whose record path holds something that is not a record file."""
    key = new_key()
    path = record_file(store, key)
    path.parent.mkdir(parents=True)
    request.param(path, outside)
    before = {p: p.read_bytes() for p in outside.rglob("*") if p.is_file()}
    yield key
    assert {p: p.read_bytes() for p in outside.rglob("*") if p.is_file()} == before


def test_not_a_file_at_a_record_path_is_logged_removed_and_a_miss(
    store: FileStore, caplog: pytest.LogCaptureFixture, not_a_file: str
) -> None:
    with caplog.at_level(logging.WARNING, logger="pyramid_sessionstore.security"):
        assert store.load(not_a_file, 60) is None
    assert f"removed {record_file(store, not_a_file)}: corrupt record, or not a file" in caplog.text
    assert not os.path.lexists(record_file(store, not_a_file))
    assert store.load(not_a_file, 60) is None


def test_not_a_file_at_a_record_path_is_never_touched_nor_updated(
    store: FileStore, not_a_file: str
) -> None:
    assert store.touch(not_a_file, 60) is False
    with pytest.raises(ConflictError):
        store.save(not_a_file, b"mine", 60, "00" * 16)
    assert store.count() == 0 and list(store.keys()) == []


def test_a_create_replaces_what_is_not_a_file(store: FileStore, not_a_file: str) -> None:
    version = store.save(not_a_file, b"fresh", 60, None)
    assert store.load(not_a_file, 60) == (b"fresh", version)
    assert record_file(store, not_a_file).is_file()
    assert not record_file(store, not_a_file).is_symlink()


def test_delete_removes_what_is_not_a_file(store: FileStore, not_a_file: str) -> None:
    store.delete(not_a_file)
    assert not os.path.lexists(record_file(store, not_a_file))


def test_delete_expired_removes_what_is_not_a_file(
    store: FileStore, not_a_file: str, outside: Path
) -> None:
    assert store.delete_expired() == 1
    assert not os.path.lexists(record_file(store, not_a_file))


@pytest.mark.parametrize("maker", NOT_FILES, ids=lambda f: f.__name__[5:])
def test_not_a_file_at_a_lock_path_is_removed_by_the_next_write(
    store: FileStore, outside: Path, maker: Any
) -> None:
    key = new_key()
    lock = Path(f"{record_file(store, key)}.lock")
    lock.parent.mkdir(parents=True)
    maker(lock, outside)
    before = {p: p.read_bytes() for p in outside.rglob("*") if p.is_file()}
    version = store.save(key, b"x", 60, None)
    assert store.load(key, 60) == (b"x", version)
    assert not os.path.lexists(lock)
    assert {p: p.read_bytes() for p in outside.rglob("*") if p.is_file()} == before


@pytest.mark.parametrize("depth", [1, 2])
@pytest.mark.parametrize("kind", ["file", "symlink"])
def test_a_shard_that_is_not_a_directory_is_replaced_by_the_next_write(
    store: FileStore, outside: Path, depth: int, kind: str
) -> None:
    key = new_key()
    shard = record_file(store, key).parents[2 - depth]
    shard.parent.mkdir(parents=True, exist_ok=True)
    if kind == "file":
        shard.write_bytes(b"not a directory")
    else:
        shard.symlink_to(outside, target_is_directory=True)  # would lead out of the store
    assert store.load(key, 60) is None and store.touch(key, 60) is False
    store.delete(key)
    version = store.save(key, b"x", 60, None)
    assert store.load(key, 60) == (b"x", version)
    assert shard.is_dir() and not shard.is_symlink() and untouched(outside)
    assert store.delete_expired() == 0 and list(store.keys()) == [key]


def test_gc_and_keys_never_reach_through_a_symlinked_shard(store: FileStore, outside: Path) -> None:
    elsewhere = FileStore(path=outside / "other", shard_depth=0)
    elsewhere.save(new_key(), b"another store's record", 60, None)
    (outside / "other" / "notes").write_bytes(b"a file without a dot, not a record")
    key = new_key()
    shard = record_file(store, key).parent
    shard.parent.mkdir(parents=True)
    shard.symlink_to(outside / "other", target_is_directory=True)
    before = sorted((p.name, p.read_bytes()) for p in outside.rglob("*") if p.is_file())
    assert store.count() <= 1  # a valid record seen through the link is not touched
    assert store.delete_expired() == 0
    assert sorted((p.name, p.read_bytes()) for p in outside.rglob("*") if p.is_file()) == before
    assert not shard.is_symlink()  # replaced by a directory of the store's own


def test_delete_expired_removes_corrupt_records_and_leftovers(
    store: FileStore, caplog: pytest.LogCaptureFixture, clock: FakeClock
) -> None:
    live, dead, broken, orphan = new_key(), new_key(), new_key(), new_key()
    store.save(live, b"x", 600, None)
    store.save(dead, b"x", 10, None)
    store.save(broken, b"x", 600, None)
    corrupt_truncated(record_file(store, broken))
    shard = record_file(store, live).parent
    fresh_tmp, old_tmp = shard / f"{live}.aaaa.tmp", shard / f"{live}.bbbb.tmp"
    fresh_tmp.write_bytes(b"half a write")
    old_tmp.write_bytes(b"half a write")
    old = time.time() - FileStore.TEMP_MAX_AGE - 10
    os.utime(old_tmp, (old, old))
    orphan_lock = Path(f"{record_file(store, orphan)}.lock")
    orphan_lock.parent.mkdir(parents=True, exist_ok=True)
    orphan_lock.write_bytes(b"")
    clock.now += 11
    with caplog.at_level(logging.WARNING, logger="pyramid_sessionstore.security"):
        assert store.delete_expired() == 2
    assert "corrupt" in caplog.text
    assert set(store.keys()) == {live}
    assert fresh_tmp.exists() and not old_tmp.exists() and not orphan_lock.exists()


def test_keys_skip_temp_and_lock_files(store: FileStore) -> None:
    key = new_key()
    store.save(key, b"x", 60, None)
    Path(f"{record_file(store, key)}.cafe.tmp").write_bytes(b"")
    Path(f"{record_file(store, key)}.lock").write_bytes(b"")
    assert list(store.keys()) == [key]
    assert store.count() == 1


def test_store_satisfies_protocol(store: FileStore) -> None:
    typed: Store = store
    assert isinstance(typed, Store)
    assert repr(store) == f"FileStore(path={store.path!r}, shard_depth=2)"


# -- several processes ----------------------------------------------------------------


@pytest.mark.slow
def test_compare_and_set_increments_across_processes_are_exact(tmp_path: Path) -> None:
    store, key = FileStore(path=tmp_path), new_key()
    store.save(key, b"0", 600, None)
    argv = [sys.executable, WORKERS, "file", str(tmp_path), "increment", key, "50"]
    workers = [subprocess.Popen(argv) for _ in range(4)]
    assert [w.wait(timeout=120) for w in workers] == [0, 0, 0, 0]
    record = store.load(key, 600)
    assert record is not None and record.data == b"200"


@pytest.mark.slow
def test_writer_killed_mid_write_never_leaves_a_torn_record(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = FileStore(path=tmp_path)
    keys = [new_key() for _ in range(4)]
    for n, key in enumerate(keys):
        store.save(key, payload(n, 100), 600, None)
    zygote, rng, interrupted = Zygote("file", str(tmp_path), keys), random.Random(1), 0
    try:
        with caplog.at_level(logging.WARNING, logger="pyramid_sessionstore.security"):
            for _ in range(30):
                zygote.kill_writer_after(rng.uniform(0.002, 0.05))
                leftovers = list(tmp_path.rglob("*.tmp"))
                interrupted += bool(leftovers)
                for key in keys:  # updated, never deleted: always there, never torn
                    record = store.load(key, 600)
                    assert record is not None and is_intact(record.data)
                for leftover in leftovers:  # as if the dead writer had died long ago
                    os.utime(leftover, (0, 0))
                assert store.delete_expired() == 0
                assert list(tmp_path.rglob("*.tmp")) == []
                assert list(tmp_path.rglob("*.lock")) == []
    finally:
        zygote.close()
    assert caplog.records == []
    assert interrupted > 0  # some kills did land mid-write
