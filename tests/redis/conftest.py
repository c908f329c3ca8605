"""Redis test fixtures: the shared server (via ``redis_store_factory``) and private servers.

The machine's Redis at 127.0.0.1:6379 is shared with other work: tests there use a random
prefix and never stop it. Tests that stop, pause or restart Redis start their own
``redis-server`` on a free port in a temp dir (``own_redis``).
"""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time

import pytest
import redis as redis_sync


def _require_or_skip(message: str) -> None:
    if os.environ.get("CACHESAVER_REQUIRE_REDIS") == "1":
        pytest.fail(message + " (CACHESAVER_REQUIRE_REDIS=1)")
    pytest.skip(message)


@pytest.fixture
def redis_url(redis_store_factory) -> str:
    """URL of the shared test Redis (keys must use ``redis_prefix``)."""
    return redis_store_factory.url


@pytest.fixture
def redis_prefix(redis_store_factory) -> str:
    """A fresh random prefix; ``redis_store_factory`` deletes its keys after the test."""
    return redis_store_factory.prefix


def free_port() -> int:
    """A free port whose cluster-bus twin (port + 10000) is free too."""
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port + 10000 > 65535:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port + 10000))
            except OSError:
                continue
        return port


class RedisServer:
    """A private ``redis-server`` we may kill, pause and restart (same port, same data dir)."""

    def __init__(self, directory: str, *, persistent: bool, cluster: bool = False, debug: bool = False) -> None:
        self.port = free_port()
        self.directory = directory
        self.persistent = persistent
        self.cluster = cluster
        self.debug = debug  # DEBUG SLEEP allowed: busy, yet running what was sent once it wakes
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        args = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                "--dir", self.directory]
        # appendfsync always: a write is on disk before its reply, so SIGKILL loses nothing acked.
        args += ["--appendonly", "yes", "--appendfsync", "always"] if self.persistent else ["--appendonly", "no"]
        if self.cluster:
            args += ["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf"]
        if self.debug:
            args += ["--enable-debug-command", "yes"]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with redis_sync.Redis(port=self.port, socket_timeout=0.5, socket_connect_timeout=0.5) as r:
                    if r.ping():
                        return
            except redis_sync.RedisError:
                time.sleep(0.02)
        raise RuntimeError(f"redis-server did not start on port {self.port}")

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(10)
        self.proc = None

    def pause(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.kill()
            self.proc.wait(10)
            self.proc = None


@pytest.fixture
def own_redis(tmp_path):
    """Factory of private Redis servers (persistent=True: AOF, survives SIGKILL + restart)."""
    if not shutil.which("redis-server"):
        _require_or_skip("redis-server binary not found; cannot start a private Redis")
    servers: list[RedisServer] = []

    def make(persistent: bool = True, debug: bool = False) -> RedisServer:
        directory = tmp_path / f"redis-{len(servers)}"
        directory.mkdir()
        server = RedisServer(str(directory), persistent=persistent, debug=debug)
        server.start()
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.stop()


@pytest.fixture(scope="module")
def own_redis_cluster(tmp_path_factory):
    """A private 3-primary Redis Cluster; yields the URL of one node (add ``?cluster=1``)."""
    if not (shutil.which("redis-server") and shutil.which("redis-cli")):
        _require_or_skip("redis-server/redis-cli not found; cannot start a Redis Cluster")
    servers = []
    try:
        for i in range(3):
            directory = tmp_path_factory.mktemp(f"cluster-{i}")
            server = RedisServer(str(directory), persistent=False, cluster=True)
            server.start()
            servers.append(server)
        subprocess.run(
            ["redis-cli", "--cluster", "create", *[f"127.0.0.1:{s.port}" for s in servers],
             "--cluster-replicas", "0", "--cluster-yes"],
            check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=60)
        deadline = time.monotonic() + 30
        while True:
            states = []
            for server in servers:
                with redis_sync.Redis(port=server.port) as r:
                    states.append(b"cluster_state:ok" in r.execute_command("CLUSTER", "INFO"))
            if all(states):
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"cluster did not become ready: {states}")
            time.sleep(0.05)
        yield servers[0].url
    finally:
        for server in servers:
            server.stop()
