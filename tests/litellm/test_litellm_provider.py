"""G1-G5 and G8 through ``litellm.acompletion("cachesaver/...")`` over real HTTP.

The fake server numbers every sample it generates ("[sample k of ...]"), so each assertion on
sample ids is an assertion on identity: which generated sample reached which caller.
"""
from __future__ import annotations

import asyncio

import litellm
import pytest

import cachesaver_litellm

from _litellm_helpers import MESSAGES, REAL_MODEL, ns, sample_ids, store_lengths


async def test_fresh_samples_within_a_namespace_and_only_missing_n_sent(provider, server, call_kwargs):
    first = await litellm.acompletion(n=2, metadata=ns("a"), **call_kwargs)
    second = await litellm.acompletion(n=3, metadata=ns("a"), **call_kwargs)

    assert sample_ids(first) == [1, 2]
    assert sample_ids(second) == [3, 4, 5]  # G1: nothing handed out twice in namespace "a"
    assert server.request_count == 2
    assert [body["n"] for body in server.requests] == [2, 3]
    assert [c.index for c in second.choices] == [0, 1, 2]
    stats = cachesaver_litellm.stats()
    assert stats.model_calls == 2 and stats.samples_requested == 5
    assert stats.ns("a").samples_generated == 5 and stats.ns("a").samples_from_store == 0


async def test_other_namespace_reuses_and_a_partial_hit_asks_only_the_missing(provider, server, call_kwargs):
    await litellm.acompletion(n=2, metadata=ns("a"), **call_kwargs)
    reuse = await litellm.acompletion(n=3, metadata=ns("b"), **call_kwargs)

    assert sample_ids(reuse) == [1, 2, 3]  # another namespace starts at sample 0 again
    assert [body["n"] for body in server.requests] == [2, 1]  # G2: the partial hit asked for 1
    flags = reuse._hidden_params["cachesaver"]
    assert flags["namespace"] == "b"
    assert flags["cached"] == [True, True, False]
    assert reuse._hidden_params["cache_hit"] is False
    assert reuse._hidden_params["response_cost"] > 0

    full_hit = await litellm.acompletion(n=3, metadata=ns("c"), **call_kwargs)
    assert sample_ids(full_hit) == [1, 2, 3]
    assert server.request_count == 2
    assert full_hit._hidden_params["cache_hit"] is True
    assert full_hit._hidden_params["response_cost"] == 0.0
    assert full_hit._hidden_params["custom_llm_provider"] == "openai"


async def test_concurrent_identical_calls_are_merged_into_one_request(provider, server, call_kwargs):
    calls = [
        litellm.acompletion(n=1, metadata=ns("a", "r1"), **call_kwargs),
        litellm.acompletion(n=1, metadata=ns("a", "r2"), **call_kwargs),
        litellm.acompletion(n=2, metadata=ns("b", "r3"), **call_kwargs),
        litellm.acompletion(n=2, metadata=ns("b", "r4"), **call_kwargs),
    ]
    a1, a2, b1, b2 = await asyncio.gather(*calls)

    assert server.request_count == 1  # G3: one call for the key ...
    assert server.requests[0]["n"] == 4  # ... asking for the most any namespace lacks
    # Inside a batch, samples go out in request_id order (G4).
    assert (sample_ids(a1), sample_ids(a2)) == ([1], [2])
    assert (sample_ids(b1), sample_ids(b2)) == ([1, 2], [3, 4])
    # G8: every generated sample is billed to exactly one response.
    billed = [not c for r in (a1, a2, b1, b2) for c in r._hidden_params["cachesaver"]["cached"]]
    assert sum(billed) == server.samples_generated == 4
    assert cachesaver_litellm.stats().model_calls == 1


async def test_a_new_run_replays_with_zero_requests(store_path, server, call_kwargs):
    async def session():
        cachesaver_litellm.register(store=store_path, timeout=0.05)
        out = [
            sample_ids(await litellm.acompletion(n=2, metadata=ns("a"), **call_kwargs)),
            sample_ids(await litellm.acompletion(n=1, metadata=ns("a"), **call_kwargs)),
            sample_ids(await litellm.acompletion(n=2, metadata=ns("b"), **call_kwargs)),
        ]
        cachesaver_litellm.unregister()  # the next register() is a new pipeline: a new run
        return out

    first = await session()
    requests_after_first = server.request_count
    second = await session()

    assert first == second == [[1, 2], [3], [1, 2]]  # G4
    assert requests_after_first == 2 and server.request_count == 2  # the replay made none


async def test_server_error_is_raised_stores_nothing_and_the_next_call_succeeds(provider, server, call_kwargs):
    server.fail_next(500)
    with pytest.raises(litellm.exceptions.InternalServerError):
        await litellm.acompletion(n=2, metadata=ns("a"), **call_kwargs)
    assert store_lengths() == {}  # G5: nothing stored ...
    assert cachesaver_litellm.stats().failed_calls == 1

    after = await litellm.acompletion(n=2, metadata=ns("a"), **call_kwargs)
    assert sample_ids(after) == [1, 2]  # ... and no ledger position consumed
    assert server.request_count == 2 and [b["n"] for b in server.requests] == [2, 2]


async def test_a_failed_call_reaches_exactly_its_waiting_callers(provider, server, call_kwargs):
    server.fail_next(429)
    other = dict(call_kwargs, messages=[{"role": "user", "content": "Name a fruit."}])
    results = await asyncio.gather(
        litellm.acompletion(metadata=ns("a", "r1"), **call_kwargs),
        litellm.acompletion(metadata=ns("b", "r2"), **call_kwargs),
        litellm.acompletion(metadata=ns("a", "r3"), **other),
        return_exceptions=True,
    )
    failed = [isinstance(r, Exception) for r in results]
    # Exactly one of the two keys met the injected 429; both callers of that key got it.
    assert failed in ([True, True, False], [False, False, True])
    assert all(isinstance(r, litellm.exceptions.RateLimitError) for r in results if isinstance(r, Exception))
    assert server.request_count == 2
    lengths = store_lengths()
    assert sorted(lengths.values()) == [1]  # only the successful key stored its sample


async def test_timeout_is_raised_and_nothing_is_stored(provider, server, call_kwargs):
    server.latency = 2.0
    with pytest.raises(litellm.exceptions.Timeout):
        await litellm.acompletion(metadata=ns("a"), **dict(call_kwargs, timeout=0.2))
    server.latency = 0.0
    assert store_lengths() == {}
    ok = await litellm.acompletion(metadata=ns("a"), **call_kwargs)
    assert sample_ids(ok) == [1]


async def test_response_is_fresh_reindexed_and_usage_is_honest(provider, server, call_kwargs):
    await litellm.acompletion(n=3, metadata=ns("a"), **call_kwargs)
    one = await litellm.acompletion(n=2, metadata=ns("b"), **call_kwargs)
    two = await litellm.acompletion(n=2, metadata=ns("c"), **call_kwargs)

    assert one is not two and one.choices[0] is not two.choices[0]
    one.choices[0].message.content = "mutated"
    assert two.choices[0].message.content != "mutated"
    assert [c.index for c in two.choices] == [0, 1]
    # Prompt tokens once, completion tokens per sample (the server's own word counts).
    prompt_tokens = server.prompt_tokens
    assert two.usage.prompt_tokens == prompt_tokens
    expected_completion = sum(len(c.message.content.split()) for c in two.choices)
    assert two.usage.completion_tokens == expected_completion
    assert two.usage.total_tokens == prompt_tokens + expected_completion
    assert two.model == "gpt-4o-mini" and two.system_fingerprint == "fake"


async def test_default_namespace_is_configurable(store_path, server, call_kwargs):
    cachesaver_litellm.register(store=store_path, namespace="experiment-7")
    r = await litellm.acompletion(**call_kwargs)
    assert r._hidden_params["cachesaver"]["namespace"] == "experiment-7"
    assert cachesaver_litellm.stats().ns("experiment-7").requests == 1


async def test_litellm_metadata_is_read_too(provider, server, call_kwargs):
    await litellm.acompletion(metadata=ns("a"), **call_kwargs)
    r = await litellm.acompletion(litellm_metadata=ns("a"), **call_kwargs)
    assert sample_ids(r) == [2]
    assert r._hidden_params["cachesaver"]["namespace"] == "a"


async def test_bad_metadata_and_n_give_clear_errors(provider, call_kwargs):
    with pytest.raises(Exception, match="cachesaver_namespace"):
        await litellm.acompletion(metadata={"cachesaver_namespace": 3}, **call_kwargs)
    with pytest.raises(Exception, match="cachesaver_request_id"):
        await litellm.acompletion(metadata={"cachesaver_request_id": 7}, **call_kwargs)
    with pytest.raises(Exception, match="n must be"):
        await litellm.acompletion(n=0, **call_kwargs)


async def test_real_model_reaches_the_server_and_the_key_has_no_prefix(provider, server, call_kwargs):
    r = await litellm.acompletion(**call_kwargs)
    assert server.requests[0]["model"] == "gpt-4o-mini"
    assert r._hidden_params["cachesaver"]["model"] == REAL_MODEL
    assert server.requests[0]["messages"] == MESSAGES
