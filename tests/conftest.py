"""Shared fixtures: stores of every kind, the fake model and the local OpenAI-compatible server.

Nothing here reaches the internet: litellm reads its bundled cost map, the server binds to
127.0.0.1, Redis is the local server (or one started for the session).
"""
from __future__ import annotations

import os

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

import pytest

from cachesaver.stores import DiskStore, MemoryStore
from cachesaver.testing import FakeModel

STORE_KINDS = ["memory", "disk", "redis"]


@pytest.fixture
def fake_model() -> FakeModel:
    return FakeModel(seed=1)


@pytest.fixture
def cache_dir(tmp_path) -> str:
    return str(tmp_path / "cache")


@pytest.fixture(params=STORE_KINDS)
def store_kind(request) -> str:
    return request.param


@pytest.fixture
def make_store(store_kind, tmp_path, request):
    """Factory returning a fresh store of the parametrised kind (several calls share one backend)."""
    made = []

    def factory():
        if store_kind == "memory":
            if made:
                return made[0]
            store = MemoryStore()
        elif store_kind == "disk":
            store = DiskStore(str(tmp_path / "disk-store"))
        else:
            redis_store = request.getfixturevalue("redis_store_factory")
            store = redis_store()
        made.append(store)
        return store

    yield factory
    for store in made:
        try:
            store.close()
        except Exception:
            pass


@pytest.fixture
def store(make_store):
    return make_store()


@pytest.fixture
def fake_server():
    from cachesaver.testing.server import FakeOpenAIServer

    with FakeOpenAIServer(seed=7) as server:
        yield server


def pytest_configure(config):
    config.addinivalue_line("markers", "redis: needs a Redis server")


@pytest.fixture
def redis_store_factory(request, tmp_path_factory):
    """Factory of RedisStore objects sharing one random key prefix; deletes only those keys after.

    Redis: ``$CACHESAVER_REDIS_URL``, else 127.0.0.1:6379, else a ``redis-server`` started for
    the session on a free port, else skip (a failure when ``CACHESAVER_REQUIRE_REDIS=1``, as
    in CI). ``factory.url`` and ``factory.prefix`` say where the stores live.
    """
    import shutil
    import socket
    import subprocess
    import time
    import uuid

    import redis as redis_sync

    from cachesaver.stores.redis import RedisStore

    def ping(url):
        try:
            with redis_sync.Redis.from_url(url, socket_timeout=1, socket_connect_timeout=1) as r:
                return bool(r.ping())
        except redis_sync.RedisError:
            return False

    url = getattr(request.config, "_cachesaver_redis_url", None)
    if url is None:
        url = os.environ.get("CACHESAVER_REDIS_URL", "redis://127.0.0.1:6379/0")
        if not ping(url) and shutil.which("redis-server"):
            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                port = s.getsockname()[1]
            workdir = tmp_path_factory.mktemp("redis-server")
            proc = subprocess.Popen(
                ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                 "--appendonly", "no", "--dir", str(workdir)],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            request.config.add_cleanup(lambda: (proc.terminate(), proc.wait(10)))
            url = f"redis://127.0.0.1:{port}/0"
            for _ in range(100):
                if ping(url):
                    break
                time.sleep(0.05)
        if not ping(url):
            message = f"no Redis server reachable at {url} and no redis-server binary to start one"
            if os.environ.get("CACHESAVER_REQUIRE_REDIS") == "1":
                pytest.fail(message + " (CACHESAVER_REQUIRE_REDIS=1)")
            pytest.skip(message)
        request.config._cachesaver_redis_url = url

    prefix = f"cstest-{uuid.uuid4().hex[:12]}"
    made = []

    def factory(**kwargs):
        store = RedisStore(url, prefix=prefix, **kwargs)
        made.append(store)
        return store

    factory.url, factory.prefix = url, prefix
    yield factory
    for store in made:
        store.close()
    with redis_sync.Redis.from_url(url) as r:
        names = list(r.scan_iter(match=prefix + ":*", count=1000))
        for i in range(0, len(names), 500):
            r.unlink(*names[i:i + 500])


@pytest.fixture
def litellm_globals_restored():
    """litellm's process-wide state as it was: no cachesaver provider, no ``litellm.cache``, no
    callbacks a test added (litellm is imported here, so only tests that ask for it pay for it)."""
    import litellm

    import cachesaver_litellm

    litellm.suppress_debug_info = True
    callbacks = list(litellm.callbacks)
    yield
    cachesaver_litellm.unregister()
    litellm.cache = None
    litellm.callbacks = callbacks
    for name in ("success_callback", "failure_callback", "_async_success_callback",
                 "_async_failure_callback", "input_callback"):
        lst = getattr(litellm, name)
        lst[:] = [cb for cb in lst if not isinstance(cb, litellm.integrations.custom_logger.CustomLogger)
                  or cb in callbacks]


@pytest.fixture
def store_path(tmp_path) -> str:
    """A fresh store directory (the adapters' tests register on it)."""
    return str(tmp_path / "store")


@pytest.fixture
def server(fake_server):
    """The local OpenAI-compatible server, under the name the adapter tests use."""
    return fake_server


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    """Under pytest-xdist, keep each heavy session fixture on one worker: every test of the
    LiteLLM Proxy fleet (two proxy processes per worker otherwise) runs on the same worker."""
    for item in items:
        if "/tests/proxy/" in str(item.fspath).replace(os.sep, "/"):
            item.add_marker(pytest.mark.xdist_group("proxy"))
