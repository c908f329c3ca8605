"""A user's global ``litellm.cache`` must not collapse cachesaver's fresh samples.

Without the adapter's guards litellm would store the first ``cachesaver/`` answer (and the
inner real call's answer) and replay it for every identical call. The guards keep every
``cachesaver/`` call and every inner call out of litellm's cache, sync, async and streamed.
"""
from __future__ import annotations

import litellm
import pytest

from _litellm_helpers import ns, sample_ids


@pytest.fixture
def litellm_cache():
    litellm.cache = litellm.Cache()  # litellm's in-memory cache, on for every call
    yield litellm.cache.cache
    litellm.cache = None


def entries(memory_cache) -> int:
    return len(getattr(memory_cache, "cache_dict", {}))


async def test_async_calls_stay_fresh_with_a_global_litellm_cache(litellm_cache, provider, server, call_kwargs):
    got = [sample_ids(await litellm.acompletion(metadata=ns("a"), **call_kwargs)) for _ in range(3)]
    assert got == [[1], [2], [3]]
    assert server.request_count == 3 and [b["n"] for b in server.requests] == [1, 1, 1]
    replay = await litellm.acompletion(n=3, metadata=ns("b"), **call_kwargs)
    assert sample_ids(replay) == [1, 2, 3] and server.request_count == 3
    assert entries(litellm_cache) == 0  # neither the outer nor the inner calls were stored


def test_sync_calls_stay_fresh_with_a_global_litellm_cache(litellm_cache, provider, server, call_kwargs):
    got = [sample_ids(litellm.completion(metadata=ns("a"), **call_kwargs)) for _ in range(3)]
    assert got == [[1], [2], [3]]
    assert entries(litellm_cache) == 0


async def test_streams_stay_fresh_with_a_global_litellm_cache(litellm_cache, provider, server, call_kwargs):
    texts = []
    for _ in range(2):
        stream = await litellm.acompletion(stream=True, metadata=ns("a"), **call_kwargs)
        texts.append("".join([c.choices[0].delta.content or "" async for c in stream if c.choices]))
    sync_stream = litellm.completion(stream=True, metadata=ns("a"), **call_kwargs)
    texts.append("".join(c.choices[0].delta.content or "" for c in sync_stream if c.choices))
    assert [t.rsplit("[sample ", 1)[1][0] for t in texts] == ["1", "2", "3"]
    assert server.request_count == 3
    assert entries(litellm_cache) == 0
