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
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RedisServer:
    """A private ``redis-server`` we may kill, pause and restart (same port, same data dir)."""

    def __init__(self, directory: str, *, persistent: bool) -> None:
        self.port = free_port()
        self.directory = directory
        self.persistent = persistent
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        args = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                "--dir", self.directory]
        # appendfsync always: a write is on disk before its reply, so SIGKILL loses nothing acked.
        args += ["--appendonly", "yes", "--appendfsync", "always"] if self.persistent else ["--appendonly", "no"]
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

    def make(persistent: bool = True) -> RedisServer:
        directory = tmp_path / f"redis-{len(servers)}"
        directory.mkdir()
        server = RedisServer(str(directory), persistent=persistent)
        server.start()
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.stop()
