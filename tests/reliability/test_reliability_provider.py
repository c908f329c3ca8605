"""Provider faults through the LiteLLM adapter and the engine, over real HTTP to the fake server.

For HTTP 500 and 429, a timeout, a connection reset and a malformed JSON body, with a merged
call (three callers in two namespaces) in flight next to a caller whose samples are stored:

- exactly the callers waiting on the failed call get the error (the provider's, mapped by litellm),
  the stored key's caller is served, and no caller hangs;
- nothing is stored for the failed key and no ledger position moves: the callers' retry asks
  the server once for exactly the missing count and hands out its samples from the start;
- the engine is left with no per-request state.

A provider stream cut halfway cannot reach the store: the adapter generates a streamed miss
with a plain (non-streamed) call and replays the stored sample as a stream. Callers cancelled
while they wait on a merged call take nothing: the others are served, nothing leaks.
"""
from __future__ import annotations

import asyncio
import os
import re

import pytest

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

litellm = pytest.importorskip("litellm")
import cachesaver_litellm  # noqa: E402

MODEL = "cachesaver/openai/fake-model"
_SAMPLE = re.compile(r"\[sample (\d+) of ")

FAULTS = {
    "http 500": (lambda s: s.fail_next(500), "InternalServerError"),
    "http 429": (lambda s: s.fail_next(429), "RateLimitError"),
    "timeout": (lambda s: setattr(s, "latency", 1.0), "Timeout"),
    "connection reset": (lambda s: s.reset_next(), "InternalServerError"),
    "malformed json": (lambda s: s.malformed_next(), "InternalServerError"),
}


def ids(response) -> list[int]:
    """The fake server's sample numbers (per prompt) of a response's choices."""
    return [int(_SAMPLE.search(c.message.content).group(1)) for c in response.choices]


def msgs(text: str) -> list[dict]:
    return [{"role": "user", "content": text}]


def meta(ns: str, rid: str) -> dict:
    return {"cachesaver_namespace": ns, "cachesaver_request_id": rid}


@pytest.fixture
def provider(tmp_path, fake_server):
    litellm.suppress_debug_info = True
    callbacks = list(litellm.callbacks)
    handler = cachesaver_litellm.register(store=str(tmp_path / "store"), timeout=0.05)
    yield handler
    cachesaver_litellm.unregister()
    litellm.callbacks = callbacks


def engine_leftovers(handler) -> dict:
    p = handler.pipeline

    async def read():
        return {name: value for name, value in {
            "inflight": set(p._inflight_ids), "tick": list(p._tick), "queued": p.queues.held(),
            "batcher": list(p._batcher._items), "turns": dict(p.cacher._turns),
            "unbilled": {k: v for k, v in p.cacher._unbilled.items() if v},
            "tasks": [t for t in p._tasks if not t.done()],
        }.items() if value}

    return handler.hosted.host.run(read())


def stored_lengths(handler) -> dict:
    store = handler.pipeline.store

    async def read():
        return {key: await store.length(key) async for key in store.iter_keys()}

    return handler.hosted.host.run(read())


@pytest.mark.parametrize("fault", list(FAULTS))
async def test_a_provider_fault_reaches_exactly_its_waiters_stores_nothing_and_a_retry_works(
        fault, provider, fake_server):
    kwargs = dict(model=MODEL, api_base=fake_server.base_url, api_key="sk-test", max_retries=0, timeout=0.4)
    warm = await litellm.acompletion(messages=msgs("stored"), n=2, metadata=meta("W", "w0"), **kwargs)
    before = stored_lengths(provider)
    inject, error_name = FAULTS[fault]
    inject(fake_server)
    fake_server.reset_counters()
    callers = [  # one merged call for "fails": A needs 1 + 1, B needs 2 -> n=2
        litellm.acompletion(messages=msgs("fails"), metadata=meta("A", "r1"), **kwargs),
        litellm.acompletion(messages=msgs("fails"), n=2, metadata=meta("B", "r2"), **kwargs),
        litellm.acompletion(messages=msgs("fails"), metadata=meta("A", "r3"), **kwargs),
        litellm.acompletion(messages=msgs("stored"), n=2, metadata=meta("X", "r4"), **kwargs),  # a hit
    ]
    results = await asyncio.wait_for(asyncio.gather(*callers, return_exceptions=True), 10)  # nobody hangs
    fake_server.latency = 0.0
    failed = results[:3]
    assert [type(r).__name__ for r in failed] == [error_name] * 3
    assert ids(results[3]) == ids(warm)  # the stored key's caller never waited on the call
    assert fake_server.request_count == 1 and [b.get("n", 1) for b in fake_server.requests] == [2]
    assert stored_lengths(provider) == before  # nothing stored, not even part of the call
    assert engine_leftovers(provider) == {}

    fake_server.reset_counters()
    retried = await asyncio.gather(
        litellm.acompletion(messages=msgs("fails"), metadata=meta("A", "s1"), **kwargs),
        litellm.acompletion(messages=msgs("fails"), n=2, metadata=meta("B", "s2"), **kwargs),
        litellm.acompletion(messages=msgs("fails"), metadata=meta("A", "s3"), **kwargs),
    )
    assert fake_server.request_count == 1 and fake_server.requests[0]["n"] == 2
    a1, b, a2 = (ids(r) for r in retried)
    # Both namespaces start at sample 0 of the new call. Which of A's two requests takes it is
    # their arrival order: litellm sets calls up on a thread pool, so s1 and s3 may reach the
    # engine in separate ticks, and ids order requests within a tick only (G4 is about replays).
    assert sorted(a1 + a2) == b and len(set(b)) == 2
    assert engine_leftovers(provider) == {}


async def test_a_stream_cut_at_the_provider_cannot_reach_the_store(provider, fake_server):
    """A miss streams live from the provider; cut mid-way, the caller gets the error, the
    fragment is never stored (G5), and the next call generates a whole sample again."""
    kwargs = dict(model=MODEL, api_base=fake_server.base_url, api_key="sk-test", max_retries=0)
    fake_server.cut_stream_next()
    stream = await litellm.acompletion(messages=msgs("streamed"), stream=True, metadata=meta("A", "r1"), **kwargs)
    with pytest.raises(Exception):
        async for _ in stream:
            pass
    assert fake_server.requests[-1].get("stream") is True  # it was streamed live from the provider
    assert not fake_server._injections, "the cut was not consumed"
    assert stored_lengths(provider) == {}  # no fragment became a sample
    plain = await litellm.acompletion(messages=msgs("streamed"), metadata=meta("A", "r2"), **kwargs)
    replay = await litellm.acompletion(messages=msgs("streamed"), stream=True, metadata=meta("B", "r3"), **kwargs)
    text = "".join([chunk.choices[0].delta.content or "" async for chunk in replay])
    assert fake_server.request_count == 2 and text == plain.choices[0].message.content  # whole, stored once
    assert engine_leftovers(provider) == {}


async def test_callers_cancelled_during_a_merged_call_take_nothing(provider, fake_server):
    kwargs = dict(model=MODEL, api_base=fake_server.base_url, api_key="sk-test", max_retries=0)
    fake_server.latency = 0.3
    tasks = {rid: asyncio.ensure_future(litellm.acompletion(messages=msgs("slow"), n=n, metadata=meta(ns, rid),
                                                            **kwargs))
             for rid, ns, n in [("r1", "A", 1), ("r2", "A", 1), ("r3", "B", 2), ("r4", "C", 1)]}
    await asyncio.sleep(0.15)  # the merged call (n=2) is at the server
    tasks["r1"].cancel()
    tasks["r4"].cancel()
    r2, r3 = await asyncio.wait_for(asyncio.gather(tasks["r2"], tasks["r3"]), 10)
    fake_server.latency = 0.0
    assert tasks["r1"].cancelled() and tasks["r4"].cancelled()
    assert fake_server.request_count == 1 and fake_server.requests[0]["n"] == 2
    # A's only live caller takes A's first sample; B takes both; C took nothing
    assert ids(r2) == ids(r3)[:1]
    nxt_a = await litellm.acompletion(messages=msgs("slow"), metadata=meta("A", "r5"), **kwargs)
    nxt_c = await litellm.acompletion(messages=msgs("slow"), metadata=meta("C", "r6"), **kwargs)
    assert ids(nxt_a) == ids(r3)[1:] and ids(nxt_c) == ids(r3)[:1]
    assert fake_server.request_count == 1  # both served from the stored call
    assert engine_leftovers(provider) == {}


@pytest.mark.parametrize("metadata, field", [
    ({"cachesaver_namespace": 3}, "cachesaver_namespace"),
    ({"cachesaver_namespace": ["A"]}, "cachesaver_namespace"),
    ({"cachesaver_namespace": ""}, "cachesaver_namespace"),
    ({"cachesaver_namespace": {"ns": "A"}}, "cachesaver_namespace"),
    ({"cachesaver_request_id": 7}, "cachesaver_request_id"),
    ({"cachesaver_request_id": ["r1"]}, "cachesaver_request_id"),
])
async def test_metadata_of_the_wrong_type_names_the_field_and_the_rest_keeps_working(
        metadata, field, provider, fake_server):
    kwargs = dict(model=MODEL, api_base=fake_server.base_url, api_key="sk-test", max_retries=0)
    ok = asyncio.ensure_future(litellm.acompletion(messages=msgs("fine"), metadata=meta("A", "ok"), **kwargs))
    with pytest.raises(Exception, match=field):
        await litellm.acompletion(messages=msgs("bad"), metadata=metadata, **kwargs)
    assert ids(await ok) == [1]
    assert fake_server.request_count == 1  # the bad call never reached the provider
    assert len(stored_lengths(provider)) == 1 and engine_leftovers(provider) == {}
