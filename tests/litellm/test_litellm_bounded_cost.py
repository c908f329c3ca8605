"""Issue 22, item 4: one request's cost is bounded (G2).

A request asks for at most ``max_n`` samples (default 128, OpenAI's own limit of ``n``), refused
before anything is paid; a provider without ``n`` answers a request for many samples with at most
``max_fanout`` calls at once. Before, ``cachesaver/mistral/...`` with ``n=300`` made 300
concurrent upstream calls.
"""
from __future__ import annotations

import asyncio

import litellm
import pytest

import cachesaver_litellm
from cachesaver.errors import InvalidRequestError, InvalidRequestTypeError
from cachesaver.testing.server import FakeOpenAIServer

from _litellm_helpers import MESSAGES, ns

NO_N_MODEL = "cachesaver/mistral/mistral-small-latest"  # litellm sends mistral no n: one call per sample


def _cause(exc: BaseException) -> BaseException:
    seen = exc
    while seen is not None and not isinstance(seen, InvalidRequestError):
        seen = seen.__cause__ or seen.__context__
    return seen or exc


async def test_n_above_the_limit_is_refused_before_any_call(provider, server, call_kwargs):
    with pytest.raises(Exception) as caught:
        await litellm.acompletion(n=300, metadata=ns("a"), **call_kwargs)
    refused = _cause(caught.value)
    assert isinstance(refused, InvalidRequestError)
    assert "300" in str(refused) and "limit of 128" in str(refused) and "max_n" in str(refused)
    assert server.request_count == 0


async def test_the_limit_is_the_adapters_to_raise(store_path, server, call_kwargs):
    cachesaver_litellm.register(store=store_path, timeout=0.01, max_n=200)
    response = await litellm.acompletion(n=150, metadata=ns("a"), **call_kwargs)
    assert len(response.choices) == 150
    # Asked of the model in calls of at most 200 samples: one call here.
    assert server.request_count == 1 and server.n_asked == 150


async def test_a_provider_without_n_is_asked_a_few_calls_at_a_time(store_path):
    with FakeOpenAIServer(seed=3, latency=0.05) as slow:
        cachesaver_litellm.register(store=store_path, timeout=0.01)
        response = await litellm.acompletion(model=NO_N_MODEL, messages=MESSAGES, n=24, metadata=ns("a"),
                                             api_base=slow.base_url, api_key="sk-test", max_retries=0)
        assert len(response.choices) == 24
        assert slow.request_count == 24  # one call per sample: the provider has no n
        assert slow.peak_in_flight <= 8  # max_fanout, not 24 at once
        assert slow.peak_in_flight >= 2  # ...and still concurrent


async def test_a_pipeline_has_at_most_max_concurrent_calls_in_flight(store_path):
    """100 callers, each a different prompt (a miss each), all at once: the upstream server sees
    at most 64 calls in flight (the default ``max_concurrent_calls``), not 100 (two batches of
    misses, 64 + 36 calls, each call its own key)."""
    with FakeOpenAIServer(seed=4, latency=0.3) as slow:
        cachesaver_litellm.register(store=store_path, timeout=0.01)
        responses = await asyncio.gather(*(
            litellm.acompletion(model="cachesaver/openai/gpt-4o-mini", n=1, metadata=ns("a"),
                                messages=[{"role": "user", "content": f"question {i}"}],
                                api_base=slow.base_url, api_key="sk-test", max_retries=0)
            for i in range(100)))
        assert all(len(r.choices) == 1 for r in responses)
        assert slow.request_count == 100
        assert slow.peak_in_flight <= 64
        assert slow.peak_in_flight > 8  # concurrent, not one fan-out's worth


async def test_the_bounds_on_calls_in_flight_are_the_adapters_to_set(store_path):
    with FakeOpenAIServer(seed=5, latency=0.1) as slow:
        cachesaver_litellm.register(store=store_path, timeout=0.01, max_fanout=3, max_concurrent_calls=5)
        fan = await litellm.acompletion(model=NO_N_MODEL, messages=MESSAGES, n=12, metadata=ns("a"),
                                        api_base=slow.base_url, api_key="sk-test", max_retries=0)
        assert len(fan.choices) == 12 and slow.request_count == 12
        assert 2 <= slow.peak_in_flight <= 3  # max_fanout=3
        slow.reset_counters()
        await asyncio.gather(*(
            litellm.acompletion(model="cachesaver/openai/gpt-4o-mini", n=1, metadata=ns("a"),
                                messages=[{"role": "user", "content": f"question {i}"}],
                                api_base=slow.base_url, api_key="sk-test", max_retries=0)
            for i in range(20)))
        assert slow.request_count == 20
        assert 2 <= slow.peak_in_flight <= 5  # max_concurrent_calls=5
    with pytest.raises(InvalidRequestError, match="max_fanout must be an int >= 1"):
        cachesaver_litellm.register(store=store_path, max_fanout=0)
    with pytest.raises(InvalidRequestTypeError, match="max_concurrent_calls must be an int >= 1"):
        cachesaver_litellm.register(store=store_path, max_concurrent_calls="8")
