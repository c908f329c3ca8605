"""The Redis fixture's CI switch: with no Redis reachable and no redis-server to start, tests
skip, unless CACHESAVER_REQUIRE_REDIS=1 (set by .ci/run) turns the skip into a failure."""
from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
A_REDIS_TEST = "tests/redis/test_redis_store.py::test_large_append_is_one_atomic_list_write"


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("require, outcome", [("", "1 skipped"), ("1", "1 error")])
def test_no_redis_skips_unless_required(require, outcome):
    env = dict(os.environ, PATH="", PYTEST_DISABLE_PLUGIN_AUTOLOAD="1", CACHESAVER_REQUIRE_REDIS=require,
               CACHESAVER_REDIS_URL=f"redis://127.0.0.1:{_closed_port()}/0")
    command = [sys.executable, "-m", "pytest", "-p", "pytest_asyncio", "-p", "xdist", "-n", "0", "-q", "-rs",
               A_REDIS_TEST]
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert outcome in result.stdout, result.stdout[-2000:]
    assert "no Redis server reachable" in result.stdout
