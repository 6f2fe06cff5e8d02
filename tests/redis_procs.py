"""Private Redis processes for the Redis store tests: a server, a Cluster, a Sentinel set.

Each runs ``redis-server`` on free loopback ports in a temporary directory,
without persistence, and is killed at teardown. Start-up is bounded; when
``redis-server`` is missing the tests skip (or fail under
``SESSIONSTORE_REQUIRE_SERVERS=1``). Registered for every test module by ``tests/conftest.py``.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import time
from collections.abc import Callable
from collections.abc import Iterator
from dataclasses import dataclass
from dataclasses import field
from pathlib import Path

import pytest
import redis

from servers import REDIS_URL
from servers import ensure_server
from servers import free_port
from servers import unavailable

START_TIMEOUT = 20.0


def _wait(check: Callable[[], object], what: str, timeout: float = START_TIMEOUT) -> None:
    """Poll *check* (errors count as "not yet") until it is truthy, or fail naming *what*."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if check():
                return
        except (redis.RedisError, OSError):
            pass  # not up yet; poll again until the deadline
        if time.monotonic() > deadline:
            pytest.fail(f"{what} not ready within {timeout}s", pytrace=False)
        time.sleep(0.05)


@dataclass
class RedisProcess:
    """One ``redis-server`` process on a fixed loopback port; restartable."""

    directory: Path
    #: Options after the standard ones, e.g. ``["--cluster-enabled", "yes"]``.
    options: list[str] = field(default_factory=list)
    #: A config file to start from (Sentinel needs one it can rewrite).
    config: str | None = None
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.port, socket_timeout=2, socket_connect_timeout=2)

    def start(self) -> RedisProcess:
        """Start the process and wait until it answers PING."""
        if shutil.which("redis-server") is None:
            unavailable("redis-server is not installed")
        self.directory.mkdir(parents=True, exist_ok=True)
        log_path = self.directory / f"redis-{self.port}.log"
        with open(log_path, "ab") as log:  # the child keeps its own descriptor
            self.proc = subprocess.Popen(
                ["redis-server", *([self.config] if self.config else [])]
                + ["--port", str(self.port), "--bind", "127.0.0.1", "--save", ""]
                + ["--appendonly", "no", "--daemonize", "no", "--dir", str(self.directory)]
                + self.options,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        proc = self.proc

        def answering() -> object:
            if proc.poll() is not None:  # e.g. the port was taken meanwhile: say so at once
                tail = log_path.read_text(errors="replace")[-2000:]
                pytest.fail(f"redis-server on port {self.port} exited: {tail}", pytrace=False)
            return ping.ping()

        with self.client() as ping:
            _wait(answering, f"redis-server on port {self.port}")
        return self

    def stop(self, sig: int = signal.SIGTERM) -> None:
        """Stop the process (SIGKILL simulates a crash) and wait for it to exit."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None


@pytest.fixture
def redis_url() -> str:
    """The shared standalone server (``REDIS_URL``, db 15), started if it is stopped."""
    ensure_server("redis", REDIS_URL, 6379)
    return REDIS_URL


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[RedisProcess]:
    """A standalone redis-server of this test alone (stop it, restart it)."""
    server = RedisProcess(tmp_path / "redis").start()
    yield server
    server.stop(signal.SIGKILL)


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Start a Cluster of three masters without replicas; yield a node's URL."""
    if shutil.which("redis-cli") is None:
        unavailable("redis-cli is not installed (needed to create a Cluster)")
    directory = tmp_path_factory.mktemp("redis-cluster")
    nodes: list[RedisProcess] = []
    try:
        for _ in range(3):
            bus = free_port()  # an explicit bus port: port + 10000 may not exist
            options = ["--cluster-enabled", "yes", "--cluster-port", str(bus)]
            options += ["--cluster-config-file", f"nodes-{bus}.conf"]
            options += ["--cluster-node-timeout", "2000"]
            nodes.append(RedisProcess(directory, options).start())
        create = ["redis-cli", "--cluster", "create", *(f"127.0.0.1:{n.port}" for n in nodes)]
        done = subprocess.run(
            [*create, "--cluster-replicas", "0", "--cluster-yes"],
            capture_output=True,
            timeout=START_TIMEOUT,
            check=False,
        )
        if done.returncode != 0:
            pytest.fail(f"redis-cli --cluster create failed: {done.stdout!r} {done.stderr!r}")
        for node in nodes:
            with node.client() as c:
                _wait(lambda c=c: _cluster_ok(c), "cluster")
        yield nodes[0].url
    finally:
        for node in nodes:
            node.stop(signal.SIGKILL)


@dataclass
class SentinelSet:
    """A master, its replica and one Sentinel watching them."""

    master: RedisProcess
    replica: RedisProcess
    sentinel: RedisProcess
    service_name: str = "pss-master"

    @property
    def sentinels(self) -> list[str]:
        return [f"127.0.0.1:{self.sentinel.port}"]


@pytest.fixture(scope="session")
def redis_sentinel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SentinelSet]:
    """Start a master, a replica and a Sentinel with a 1 s down-after; yield them."""
    directory = tmp_path_factory.mktemp("redis-sentinel")
    # No 5 s wait for more replicas before the first full sync.
    master = RedisProcess(directory, ["--repl-diskless-sync-delay", "0"])
    replica = RedisProcess(directory, ["--repl-diskless-sync-delay", "0"])
    sentinel = RedisProcess(directory)
    try:
        master.start()
        replica.options += ["--replicaof", "127.0.0.1", str(master.port)]
        replica.start()
        with replica.client() as c:
            _wait(lambda: c.info("replication")["master_link_status"] == "up", "replica")
        name = "pss-master"
        config = directory / "sentinel.conf"
        config.write_text(
            f"sentinel monitor {name} 127.0.0.1 {master.port} 1\n"
            f"sentinel down-after-milliseconds {name} 1000\n"
            f"sentinel failover-timeout {name} 4000\n"
            f"sentinel parallel-syncs {name} 1\n"
        )
        sentinel.config, sentinel.options = str(config), ["--sentinel"]
        sentinel.start()
        with sentinel.client() as c:

            def replica_known() -> bool:
                replicas = c.sentinel_slaves(name)
                return any(r["is_slave"] and not r["is_disconnected"] for r in replicas)

            _wait(replica_known, "sentinel")
        yield SentinelSet(master, replica, sentinel, name)
    finally:
        for process in (sentinel, replica, master):
            process.stop(signal.SIGKILL)


def _cluster_ok(client: redis.Redis) -> bool:
    return bool(client.execute_command("CLUSTER INFO")["cluster_state"] == "ok")
