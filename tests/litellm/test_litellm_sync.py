"""Sync ``litellm.completion("cachesaver/...")``: plain, inside a running loop, from many threads.

All entry points share one engine pipeline on one background loop, so sync and async callers
of one namespace draw from one ledger.
"""
from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

import litellm
import pytest

import cachesaver_litellm
from cachesaver.runtime import get_host

from _litellm_helpers import ns, sample_ids


def test_sync_completion_gives_fresh_samples_and_replays_across_namespaces(provider, server, call_kwargs):
    first = litellm.completion(n=2, metadata=ns("a"), **call_kwargs)
    second = litellm.completion(n=1, metadata=ns("a"), **call_kwargs)
    reuse = litellm.completion(n=3, metadata=ns("b"), **call_kwargs)

    assert (sample_ids(first), sample_ids(second), sample_ids(reuse)) == ([1, 2], [3], [1, 2, 3])
    assert [b["n"] for b in server.requests] == [2, 1]
    assert reuse._hidden_params["cache_hit"] is True


async def test_sync_completion_inside_a_running_event_loop(provider, server, call_kwargs):
    asyncio.get_running_loop()  # this test body runs inside pytest-asyncio's loop
    sync = litellm.completion(n=1, metadata=ns("a"), **call_kwargs)
    then_async = await litellm.acompletion(n=1, metadata=ns("a"), **call_kwargs)
    again_sync = litellm.completion(n=1, metadata=ns("a"), **call_kwargs)

    # One ledger for sync and async callers of namespace "a" (G1 across entry points).
    assert (sample_ids(sync), sample_ids(then_async), sample_ids(again_sync)) == ([1], [2], [3])
    assert server.request_count == 3


def test_sync_completion_from_many_threads(provider, server, call_kwargs):
    def call(i: int):
        return litellm.completion(n=1, metadata=ns("a", f"r{i:02d}"), **call_kwargs)

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(call, range(8)))

    ids = sorted(sample_ids(r)[0] for r in results)
    assert ids == list(range(1, 9))  # G1: eight callers of one namespace, eight distinct samples
    assert server.samples_generated == sum(b["n"] for b in server.requests) == 8
    assert cachesaver_litellm.stats().ns("a").samples_generated == 8


def test_threads_in_different_namespaces_share_one_generated_sample(provider, server, call_kwargs):
    def call(i: int):
        return litellm.completion(n=1, metadata=ns(f"ns{i}"), **call_kwargs)

    with ThreadPoolExecutor(max_workers=6) as pool:
        results = list(pool.map(call, range(6)))

    # However the calls fall into batches, each namespace needs sample 0 only: one is generated.
    assert [sample_ids(r) for r in results] == [[1]] * 6
    assert server.samples_generated == 1 and server.request_count == 1


def test_sync_streaming_replays_the_stored_sample(provider, server, call_kwargs):
    stored = litellm.completion(metadata=ns("a"), **call_kwargs)
    stream = litellm.completion(stream=True, metadata=ns("b"), **call_kwargs)
    text = "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)
    assert text == stored.choices[0].message.content
    assert server.request_count == 1


def test_a_sync_call_from_the_engine_loop_thread_is_refused():
    host = get_host()

    async def nested():
        async def noop():
            return 1

        return host.run(noop())

    with pytest.raises(RuntimeError, match="use the async API"):
        host.run(nested())
