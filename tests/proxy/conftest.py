"""Fixtures for the LiteLLM Proxy tests: one fake upstream and two real proxy processes per session.

Both proxies run ``examples/proxy/config.yaml`` on one store with one shared run (a fleet of two
replicas): a Redis store under a random key prefix when Redis is reachable, else a shared disk
directory (the fleet test then skips, or fails under ``CACHESAVER_REQUIRE_REDIS=1``). They are
started together, once, on first use: a proxy process takes seconds to import, so every test
uses its own prompts and namespaces instead of its own process.
"""
from __future__ import annotations

import os
import uuid

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

import pytest

from _proxy_helpers import MASTER_KEY, ProxyProcess, build_test_config, proxy_env

#: The batch window of the test proxies: wide enough that concurrent HTTP requests, each
#: going through the proxy's auth and routing first, meet in one batch on a loaded machine.
BATCH_TIMEOUT = 0.25


def _redis_url() -> str | None:
    try:
        import redis
    except ImportError:
        return None
    url = os.environ.get("CACHESAVER_REDIS_URL", "redis://127.0.0.1:6379/0")
    try:
        with redis.Redis.from_url(url, socket_timeout=1, socket_connect_timeout=1) as r:
            r.ping()
    except redis.RedisError:
        return None
    return url


class Fleet:
    def __init__(self, proxies, store: str, redis_url: str | None, redis_prefix: str | None, store_dir) -> None:
        self.proxies = proxies
        self.store = store
        self.redis_url = redis_url
        self.redis_prefix = redis_prefix
        self.store_dir = store_dir


@pytest.fixture(scope="session")
def upstream():
    from cachesaver.testing.server import FakeOpenAIServer

    with FakeOpenAIServer(seed=23) as server:
        yield server


@pytest.fixture(scope="session")
def fleet(upstream, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("litellm-proxy")
    redis_url = _redis_url()
    prefix = store_dir = None
    if redis_url is not None:
        prefix = f"cstest-proxy-{uuid.uuid4().hex[:12]}"
        store = f"{redis_url}?prefix={prefix}"
    else:
        store_dir = workdir / "store"
        store = str(store_dir)
    env = proxy_env(upstream=upstream.base_url, store=store, run_id=f"proxy-tests-{uuid.uuid4().hex[:8]}",
                    batch_timeout=BATCH_TIMEOUT)
    config = build_test_config(workdir)
    proxies = [ProxyProcess(f"proxy{i}", workdir, config, env).start() for i in (1, 2)]
    try:
        for proxy in proxies:
            proxy.wait_ready()
        yield Fleet(proxies, store, redis_url, prefix, store_dir)
    finally:
        for proxy in proxies:
            proxy.stop()
        if redis_url is not None:
            import redis

            with redis.Redis.from_url(redis_url) as r:
                names = list(r.scan_iter(match=prefix + ":*", count=1000))
                for i in range(0, len(names), 500):
                    r.unlink(*names[i:i + 500])


@pytest.fixture(scope="session")
def proxy(fleet) -> ProxyProcess:
    return fleet.proxies[0]


@pytest.fixture
def client(proxy):
    import openai

    with openai.OpenAI(base_url=f"{proxy.base_url}/v1", api_key=MASTER_KEY, max_retries=0, timeout=60) as c:
        yield c


@pytest.fixture
async def aclient(proxy):
    import openai

    async with openai.AsyncOpenAI(base_url=f"{proxy.base_url}/v1", api_key=MASTER_KEY, max_retries=0,
                                  timeout=60) as c:
        yield c
