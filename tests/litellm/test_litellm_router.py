"""Routers: ``cachesaver/`` deployments inside a ``litellm.Router``, and ``CacheSaverRouter``
(the cache above a Router with two deployments of one model group).

Two fake servers with different answer words tell the deployments apart: a sample is
identified by (server word, sample number).
"""
from __future__ import annotations

import asyncio
import re

import litellm
import pytest
from litellm.integrations.custom_logger import CustomLogger

import cachesaver_litellm
from cachesaver.testing.server import FakeOpenAIServer
from cachesaver_litellm import CacheSaverRouter

from _litellm_helpers import MESSAGES, ns

_ID = re.compile(r"^(\w+) \[sample (\d+) of ")


def ids(response) -> list[tuple[str, int]]:
    out = []
    for choice in response.choices:
        match = _ID.match(choice.message.content)
        assert match, choice.message.content
        out.append((match.group(1), int(match.group(2))))
    return out


@pytest.fixture
def servers():
    with FakeOpenAIServer(seed=1, answers=["north"]) as a, FakeOpenAIServer(seed=2, answers=["south"]) as b:
        yield a, b


def deployment(group: str, model: str, server: FakeOpenAIServer, key: str, **extra) -> dict:
    return {"model_name": group, "litellm_params": {"model": model, "api_base": server.base_url, "api_key": key,
                                                    "max_retries": 0, **extra}}


class HeaderSpy(CustomLogger):
    """Records the Authorization header and api_base of every real call litellm prepares."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[str, str]] = []

    def log_pre_api_call(self, model, messages, kwargs):
        extra = kwargs.get("additional_args") or {}
        headers = extra.get("headers") or {}
        self.calls.append((str(extra.get("api_base")), str(headers.get("Authorization"))))


# -- cachesaver/ deployments inside a litellm.Router ------------------------------------------------
async def test_router_deployments_pass_their_key_base_and_timeout_to_the_real_call(provider, servers):
    a, b = servers
    spy = HeaderSpy()
    litellm.callbacks.append(spy)
    router = litellm.Router(model_list=[
        deployment("gpt", "cachesaver/openai/gpt-4o-mini", a, "sk-north"),
        deployment("gpt", "cachesaver/openai/gpt-4o-mini", b, "sk-south"),
    ], num_retries=0)

    got = [ids(await router.acompletion(model="gpt", messages=MESSAGES, metadata=ns("a"))) for _ in range(6)]

    # One key for both deployments (api_base is not keyed): six fresh samples in namespace "a".
    flat = [s for r in got for s in r]
    assert len(set(flat)) == 6
    assert a.request_count + b.request_count == 6
    # Each real call went to the deployment's api_base with that deployment's key.
    expected = {a.base_url.rstrip("/"): "Bearer sk-north", b.base_url.rstrip("/"): "Bearer sk-south"}
    real_calls = [(base.rstrip("/"), auth) for base, auth in spy.calls if base.rstrip("/") in expected]
    assert len(real_calls) == 6 and all(expected[base] == auth for base, auth in real_calls)
    assert {word for word, _ in flat} <= {"north", "south"}

    # A namespace replaying the same key makes no request, whichever deployment is picked.
    before = a.request_count + b.request_count
    replay = [s for _ in range(3) for s in ids(await router.acompletion(model="gpt", messages=MESSAGES,
                                                                          metadata=ns("b")))]
    assert replay == flat[:3] and a.request_count + b.request_count == before


async def test_router_deployment_timeout_reaches_the_real_call(provider, servers):
    a, _ = servers
    a.latency = 2.0
    router = litellm.Router(model_list=[deployment("slow", "cachesaver/openai/gpt-4o-mini", a, "sk", timeout=0.2)],
                            num_retries=0)
    with pytest.raises(litellm.exceptions.Timeout):
        await router.acompletion(model="slow", messages=MESSAGES, metadata=ns("a"))
    a.latency = 0.0
    assert cachesaver_litellm.stats().failed_calls == 1 and cachesaver_litellm.stats().samples_returned == 0


# -- CacheSaverRouter: the cache above routing ----------------------------------------------------
@pytest.fixture
def cs_router(servers, store_path):
    a, b = servers
    router = litellm.Router(model_list=[
        deployment("gpt", "openai/gpt-4o-mini", a, "sk-north"),
        deployment("gpt", "openai/gpt-4o-mini", b, "sk-south"),
    ], num_retries=0)
    with CacheSaverRouter(router, store=store_path, timeout=0.05) as wrapped:
        yield wrapped


async def test_cache_above_routing_keys_on_the_model_group(cs_router, servers):
    a, b = servers
    first = ids(await cs_router.acompletion(model="gpt", messages=MESSAGES, n=2, metadata=ns("a")))
    second = ids(await cs_router.acompletion(model="gpt", messages=MESSAGES, n=1, metadata=ns("a")))
    reuse = ids(await cs_router.acompletion(model="gpt", messages=MESSAGES, n=3, metadata=ns("b")))

    assert len(set(first + second)) == 3  # G1
    assert reuse == first + second  # one sample list for the group, whichever deployment made it
    assert a.request_count + b.request_count == 2
    assert sorted(body["n"] for s in servers for body in s.requests) == [1, 2]
    assert cs_router.stats.model_calls == 2 and cs_router.stats.ns("b").samples_from_store == 3


async def test_cache_above_routing_merges_concurrent_calls(cs_router, servers):
    a, b = servers
    results = await asyncio.gather(*[
        cs_router.acompletion(model="gpt", messages=MESSAGES, n=2, metadata=ns(f"ns{i}", f"r{i}"))
        for i in range(4)
    ])
    assert a.request_count + b.request_count == 1  # G3: one routed call with n=2 for all four
    assert len({tuple(ids(r)) for r in results}) == 1
    assert sum(not c for r in results for c in r._hidden_params["cachesaver"]["cached"]) == 2  # G8


async def test_routing_errors_are_not_stored_and_a_fallbacks_sample_is_that_fallbacks(servers, store_path):
    """Issue 20 item 4: fallbacks run above the cache, each group keyed on itself. Before, the
    backup's answer was stored under the primary group and served to a later primary request
    (in a new namespace, with the primary healthy again) as a cached primary sample."""
    a, b = servers
    router = litellm.Router(
        model_list=[deployment("primary", "openai/gpt-4o-mini", a, "sk-a"),
                    deployment("backup", "openai/gpt-4o-mini", b, "sk-b")],
        fallbacks=[{"primary": ["backup"]}], num_retries=0,
    )
    async with CacheSaverRouter(router, store=store_path, timeout=0.05) as wrapped:
        a.fail_next(500)
        fell_back = await wrapped.acompletion(model="primary", messages=MESSAGES, metadata=ns("a"))
        assert ids(fell_back) == [("south", 1)]
        assert fell_back._hidden_params["cachesaver"]["model"] == "model_group:backup"  # who answered

        healthy = await wrapped.acompletion(model="primary", messages=MESSAGES, metadata=ns("b"))
        assert ids(healthy) == [("north", 1)], "the primary group was served the backup's sample"
        assert healthy._hidden_params["cachesaver"]["cached"] == [False]
        assert a.request_count == 2 and b.request_count == 1

        backup = await wrapped.acompletion(model="backup", messages=MESSAGES, metadata=ns("c"))
        assert ids(backup) == [("south", 1)] and b.request_count == 1  # stored as the backup's sample

        # Namespace "c" has had both groups' stored samples: both must generate, and both fail.
        await wrapped.acompletion(model="primary", messages=MESSAGES, metadata=ns("c"))
        b.fail_next(500)
        a.fail_next(500)
        with pytest.raises(Exception):
            await wrapped.acompletion(model="primary", messages=MESSAGES, metadata=ns("c"))
        assert wrapped.stats.failed_calls == 3  # the first primary failure, then both groups (G5)
        ok = ids(await wrapped.acompletion(model="primary", messages=MESSAGES, metadata=ns("c")))
        assert ok == [("north", 2)]


async def test_a_router_of_cachesaver_deployments_stores_a_fallbacks_sample_under_its_model(provider, servers):
    a, b = servers
    router = litellm.Router(
        model_list=[deployment("primary", "cachesaver/openai/model-a", a, "sk-a"),
                    deployment("backup", "cachesaver/openai/model-b", b, "sk-b")],
        fallbacks=[{"primary": ["backup"]}], num_retries=0,
    )
    a.fail_next(500)
    fell_back = await router.acompletion(model="primary", messages=MESSAGES, metadata=ns("a"))
    assert ids(fell_back) == [("south", 1)]
    assert fell_back._hidden_params["cachesaver"]["model"] == "openai/model-b"
    healthy = await router.acompletion(model="primary", messages=MESSAGES, metadata=ns("b"))
    assert ids(healthy) == [("north", 1)] and healthy._hidden_params["cachesaver"]["cached"] == [False]
    assert (a.request_count, b.request_count) == (2, 1)


def test_call_level_fallbacks_and_sync_completion_fall_back_above_the_cache(servers, store_path):
    a, b = servers
    router = litellm.Router(model_list=[deployment("primary", "openai/gpt-4o-mini", a, "sk-a"),
                                        deployment("backup", "openai/gpt-4o-mini", b, "sk-b")], num_retries=0)
    with CacheSaverRouter(router, store=store_path, timeout=0.05) as wrapped:
        a.fail_next(500)
        sync = wrapped.completion(model="primary", messages=MESSAGES, fallbacks=["backup"], metadata=ns("a"))
        assert ids(sync) == [("south", 1)]
        assert ids(wrapped.completion(model="primary", messages=MESSAGES, metadata=ns("b"))) == [("north", 1)]
        a.fail_next(500)
        with pytest.raises(Exception):  # no fallbacks configured: the error reaches the caller
            wrapped.completion(model="primary", messages=MESSAGES, metadata=ns("b"))


def test_cache_above_routing_sync_stream_and_delegation(cs_router, servers):
    a, b = servers
    stored = cs_router.completion(model="gpt", messages=MESSAGES, metadata=ns("a"))
    stream = cs_router.completion(model="gpt", messages=MESSAGES, stream=True,
                                  stream_options={"include_usage": True}, metadata=ns("b"))
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == stored.choices[0].message.content
    assert chunks[-1].choices == [] and chunks[-1].usage.prompt_tokens == stored.usage.prompt_tokens
    assert a.request_count + b.request_count == 1
    # Everything else is the wrapped Router's.
    assert cs_router.get_settings() == cs_router.router.get_settings()


async def test_cache_above_routing_tops_up_groups_without_n(servers, store_path):
    a, _ = servers
    router = litellm.Router(model_list=[deployment("claude", "anthropic/claude-3-5-haiku-20241022", a, "sk")])
    async with CacheSaverRouter(router, store=store_path) as wrapped:
        assert wrapped._group_supports_n("claude") is False
        assert wrapped._group_supports_n("unknown-group") is False


class LoopSpy(CustomLogger):
    """Records on which event loop litellm logs each successful real call."""

    def __init__(self) -> None:
        super().__init__()
        self.loops: list = []

    async def async_log_success_event(self, kwargs, response_obj, start_time, end_time):
        self.loops.append(asyncio.get_running_loop())


async def test_routed_real_calls_run_and_are_logged_on_the_callers_loop(cs_router, servers):
    spy = LoopSpy()
    litellm.callbacks.append(spy)
    await cs_router.acompletion(model="gpt", messages=MESSAGES, metadata=ns("a"))
    for _ in range(200):
        if spy.loops:
            break
        await asyncio.sleep(0.01)
    assert spy.loops == [asyncio.get_running_loop()]  # not the engine's background loop


async def test_sync_completion_inside_a_running_loop_is_refused_clearly(cs_router):
    with pytest.raises(RuntimeError, match="await router.acompletion"):
        cs_router.completion(model="gpt", messages=MESSAGES)
